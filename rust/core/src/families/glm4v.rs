//! GLM-4.1V, GLM-4.5V and GLM-4.6V (`Glm4vImageProcessor`, `Glm46VImageProcessor` and their
//! PIL twins, transformers 5.24): Qwen2-VL's patches, normalisation and packing with GLM's own
//! `smart_resize`, which first scales a side shorter than the factor up to it (truncating) and
//! bounds `temporal_patch_size · h̄ · w̄`, an image counting as that many frames.

use super::{Family, KnobValues, QwenGeometry};
use crate::error::{layout, Result};
use crate::layout::{bounded_resize, check_ratio, check_size, ImageLayout, PixelKnobs};
use crate::pack::Packing;

/// Qwen's knobs, read the same way: `min_pixels` and `max_pixels` are `size["shortest_edge"]`
/// and `size["longest_edge"]`, bounds on `T·h̄·w̄`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlmGeometry(pub QwenGeometry);

/// Sides are at most 2^24 (`MAX_SIDE`), so `T·h·w` stays below 2^53.
const MAX_TEMPORAL: u64 = 16;

/// `glm4v.image_processing_glm4v.smart_resize` (an image: `num_frames = temporal_factor = t`)
/// and `video_processing_glm4v.smart_resize` (`num_frames` sampled frames). Returns `(h̄, w̄)`.
pub fn glm_resize(
    height: u64,
    width: u64,
    (num_frames, t): (u64, u64),
    factor: u64,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u64, u64)> {
    check_size(width, height)?;
    if num_frames < t {
        return layout(format!("t:{num_frames} must be larger than temporal_factor:{t}"));
    }
    // `num_frames·h·w` is divided in f64: exact, as Python's int/int division, below 2^53.
    if num_frames > 1 << 16 || (num_frames as u128 * height as u128 * width as u128) >> 53 != 0 {
        return layout(format!("{num_frames} frames of {width}x{height} are too many pixels"));
    }
    let (mut h, mut w) = (height, width);
    if h < factor || w < factor {
        // Python: scale = max(factor / height, factor / width); int(height * scale).
        let scale = (factor as f64 / h as f64).max(factor as f64 / w as f64);
        h = (h as f64 * scale) as u64;
        w = (w as f64 * scale) as u64;
    }
    check_ratio(h, w)?;
    // Python: round(num_frames / temporal_factor) * temporal_factor (ties to even).
    let t_bar = (num_frames as f64 / t as f64).round_ties_even() as u64 * t;
    Ok(bounded_resize(h, w, factor, num_frames, t_bar, min_pixels, max_pixels))
}

impl Family for GlmGeometry {
    const NAME: &'static str = "glm4v";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        QwenGeometry::from_knobs(k).map(GlmGeometry)
    }

    fn validate(&self, pixel: &PixelKnobs) -> Result<()> {
        self.0.validate(pixel)?;
        // `T·h·w` is divided in f64, exact (as Python's int/int division) only below 2^53.
        if self.0.temporal_patch_size > MAX_TEMPORAL {
            return layout(format!("glm4v temporal_patch_size must be at most {MAX_TEMPORAL}"));
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        self.0.fingerprint_pairs()
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        let g = &self.0;
        let factor = g.patch_size * g.merge_size;
        let t = g.temporal_patch_size;
        let resized = glm_resize(height, width, (t, t), factor, g.min_pixels, g.max_pixels)?;
        Ok(g.layout((width, height), resized))
    }

    /// Qwen's: `patchify` expands each still image to `temporal_patch_size` equal frames.
    fn packing(&self, l: &ImageLayout) -> Packing {
        self.0.packing(l)
    }

    fn row_shape(&self) -> Vec<usize> {
        self.0.row_shape()
    }
}
