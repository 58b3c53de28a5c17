//! NemotronH Omni (Nemotron 3.5 Omni; `NemotronH_Omni_Reasoning_V3ImageProcessor`,
//! transformers 5.24, torchvision only): a patch grid near the image's own, scaled into
//! `[min_num_patches, budget]` and rounded to multiples of the pixel-shuffle merge; the image
//! resized in float32 (torch's float bicubic, overshoot kept), normalised in float and cut into
//! raster `(3, p, p)` patches. One token per `merge²` patches.

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::floatfmt::py_float_repr;
use crate::layout::{check_size, Backend, ImageLayout, PixelKnobs, Resample, MAX_SIDE};
use crate::pack::Packing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NemotronGeometry {
    pub patch_size: u64,
    /// `downsample_ratio` as f64 bits (the struct stays `Eq`).
    downsample_ratio: u64,
    pub min_num_patches: u64,
    pub max_num_patches: u64,
    pub max_model_len: u64,
}

impl NemotronGeometry {
    pub fn new(patch_size: u64, downsample_ratio: f64, min: u64, max: u64, max_model_len: u64) -> Self {
        NemotronGeometry {
            patch_size,
            downsample_ratio: downsample_ratio.to_bits(),
            min_num_patches: min,
            max_num_patches: max,
            max_model_len,
        }
    }

    pub fn downsample_ratio(&self) -> f64 {
        f64::from_bits(self.downsample_ratio)
    }

    /// `round(1 / downsample_ratio)` (Python's round: ties to even).
    pub fn merge_size(&self) -> u64 {
        (1.0 / self.downsample_ratio()).round_ties_even() as u64
    }

    /// The call's patch budget for `n` images: `max((max_model_len − 4)·m², min·n)`, capped by
    /// `max_num_patches`, at least `min_num_patches`.
    pub fn budget(&self, n: u64) -> i128 {
        let m = self.merge_size() as i128;
        let min = self.min_num_patches as i128;
        let b = ((self.max_model_len as i128 - 4) * m * m).max(min * n as i128).min(self.max_num_patches as i128);
        b.max(min)
    }
}

impl Family for NemotronGeometry {
    const NAME: &'static str = "nemotron_h_omni";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        let ratio = k.optional_float("downsample_ratio")?;
        Ok(NemotronGeometry::new(
            k.required("patch_size")?,
            ratio.ok_or_else(|| crate::error::Error::Layout("missing knob downsample_ratio".into()))?,
            k.required("min_num_patches")?,
            k.required("max_num_patches")?,
            k.required("max_model_len")?,
        ))
    }

    fn validate(&self, pixel: &PixelKnobs) -> Result<()> {
        let m = self.merge_size();
        if !(1..=64).contains(&m) || self.patch_size > 1 << 12 {
            return layout("downsample_ratio must give a merge size in 1..64, patch_size at most 4096");
        }
        if self.max_num_patches > 1 << 32 || self.min_num_patches > 1 << 32 || self.max_model_len > 1 << 40 {
            return layout("patch budgets are too large");
        }
        // A per-image layout needs the same budget whatever the number of images in a call.
        if self.budget(1) != self.budget(u32::MAX as u64) {
            return layout(format!(
                "this config's patch budget depends on the number of images in a call ({} for one); \
                 a layout needs max_num_patches <= (max_model_len - 4) * merge_size^2",
                self.budget(1)
            ));
        }
        if pixel.backend != Backend::Torchvision {
            return layout("nemotron_h_omni has only a torchvision backend in transformers 5.24");
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("patch_size", self.patch_size.to_string()),
            ("downsample_ratio", py_float_repr(self.downsample_ratio())),
            ("min_num_patches", self.min_num_patches.to_string()),
            ("max_num_patches", self.max_num_patches.to_string()),
            ("max_model_len", self.max_model_len.to_string()),
        ]
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        check_size(width, height)?;
        let (gh, gw) =
            patch_grid(height, width, self.patch_size, self.merge_size(), self.min_num_patches, self.budget(1) as u64)?;
        let p = self.patch_size;
        let m = self.merge_size();
        Ok(ImageLayout {
            width,
            height,
            resized_width: gw * p,
            resized_height: gh * p,
            padded_width: gw * p,
            padded_height: gh * p,
            grid_thw: [1, gh, gw],
            num_tokens: gh * gw / (m * m),
        })
    }

    fn packing(&self, l: &ImageLayout) -> Packing {
        Packing::Kimi {
            patch: self.patch_size as usize,
            padded_width: l.padded_width as usize,
            padded_height: l.padded_height as usize,
        }
    }

    /// `3·p²` values.
    fn row_shape(&self) -> Vec<usize> {
        vec![(3 * self.patch_size * self.patch_size) as usize]
    }

    /// Resized in float: no uint8 image exists between the resize and the normalisation.
    fn raw_rows(&self) -> bool {
        false
    }

    fn resample(&self, _: &PixelKnobs) -> (Resample, &'static str) {
        (Resample::TorchFloat, "bicubic")
    }
}

/// `nemotron_h_omni.image_processing_nemotron_h_omni.get_patch_grid_size` in Python's float
/// arithmetic. Returns `(grid_h, grid_w)`.
pub fn patch_grid(height: u64, width: u64, patch: u64, merge: u64, min: u64, max: u64) -> Result<(u64, u64)> {
    // Python's round(x + 0.5), ties to even.
    let start = |v: u64| (v as f64 / patch as f64 + 0.5).round_ties_even() as u64;
    let (mut gh, mut gw) = (start(height), start(width));
    let factor = (max as f64 / (gh * gw) as f64).sqrt().min(1.0);
    gh = (factor * gh as f64).floor() as u64;
    gw = (factor * gw as f64).floor() as u64;
    if max > min && gh * gw < min {
        if gh * gw == 0 {
            return layout(format!("a {width}x{height} image has an empty patch grid (transformers divides by zero)"));
        }
        let factor = (min as f64 / (gh * gw) as f64).sqrt();
        gh = (factor * gh as f64).ceil() as u64;
        gw = (factor * gw as f64).ceil() as u64;
    }
    let r = gh % merge;
    if r != 0 {
        gh = if (gh + merge - r) * gw <= max { gh + merge - r } else { merge.max(gh - r) };
    }
    let r = gw % merge;
    if r != 0 {
        gw = if gh * (gw + merge - r) <= max { gw + merge - r } else { merge.max(gw - r) };
    }
    if gh == 0 || gw == 0 || gh * patch > MAX_SIDE || gw * patch > MAX_SIDE {
        return layout(format!("a {width}x{height} image gets a {gh}x{gw} patch grid"));
    }
    Ok((gh, gw))
}
