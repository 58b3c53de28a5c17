//! GLM-4.1V, GLM-4.5V and GLM-4.6V (`Glm4vImageProcessor`, `Glm46VImageProcessor` and their
//! PIL twins, transformers 5.24): Qwen2-VL's patches, normalisation and packing with GLM's own
//! `smart_resize`, which first scales a side shorter than the factor up to it (truncating) and
//! bounds `temporal_patch_size · h̄ · w̄`, an image counting as that many frames.

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::layout::{bounded_resize, check_ratio, check_size, positive, ImageLayout, PixelKnobs};
use crate::pack::Packing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlmGeometry {
    pub patch_size: u64,
    pub merge_size: u64,
    pub temporal_patch_size: u64,
    /// `size["shortest_edge"]`: the least `T·h̄·w̄`.
    pub min_pixels: u64,
    /// `size["longest_edge"]`: the most `T·h̄·w̄`.
    pub max_pixels: u64,
}

/// `glm4v.image_processing_glm4v.smart_resize` with `num_frames = temporal_factor = t`.
/// Returns `(h̄, w̄)`.
pub fn glm_resize(
    height: u64,
    width: u64,
    t: u64,
    factor: u64,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u64, u64)> {
    check_size(width, height)?;
    let (mut h, mut w) = (height, width);
    if h < factor || w < factor {
        // Python: scale = max(factor / height, factor / width); int(height * scale).
        let scale = (factor as f64 / h as f64).max(factor as f64 / w as f64);
        h = (h as f64 * scale) as u64;
        w = (w as f64 * scale) as u64;
    }
    check_ratio(h, w)?;
    Ok(bounded_resize(h, w, factor, t, t, min_pixels, max_pixels))
}

impl Family for GlmGeometry {
    const NAME: &'static str = "glm4v";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        Ok(GlmGeometry {
            patch_size: k.required("patch_size")?,
            merge_size: k.required("merge_size")?,
            temporal_patch_size: k.required("temporal_patch_size")?,
            min_pixels: k.required("min_pixels")?,
            max_pixels: k.required("max_pixels")?,
        })
    }

    fn validate(&self, _: &PixelKnobs) -> Result<()> {
        positive("patch_size", self.patch_size)?;
        positive("merge_size", self.merge_size)?;
        positive("temporal_patch_size", self.temporal_patch_size)?;
        positive("min_pixels", self.min_pixels)?;
        positive("max_pixels", self.max_pixels)?;
        if self.patch_size * self.merge_size > 1 << 16 || self.temporal_patch_size > 1 << 16 {
            return layout("patch_size * merge_size or temporal_patch_size is too large");
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("patch_size", self.patch_size.to_string()),
            ("merge_size", self.merge_size.to_string()),
            ("temporal_patch_size", self.temporal_patch_size.to_string()),
            ("min_pixels", self.min_pixels.to_string()),
            ("max_pixels", self.max_pixels.to_string()),
        ]
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        let factor = self.patch_size * self.merge_size;
        let t = self.temporal_patch_size;
        let (rh, rw) = glm_resize(height, width, t, factor, self.min_pixels, self.max_pixels)?;
        let (gh, gw) = (rh / self.patch_size, rw / self.patch_size);
        Ok(ImageLayout {
            width,
            height,
            resized_width: rw,
            resized_height: rh,
            padded_width: rw,
            padded_height: rh,
            grid_thw: [1, gh, gw],
            num_tokens: gh * gw / (self.merge_size * self.merge_size),
        })
    }

    /// Qwen's: `patchify` expands each still image to `temporal_patch_size` equal frames.
    fn packing(&self, _: &ImageLayout) -> Packing {
        Packing::Qwen {
            patch: self.patch_size as usize,
            merge: self.merge_size as usize,
            temporal: self.temporal_patch_size as usize,
        }
    }

    fn row_shape(&self) -> Vec<usize> {
        vec![(3 * self.temporal_patch_size * self.patch_size * self.patch_size) as usize]
    }
}
