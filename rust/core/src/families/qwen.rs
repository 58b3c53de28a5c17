//! Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 (`Qwen2VLImageProcessor` and its PIL twin):
//! `smart_resize` to multiples of `patch·merge`, patches in merge-block order, each still
//! image repeated `temporal_patch_size` times (layout.md §4, pixels.md §3).

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::layout::{positive, smart_resize, ImageLayout, PixelKnobs};
use crate::pack::Packing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QwenGeometry {
    pub patch_size: u64,
    pub merge_size: u64,
    pub temporal_patch_size: u64,
    pub min_pixels: u64,
    pub max_pixels: u64,
}

impl QwenGeometry {
    /// The layout of an image of `(width, height)` resized to `(h̄, w̄)`: one grid of patches,
    /// a token per merge block.
    pub fn layout(&self, (width, height): (u64, u64), (rh, rw): (u64, u64)) -> ImageLayout {
        let (gh, gw) = (rh / self.patch_size, rw / self.patch_size);
        ImageLayout {
            width,
            height,
            resized_width: rw,
            resized_height: rh,
            padded_width: rw,
            padded_height: rh,
            grid_thw: [1, gh, gw],
            num_tokens: gh * gw / (self.merge_size * self.merge_size),
        }
    }
}

impl Family for QwenGeometry {
    const NAME: &'static str = "qwen_vl";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        Ok(QwenGeometry {
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
        if self.patch_size * self.merge_size > 1 << 16 {
            return layout("patch_size * merge_size is too large");
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
        let resized = smart_resize(height, width, factor, self.min_pixels, self.max_pixels)?;
        Ok(self.layout((width, height), resized))
    }

    fn packing(&self, _: &ImageLayout) -> Packing {
        Packing::Qwen {
            patch: self.patch_size as usize,
            merge: self.merge_size as usize,
            temporal: self.temporal_patch_size as usize,
        }
    }

    /// `3·T·p²` values.
    fn row_shape(&self) -> Vec<usize> {
        vec![(3 * self.temporal_patch_size * self.patch_size * self.patch_size) as usize]
    }
}
