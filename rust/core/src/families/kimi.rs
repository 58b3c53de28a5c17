//! Kimi K2.5 (Moonshot's processor, Pillow-based): the navit resize, which never upscales and
//! pads to whole merge blocks, and raster patches of `(3, p, p)` (layout.md §6, pixels.md §5).

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::layout::{check_size, positive, Backend, ImageLayout, PixelKnobs, MAX_SIDE};
use crate::pack::Packing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KimiGeometry {
    pub patch_size: u64,
    pub merge_kernel_size: u64,
    pub in_patch_limit: u64,
    pub patch_limit_on_one_side: u64,
    pub fixed_output_tokens: Option<u64>,
}

impl Family for KimiGeometry {
    const NAME: &'static str = "kimi_k25";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        Ok(KimiGeometry {
            patch_size: k.required("patch_size")?,
            merge_kernel_size: k.required("merge_kernel_size")?,
            in_patch_limit: k.required("in_patch_limit")?,
            patch_limit_on_one_side: k.required("patch_limit_on_one_side")?,
            fixed_output_tokens: k.optional("fixed_output_tokens")?,
        })
    }

    fn validate(&self, pixel: &PixelKnobs) -> Result<()> {
        positive("patch_size", self.patch_size)?;
        positive("merge_kernel_size", self.merge_kernel_size)?;
        positive("in_patch_limit", self.in_patch_limit)?;
        positive("patch_limit_on_one_side", self.patch_limit_on_one_side)?;
        if self.patch_size * self.merge_kernel_size > 1 << 16 || self.patch_limit_on_one_side > MAX_SIDE {
            return layout("kimi knobs are too large");
        }
        if pixel.backend != Backend::Pil {
            return layout("kimi_k25 has no torchvision backend: it follows Moonshot's processor (Pillow)");
        }
        if pixel.image_mean != [0.5; 3] || pixel.image_std != [0.5; 3] {
            return layout("kimi_k25 layouts reproduce Moonshot's normalisation only for image_mean = image_std = 0.5");
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("patch_size", self.patch_size.to_string()),
            ("merge_kernel_size", self.merge_kernel_size.to_string()),
            ("in_patch_limit", self.in_patch_limit.to_string()),
            ("patch_limit_on_one_side", self.patch_limit_on_one_side.to_string()),
            ("fixed_output_tokens", self.fixed_output_tokens.map_or("null".into(), |v| v.to_string())),
        ]
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        let (rw, rh, pw, ph) = navit_resize(
            width,
            height,
            self.patch_size,
            self.merge_kernel_size,
            self.in_patch_limit,
            self.patch_limit_on_one_side,
        )?;
        let f = self.patch_size * self.merge_kernel_size;
        Ok(ImageLayout {
            width,
            height,
            resized_width: rw,
            resized_height: rh,
            padded_width: pw,
            padded_height: ph,
            grid_thw: [1, ph / self.patch_size, pw / self.patch_size],
            num_tokens: self.fixed_output_tokens.unwrap_or((ph / f) * (pw / f)),
        })
    }

    fn packing(&self, l: &ImageLayout) -> Packing {
        Packing::Kimi {
            patch: self.patch_size as usize,
            padded_width: l.padded_width as usize,
            padded_height: l.padded_height as usize,
        }
    }

    /// `(3, p, p)`.
    fn row_shape(&self) -> Vec<usize> {
        let p = self.patch_size as usize;
        vec![3, p, p]
    }
}

/// Moonshot's navit resize (layout.md §6): never upscales, truncates, then pads to F.
/// Returns `(rw, rh, pw, ph)`.
pub fn navit_resize(
    width: u64,
    height: u64,
    patch: u64,
    merge: u64,
    limit: u64,
    side_limit: u64,
) -> Result<(u64, u64, u64, u64)> {
    check_size(width, height)?;
    let nw = ((width / patch) as f64).max(1.0);
    let nh = ((height / patch) as f64).max(1.0);
    let s1 = (limit as f64 / (nw * nh)).sqrt();
    let side = side_limit * patch;
    let s2 = side as f64 / width as f64;
    let s3 = side as f64 / height as f64;
    let s = 1.0f64.min(s1).min(s2).min(s3);
    let rw = ((width as f64 * s).trunc() as u64).max(1).min(side);
    let rh = ((height as f64 * s).trunc() as u64).max(1).min(side);
    let f = merge * patch;
    Ok((rw, rh, rw + (f - rw % f) % f, rh + (f - rh % f) % f))
}
