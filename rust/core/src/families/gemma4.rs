//! Gemma 4 (`Gemma4ImageProcessor` and `Gemma4ImageProcessorPil`, transformers 5.24): an
//! aspect-preserving resize to sides that are multiples of `pooling_kernel_size · patch_size`
//! within a patch budget, raster patches of `(p, p, 3)` (channels last), each image padded with
//! zero rows to `max_soft_tokens · k²` patches. Rescaled only by default (`do_normalize` off).

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::layout::{check_size, ImageLayout, PixelKnobs};
use crate::pack::Packing;

/// The soft-token budgets transformers accepts (`_SUPPORTED_SOFT_TOKENS`).
pub const SOFT_TOKENS: [u64; 5] = [70, 140, 280, 560, 1120];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemma4Geometry {
    pub patch_size: u64,
    pub max_soft_tokens: u64,
    pub pooling_kernel_size: u64,
}

impl Gemma4Geometry {
    /// Patches per image, padding included.
    pub fn max_patches(&self) -> u64 {
        self.max_soft_tokens * self.pooling_kernel_size * self.pooling_kernel_size
    }
}

impl Family for Gemma4Geometry {
    const NAME: &'static str = "gemma4";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        Ok(Gemma4Geometry {
            patch_size: k.required("patch_size")?,
            max_soft_tokens: k.required("max_soft_tokens")?,
            pooling_kernel_size: k.required("pooling_kernel_size")?,
        })
    }

    fn validate(&self, _: &PixelKnobs) -> Result<()> {
        if !SOFT_TOKENS.contains(&self.max_soft_tokens) {
            return layout(format!("max_soft_tokens must be one of {SOFT_TOKENS:?}, got {}", self.max_soft_tokens));
        }
        // Keeps the patch budget in pixels (and every side) far below 2^53.
        if self.patch_size > 1 << 10 || self.pooling_kernel_size > 1 << 6 {
            return layout("patch_size (at most 1024) or pooling_kernel_size (at most 64) is too large");
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("patch_size", self.patch_size.to_string()),
            ("max_soft_tokens", self.max_soft_tokens.to_string()),
            ("pooling_kernel_size", self.pooling_kernel_size.to_string()),
        ]
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        let (rh, rw) =
            aspect_preserving_size(height, width, self.patch_size, self.max_patches(), self.pooling_kernel_size)?;
        let (gh, gw) = (rh / self.patch_size, rw / self.patch_size);
        let k = self.pooling_kernel_size;
        Ok(ImageLayout {
            width,
            height,
            resized_width: rw,
            resized_height: rh,
            padded_width: rw,
            padded_height: rh,
            grid_thw: [1, gh, gw],
            num_tokens: gh * gw / (k * k),
        })
    }

    fn packing(&self, _: &ImageLayout) -> Packing {
        Packing::Gemma4 { patch: self.patch_size as usize, rows: self.max_patches() as usize }
    }

    /// `p·p·3` values.
    fn row_shape(&self) -> Vec<usize> {
        vec![(3 * self.patch_size * self.patch_size) as usize]
    }

    fn channels_last(&self) -> bool {
        true
    }
}

/// `gemma4.image_processing_gemma4.get_aspect_ratio_preserving_size`, in Python's float
/// arithmetic (every integer here is below 2^53, so each conversion is exact and each
/// division correctly rounded as Python's). Returns `(h̄, w̄)`.
pub fn aspect_preserving_size(height: u64, width: u64, patch: u64, max_patches: u64, k: u64) -> Result<(u64, u64)> {
    check_size(width, height)?;
    let target_px = max_patches * patch * patch;
    let factor = (target_px as f64 / (height * width) as f64).sqrt();
    let side = k * patch;
    let floor_to = |ideal: f64| (ideal / side as f64).floor() as u64 * side;
    let (mut th, mut tw) = (floor_to(factor * height as f64), floor_to(factor * width as f64));
    if th == 0 && tw == 0 {
        return layout(format!(
            "Attempting to resize to a 0 x 0 image. Resized height should be divisible by \
             `pooling_kernel_size * patch_size`={side}."
        ));
    }
    let max_side = (max_patches / (k * k)) * side;
    if th == 0 {
        th = side;
        tw = ((width as f64 / height as f64).floor() as u64 * side).min(max_side);
    } else if tw == 0 {
        tw = side;
        th = ((height as f64 / width as f64).floor() as u64 * side).min(max_side);
    }
    if th * tw > target_px {
        return layout(format!(
            "Resizing [{height}x{width}] to [{th}x{tw}] but this exceeds {max_patches} patches with patch_size {patch}"
        ));
    }
    Ok((th, tw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_transformers() {
        // transformers 5.24's get_aspect_ratio_preserving_size(h, w, 16, 2520, 3) on each pair.
        let cases = [
            ((1024, 1024), (768, 768)),
            ((720, 1280), (576, 1056)),
            ((1, 5000), (48, 13440)),
            ((5000, 1), (13440, 48)),
            ((1, 1), (768, 768)),
            ((3000, 20), (9792, 48)),
        ];
        for ((h, w), want) in cases {
            assert_eq!(aspect_preserving_size(h, w, 16, 2520, 3).unwrap(), want, "{h}x{w}");
        }
    }
}
