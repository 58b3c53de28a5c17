//! Inkling (`InklingImageProcessor`, transformers 5.24, torchvision only): the image at its own
//! size, or pre-scaled by `rescale_image_frac` (long edge, capped) with torch's uint8 Lanczos-3;
//! cut into `p`×`p` tiles, `ceil(h/p)` rows of `w//p + 1` (one more column than whole tiles,
//! even when `p` divides the width), each tile padded with −1.0 before normalising, and stored
//! twice (temporal 2) as `(2, p, p, 3)`. One placeholder per tile.

use super::{Family, KnobValues};
use crate::error::{layout, Result};
use crate::floatfmt::py_float_repr;
use crate::layout::{check_size, Backend, ImageLayout, PixelKnobs, Resample, MAX_SIDE};
use crate::pack::Packing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InklingGeometry {
    /// `size["height"]` (= width): the tile side.
    pub patch_size: u64,
    /// `rescale_image_frac` as f64 bits (the struct stays `Eq`), None: no pre-scale.
    rescale_image_frac: Option<u64>,
    pub rescale_image_max_upscaled_long_edge: Option<u64>,
}

impl InklingGeometry {
    pub fn new(patch_size: u64, frac: Option<f64>, cap: Option<u64>) -> Self {
        InklingGeometry {
            patch_size,
            rescale_image_frac: frac.map(f64::to_bits),
            rescale_image_max_upscaled_long_edge: cap,
        }
    }

    pub fn rescale_image_frac(&self) -> Option<f64> {
        self.rescale_image_frac.map(f64::from_bits)
    }

    /// The pre-scaled size `(w̄, h̄)`, in Python's arithmetic: `ratio = min(long·frac,
    /// max(cap, long)) / long`, then `floor(side·ratio + 0.5)` when the ratio is not 1.
    pub fn prescaled(&self, width: u64, height: u64) -> Result<(u64, u64)> {
        let Some(frac) = self.rescale_image_frac() else { return Ok((width, height)) };
        let long = width.max(height);
        let mut target = long as f64 * frac;
        if let Some(cap) = self.rescale_image_max_upscaled_long_edge {
            target = target.min(cap.max(long) as f64);
        }
        let ratio = target / long as f64;
        if ratio == 1.0 {
            return Ok((width, height));
        }
        let side = |v: u64| (v as f64 * ratio + 0.5).floor();
        let (w, h) = (side(width), side(height));
        if !(1.0..=MAX_SIDE as f64).contains(&w) || !(1.0..=MAX_SIDE as f64).contains(&h) {
            return layout(format!("rescale_image_frac {frac} makes a {width}x{height} image {w}x{h}"));
        }
        // torch 2.15's uint8 antialiased kernel fails an internal assertion making 1x1 out of a
        // taller image (`UpSampleKernelAVXAntialias.h`): the reference has no output to equal.
        if (w, h) == (1.0, 1.0) && height != 1 {
            return layout(format!("a {width}x{height} image pre-scaled to 1x1: torch's resize fails on it"));
        }
        Ok((w as u64, h as u64))
    }
}

impl Family for InklingGeometry {
    const NAME: &'static str = "inkling";

    fn from_knobs(k: &mut KnobValues) -> Result<Self> {
        Ok(InklingGeometry::new(
            k.required("patch_size")?,
            k.optional_float("rescale_image_frac")?,
            k.optional("rescale_image_max_upscaled_long_edge")?,
        ))
    }

    fn validate(&self, pixel: &PixelKnobs) -> Result<()> {
        if self.patch_size > 1 << 12 {
            return layout("patch_size must be at most 4096");
        }
        if pixel.backend != Backend::Torchvision {
            return layout("inkling has only a torchvision backend: transformers 5.24 has no InklingImageProcessorPil");
        }
        if !pixel.do_normalize {
            return layout("inkling layouts reproduce the processor with do_normalize on only");
        }
        Ok(())
    }

    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        vec![
            ("patch_size", self.patch_size.to_string()),
            ("rescale_image_frac", opt(self.rescale_image_frac().map(py_float_repr))),
            (
                "rescale_image_max_upscaled_long_edge",
                opt(self.rescale_image_max_upscaled_long_edge.map(|v| v.to_string())),
            ),
        ]
    }

    fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        check_size(width, height)?;
        let (rw, rh) = self.prescaled(width, height)?;
        let p = self.patch_size;
        let (gh, gw) = (rh.div_ceil(p), rw / p + 1);
        Ok(ImageLayout {
            width,
            height,
            resized_width: rw,
            resized_height: rh,
            padded_width: gw * p,
            padded_height: gh * p,
            grid_thw: [1, gh, gw],
            num_tokens: gh * gw,
        })
    }

    fn packing(&self, l: &ImageLayout) -> Packing {
        Packing::Inkling {
            patch: self.patch_size as usize,
            padded_width: l.padded_width as usize,
            padded_height: l.padded_height as usize,
        }
    }

    /// `(2, p, p, 3)`.
    fn row_shape(&self) -> Vec<usize> {
        let p = self.patch_size as usize;
        vec![2, p, p, 3]
    }

    fn channels_last(&self) -> bool {
        true
    }

    /// The padding is a float (−1.0) before normalising: no uint8 row holds it.
    fn raw_rows(&self) -> bool {
        false
    }

    fn resample(&self, _: &PixelKnobs) -> (Resample, &'static str) {
        (Resample::TorchLanczos, "lanczos")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_and_prescale_match_transformers() {
        // transformers 5.24's InklingImageProcessor: num_patches = ceil(h/40)·(w//40 + 1), and
        // with rescale_image_frac=1.5 (cap 2048) a 1000x700 image becomes 1500x1050; a
        // 1800x900 one is capped at 2048x1024.
        let g = InklingGeometry::new(40, None, Some(2048));
        assert_eq!(g.image(80, 41).unwrap().grid_thw, [1, 2, 3]);
        assert_eq!(g.image(1, 1).unwrap().num_tokens, 1);
        let g = InklingGeometry::new(40, Some(1.5), Some(2048));
        assert_eq!(g.prescaled(1000, 700).unwrap(), (1500, 1050));
        assert_eq!(g.prescaled(1800, 900).unwrap(), (2048, 1024));
    }
}
