//! Image layout math for every model family (spec: layout.md §4, §6; hashing.md §5).
//!
//! Everything here reproduces Python float semantics exactly: `round` is ties-to-even,
//! `int()` truncates, integer products are exact and converted once to f64.

use crate::error::{layout, Error, Result};
use crate::floatfmt::py_float_repr;

/// Largest accepted side. Keeps every `h·w` (and Kimi's patch products) below 2^53, where
/// f64 division of the converted integers equals Python's exact int/int true division.
pub const MAX_SIDE: u64 = 1 << 24;

/// The only rescale factor v1 reproduces: Python's `1 / 255`.
pub const RESCALE_1_255: f64 = 1.0 / 255.0;

pub use crate::families::{Geometry, KimiGeometry, QwenGeometry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeCompat {
    /// Pillow 13.0: vertical pass first when it shrinks the height by more than twice
    /// the width's shrink (pixels.md §2.4).
    Pillow13,
    /// Pillow <= 12: always horizontal, then vertical.
    Pillow12,
}

/// Which transformers image processor the pixels reproduce (api.md, Backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `Qwen2VLImageProcessor`: torch's uint8 antialiased bicubic and the fused normalise.
    Torchvision,
    /// `Qwen2VLImageProcessorPil`: Pillow's BICUBIC and the two-step normalise.
    Pil,
}

/// Which resize a layout reproduces: Pillow's BICUBIC (in one of its pass orders), torch's
/// uint8 antialiased bicubic, torch's uint8 Lanczos-3 (`_upsample_lanczos2d_aa`), or torch's
/// float32 antialiased bicubic (`resample::float`, on the image converted to float first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Pillow(ResizeCompat),
    Torch,
    TorchLanczos,
    TorchFloat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExifPolicy {
    Apply,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlphaPolicy {
    CompositeWhite,
    Drop,
}

macro_rules! str_enum {
    ($ty:ty, $what:literal, $($name:literal => $var:expr),+) => {
        impl $ty {
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($name => Ok($var),)+
                    _ => layout(format!(concat!("unsupported ", $what, " {:?}; expected one of {}"),
                                        s, [$($name),+].join(", "))),
                }
            }
            pub fn as_str(self) -> &'static str {
                $(if self == $var { return $name; })+
                unreachable!()
            }
        }
    };
}
str_enum!(ResizeCompat, "resize_compat", "pillow13" => ResizeCompat::Pillow13, "pillow12" => ResizeCompat::Pillow12);
str_enum!(ExifPolicy, "exif_policy", "apply" => ExifPolicy::Apply, "ignore" => ExifPolicy::Ignore);
str_enum!(AlphaPolicy, "alpha_policy", "composite_white" => AlphaPolicy::CompositeWhite, "drop" => AlphaPolicy::Drop);
str_enum!(Backend, "backend", "torchvision" => Backend::Torchvision, "pil" => Backend::Pil);

/// Knobs that change pixel values but not the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelKnobs {
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    pub rescale_factor: f64,
    pub resize_compat: ResizeCompat,
    pub exif_policy: ExifPolicy,
    pub alpha_policy: AlphaPolicy,
    pub backend: Backend,
    /// False: rescale only (`do_normalize` off); mean and std are then unused.
    pub do_normalize: bool,
}

impl PixelKnobs {
    /// The resize this layout runs: the torchvision backend ignores Pillow's pass order.
    pub fn resample(&self) -> Resample {
        match self.backend {
            Backend::Torchvision => Resample::Torch,
            Backend::Pil => Resample::Pillow(self.resize_compat),
        }
    }
}

/// A complete, validated image layout: geometry plus pixel knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    pub geometry: Geometry,
    pub pixel: PixelKnobs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLayout {
    pub width: u64,
    pub height: u64,
    pub resized_width: u64,
    pub resized_height: u64,
    pub padded_width: u64,
    pub padded_height: u64,
    pub grid_thw: [u64; 3],
    pub num_tokens: u64,
}

pub(crate) fn positive(name: &str, v: u64) -> Result<()> {
    if v == 0 {
        return layout(format!("{name} must be >= 1, got 0"));
    }
    Ok(())
}

impl Knobs {
    pub fn new(geometry: Geometry, pixel: PixelKnobs) -> Result<Self> {
        geometry.validate(&pixel)?;
        for (name, vals) in [("image_mean", pixel.image_mean), ("image_std", pixel.image_std)] {
            if vals.iter().any(|v| !v.is_finite()) {
                return layout(format!("{name} must be finite, got {vals:?}"));
            }
        }
        if pixel.image_std.contains(&0.0) {
            return layout("image_std must not contain 0");
        }
        if pixel.rescale_factor != RESCALE_1_255 {
            return layout(format!(
                "rescale_factor must be 1/255 (0.00392156862745098) in v1, got {}",
                if pixel.rescale_factor.is_finite() {
                    py_float_repr(pixel.rescale_factor)
                } else {
                    "non-finite".into()
                }
            ));
        }
        Ok(Knobs { geometry, pixel })
    }

    pub fn family(&self) -> &'static str {
        self.geometry.family()
    }

    /// The resize this layout runs.
    pub fn resample(&self) -> Resample {
        self.geometry.resample(&self.pixel).0
    }

    /// The `rawmm-layout:v1` text (hashing.md §5.1): `key=CJSON(value)` pairs sorted by key.
    pub fn fingerprint_text(&self) -> String {
        let floats = |v: &[f64; 3]| format!("[{}]", v.map(py_float_repr).join(","));
        let quoted = |s: &str| format!("\"{s}\"");
        let p = &self.pixel;
        let mut pairs: Vec<(&str, String)> = vec![
            ("alpha_policy", quoted(p.alpha_policy.as_str())),
            ("exif_policy", quoted(p.exif_policy.as_str())),
            ("image_mean", floats(&p.image_mean)),
            ("image_std", floats(&p.image_std)),
            ("resample", quoted(self.geometry.resample(p).1)),
            ("rescale_factor", py_float_repr(p.rescale_factor)),
            ("resize_compat", quoted(p.resize_compat.as_str())),
        ];
        // "pil" is the meaning of every layout written before the knob existed, so it stays out
        // of the text and those fingerprints (and the refs that carry them) keep resolving.
        if p.backend == Backend::Torchvision {
            pairs.push(("backend", quoted(p.backend.as_str())));
        }
        // Likewise normalising is what every layout did before the knob existed.
        if !p.do_normalize {
            pairs.push(("do_normalize", "false".into()));
        }
        pairs.extend(self.geometry.fingerprint_pairs());
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let body: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("rawmm-layout:v1:{}:{}", self.family(), body.join(";"))
    }

    /// 32 lowercase hex: the first half of BLAKE3 over the fingerprint text.
    pub fn fingerprint(&self) -> String {
        blake3::hash(self.fingerprint_text().as_bytes()).to_hex()[..32].to_string()
    }

    pub fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
        self.geometry.image(width, height)
    }

    /// Vectorised `image`: `sizes` is `[w0, h0, w1, h1, ...]`; the output has six columns per
    /// row: resized_width, resized_height, grid_t, grid_h, grid_w, num_tokens.
    pub fn images(&self, sizes: &[i64]) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(sizes.len() / 2 * 6);
        for (row, wh) in sizes.chunks_exact(2).enumerate() {
            let bad = |e: Error| Error::Layout(format!("row {row}: {e}"));
            if wh[0] <= 0 || wh[1] <= 0 {
                return Err(bad(Error::Layout(format!("image size must be positive, got {}x{}", wh[0], wh[1]))));
            }
            let l = self.image(wh[0] as u64, wh[1] as u64).map_err(bad)?;
            out.extend(
                [l.resized_width, l.resized_height, l.grid_thw[0], l.grid_thw[1], l.grid_thw[2], l.num_tokens]
                    .map(|v| v as i64),
            );
        }
        Ok(out)
    }
}

pub fn check_size(width: u64, height: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return layout(format!("image size must be positive, got {width}x{height}"));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return layout(format!("image side exceeds {MAX_SIDE} pixels: {width}x{height}"));
    }
    Ok(())
}

pub fn check_ratio(height: u64, width: u64) -> Result<()> {
    let r = height.max(width) as f64 / height.min(width) as f64;
    if r > 200.0 {
        return layout(format!("absolute aspect ratio must be smaller than 200, got {}", py_float_repr(r)));
    }
    Ok(())
}

// Rounding of non-negative f64 values below 2^52 without libm: the abi3 wheel targets
// baseline x86-64 (no SSE4.1 `roundsd`), where `floor`/`round_ties_even` are library calls.
// Truncating casts are exact here, and so is `x - floor(x)`.
#[inline]
fn floor_pos(x: f64) -> u64 {
    x as u64
}
#[inline]
fn ceil_pos(x: f64) -> u64 {
    let t = x as u64;
    t + ((t as f64) < x) as u64
}
#[inline]
pub(crate) fn rhe_pos(x: f64) -> u64 {
    let t = x as u64;
    let d = x - t as f64;
    t + (d > 0.5 || (d == 0.5 && t % 2 == 1)) as u64
}

/// transformers' `smart_resize` (layout.md §4). Returns `(h̄, w̄)`.
pub fn smart_resize(height: u64, width: u64, factor: u64, min_pixels: u64, max_pixels: u64) -> Result<(u64, u64)> {
    check_size(width, height)?;
    check_ratio(height, width)?;
    Ok(bounded_resize(height, width, factor, 1, 1, min_pixels, max_pixels))
}

/// The shared tail of image and video `smart_resize`: round to the factor, then rescale when
/// `t̄·h̄·w̄` leaves the bounds. Bounds compare with `t_bar`, β uses the raw `t` (layout.md §7.2).
pub fn bounded_resize(h: u64, w: u64, factor: u64, t: u64, t_bar: u64, min_px: u64, max_px: u64) -> (u64, u64) {
    let f = factor as f64;
    let (hf, wf) = (h as f64, w as f64);
    let mut hb = factor * rhe_pos(hf / f);
    let mut wb = factor * rhe_pos(wf / f);
    let vol = t_bar as u128 * hb as u128 * wb as u128;
    if vol > max_px as u128 {
        let beta = ((t * h * w) as f64 / max_px as f64).sqrt();
        hb = factor.max(factor * floor_pos((hf / beta) / f));
        wb = factor.max(factor * floor_pos((wf / beta) / f));
    } else if vol < min_px as u128 {
        let beta = (min_px as f64 / (t * h * w) as f64).sqrt();
        hb = factor * ceil_pos((hf * beta) / f);
        wb = factor * ceil_pos((wf * beta) / f);
    }
    (hb, wb)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn pixel(mean: [f64; 3], std: [f64; 3]) -> PixelKnobs {
        PixelKnobs {
            image_mean: mean,
            image_std: std,
            rescale_factor: RESCALE_1_255,
            resize_compat: ResizeCompat::Pillow13,
            exif_policy: ExifPolicy::Apply,
            alpha_policy: AlphaPolicy::CompositeWhite,
            backend: Backend::Pil,
            do_normalize: true,
        }
    }
    pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
    pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

    pub fn qwen25() -> Knobs {
        let g = QwenGeometry {
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
            min_pixels: 3136,
            max_pixels: 12845056,
        };
        Knobs::new(Geometry::Qwen(g), pixel(CLIP_MEAN, CLIP_STD)).unwrap()
    }
    pub fn qwen3() -> Knobs {
        let g = QwenGeometry {
            patch_size: 16,
            merge_size: 2,
            temporal_patch_size: 2,
            min_pixels: 65536,
            max_pixels: 16777216,
        };
        Knobs::new(Geometry::Qwen(g), pixel([0.5; 3], [0.5; 3])).unwrap()
    }
    pub fn kimi() -> Knobs {
        let g = KimiGeometry {
            patch_size: 14,
            merge_kernel_size: 2,
            in_patch_limit: 16384,
            patch_limit_on_one_side: 512,
            fixed_output_tokens: None,
        };
        Knobs::new(Geometry::Kimi(g), pixel([0.5; 3], [0.5; 3])).unwrap()
    }

    fn row(k: &Knobs, w: u64, h: u64) -> (u64, u64, [u64; 3], u64) {
        let l = k.image(w, h).unwrap();
        (l.resized_width, l.resized_height, l.grid_thw, l.num_tokens)
    }

    #[test]
    fn qwen25_worked_examples() {
        // layout.md §4.2, verified against transformers 5.24.
        let k = qwen25();
        assert_eq!(row(&k, 1024, 1024), (1036, 1036, [1, 74, 74], 1369));
        assert_eq!(row(&k, 2048, 1536), (2044, 1540, [1, 110, 146], 4015));
        assert_eq!(row(&k, 1920, 1080), (1932, 1092, [1, 78, 138], 2691));
        assert_eq!(row(&k, 640, 480), (644, 476, [1, 34, 46], 391));
        assert_eq!(row(&k, 4032, 3024), (4032, 3024, [1, 216, 288], 15552));
        assert_eq!(row(&k, 70, 70), (56, 56, [1, 4, 4], 4));
        assert_eq!(row(&k, 700, 14), (420, 28, [1, 2, 30], 15));
        assert_eq!(row(&k, 20, 30), (56, 84, [1, 6, 4], 6));
        assert_eq!(row(&k, 8000, 100), (8008, 112, [1, 8, 572], 1144));
        assert_eq!(
            k.image(2100, 10).unwrap_err(),
            Error::Layout("absolute aspect ratio must be smaller than 200, got 210.0".into())
        );
        assert!(k.image(2000, 10).is_ok(), "exactly 200 passes");
        assert!(matches!(k.image(0, 10), Err(Error::Layout(_))));
        // ties (H×W in the spec): 126×1022 → (112, 1008); 1078×1918 → (1064, 1904)
        assert_eq!(smart_resize(126, 1022, 28, 3136, 12845056).unwrap(), (112, 1008));
        assert_eq!(smart_resize(1078, 1918, 28, 3136, 12845056).unwrap(), (1064, 1904));
    }

    #[test]
    fn qwen3_worked_examples() {
        let k = qwen3();
        assert_eq!(row(&k, 1024, 1024), (1024, 1024, [1, 64, 64], 1024));
        assert_eq!(row(&k, 2048, 1536), (2048, 1536, [1, 96, 128], 3072));
        assert_eq!(row(&k, 1280, 720), (1280, 704, [1, 44, 80], 880));
        assert_eq!(row(&k, 1920, 1080), (1920, 1088, [1, 68, 120], 2040));
        assert_eq!(row(&k, 32, 32), (256, 256, [1, 16, 16], 64));
        assert_eq!(row(&k, 4032, 3024), (4032, 3008, [1, 188, 252], 11844));
        assert_eq!(row(&k, 8192, 8192), (4096, 4096, [1, 256, 256], 16384));
    }

    #[test]
    fn kimi_worked_examples() {
        let k = kimi();
        let full = |w, h| {
            let l = k.image(w, h).unwrap();
            (l.resized_width, l.resized_height, l.padded_width, l.padded_height, l.grid_thw, l.num_tokens)
        };
        assert_eq!(full(1024, 1024), (1024, 1024, 1036, 1036, [1, 74, 74], 1369));
        assert_eq!(full(2048, 1536), (2048, 1536, 2072, 1540, [1, 110, 148], 4070));
        assert_eq!(full(4000, 3000), (2073, 1554, 2100, 1568, [1, 112, 150], 4200));
        assert_eq!(full(3000, 3000), (1794, 1794, 1820, 1820, [1, 130, 130], 4225));
        assert_eq!(full(8000, 100), (7168, 89, 7168, 112, [1, 8, 512], 1024));
        assert_eq!(full(224, 224), (224, 224, 224, 224, [1, 16, 16], 64));
        assert_eq!(full(10, 10), (10, 10, 28, 28, [1, 2, 2], 1));
    }

    #[test]
    fn fingerprints_match_spec() {
        // hashing.md §5.5.
        assert_eq!(qwen3().fingerprint(), "f9befd6e9938d4aabeff6b1025313139");
        assert_eq!(
            qwen3().fingerprint_text(),
            "rawmm-layout:v1:qwen_vl:alpha_policy=\"composite_white\";exif_policy=\"apply\";image_mean=[0.5,0.5,0.5];image_std=[0.5,0.5,0.5];max_pixels=16777216;merge_size=2;min_pixels=65536;patch_size=16;resample=\"bicubic\";rescale_factor=0.00392156862745098;resize_compat=\"pillow13\";temporal_patch_size=2"
        );
        assert_eq!(qwen25().fingerprint(), "69a42a62e3c05bd59af9e65022fe6eb0");
        assert_eq!(kimi().fingerprint(), "6458b2b215d334c0385058a4d628ed3f");
        // The torchvision backend adds one pair, in key order; "pil" texts are unchanged.
        let mut tv = qwen3();
        tv.pixel.backend = Backend::Torchvision;
        let want = qwen3().fingerprint_text().replace(";exif_policy", ";backend=\"torchvision\";exif_policy");
        assert_eq!(tv.fingerprint_text(), want);
        assert_ne!(tv.fingerprint(), qwen3().fingerprint());
    }

    #[test]
    fn rounding_helpers_match_std() {
        let mut x = 0.0f64;
        let mut vals = vec![0.0, 0.5, 1.5, 2.5, 2.4999999999999996, 3.5000000000000004, 4503599627370495.5];
        for _ in 0..100_000 {
            x = (x * 1.618033988749895 + 0.7310585786300049) % 70000.0;
            vals.extend([x, x.floor() + 0.5, x.floor()]);
        }
        for v in vals {
            assert_eq!(rhe_pos(v), v.round_ties_even() as u64, "{v}");
            assert_eq!(floor_pos(v), v.floor() as u64, "{v}");
            assert_eq!(ceil_pos(v), v.ceil() as u64, "{v}");
        }
    }

    #[test]
    fn images_names_first_bad_row() {
        let k = qwen25();
        assert_eq!(k.images(&[1024, 1024, 70, 70]).unwrap(), vec![1036, 1036, 1, 74, 74, 1369, 56, 56, 1, 4, 4, 4]);
        let err = k.images(&[1024, 1024, 2100, 10, 0, 5]).unwrap_err();
        assert!(matches!(&err, Error::Layout(m) if m.starts_with("row 1:")), "{err:?}");
        assert!(matches!(k.images(&[5, -1]), Err(Error::Layout(m)) if m.starts_with("row 0:")));
    }

    #[test]
    fn bad_knobs_rejected() {
        let mut p = pixel([0.5; 3], [0.5; 3]);
        p.rescale_factor = 0.004;
        let g = QwenGeometry { patch_size: 16, merge_size: 2, temporal_patch_size: 2, min_pixels: 1, max_pixels: 2 };
        assert!(Knobs::new(Geometry::Qwen(g), p).is_err());
        let g0 = QwenGeometry { min_pixels: 0, ..g };
        assert!(Knobs::new(Geometry::Qwen(g0), pixel([0.5; 3], [0.5; 3])).is_err());
        let kg = KimiGeometry {
            patch_size: 14,
            merge_kernel_size: 2,
            in_patch_limit: 16384,
            patch_limit_on_one_side: 512,
            fixed_output_tokens: None,
        };
        assert!(Knobs::new(Geometry::Kimi(kg), pixel(CLIP_MEAN, CLIP_STD)).is_err());
        let tv = PixelKnobs { backend: Backend::Torchvision, ..pixel([0.5; 3], [0.5; 3]) };
        assert!(Knobs::new(Geometry::Kimi(kg), tv).is_err());
    }
}
