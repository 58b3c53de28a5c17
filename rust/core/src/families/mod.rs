//! Model families: one module each, over the shared layout math (`layout`) and kernels
//! (`resample`, `pack`). `families!` below is the one registry: a new family is a module
//! implementing `Family` plus one line there.

use crate::error::{layout, Result};
use crate::layout::{ImageLayout, PixelKnobs, Resample};
use crate::pack::Packing;

pub mod gemma4;
pub mod glm4v;
pub mod inkling;
pub mod kimi;
pub mod nemotron;
pub mod qwen;

pub use gemma4::Gemma4Geometry;
pub use glm4v::GlmGeometry;
pub use inkling::InklingGeometry;
pub use kimi::KimiGeometry;
pub use nemotron::NemotronGeometry;
pub use qwen::QwenGeometry;

/// What rawmm knows of one family's images: its integer knobs, checks, layout and packing.
pub trait Family: Sized {
    /// The family id in fingerprints and refs.
    const NAME: &'static str;
    /// The geometry from its integer knobs (each read once; a missing one is an error).
    fn from_knobs(knobs: &mut KnobValues) -> Result<Self>;
    /// Checks beyond each knob's own range, with the pixel knobs the layout pairs it with.
    fn validate(&self, pixel: &PixelKnobs) -> Result<()>;
    /// This family's `key=value` pairs of the fingerprint text (hashing.md §5.1).
    fn fingerprint_pairs(&self) -> Vec<(&'static str, String)>;
    /// Layout of one image of `width`×`height` (oriented) pixels.
    fn image(&self, width: u64, height: u64) -> Result<ImageLayout>;
    /// How an image of layout `l` is packed into `pixel_values` rows.
    fn packing(&self, l: &ImageLayout) -> Packing;
    /// Shape of one `pixel_values` row.
    fn row_shape(&self) -> Vec<usize>;
    /// Whether a row's channels are interleaved (`(p, p, 3)`) rather than three planes.
    fn channels_last(&self) -> bool {
        false
    }
    /// Whether uint8 rows (the resized bytes before normalising) exist for this family.
    fn raw_rows(&self) -> bool {
        true
    }
    /// The resize this family's processor runs (BICUBIC of the layout's backend by default),
    /// and its name in the fingerprint.
    fn resample(&self, pixel: &PixelKnobs) -> (Resample, &'static str) {
        (pixel.resample(), "bicubic")
    }
}

/// A geometry knob's value: most are integers, a few (Inkling's pre-scale) floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knob {
    Int(i64),
    Float(f64),
}

impl From<i64> for Knob {
    fn from(v: i64) -> Self {
        Knob::Int(v)
    }
}

/// Geometry knobs by name, as a binding received them; each family takes the ones it reads,
/// and any left over is an error.
#[derive(Debug, Default)]
pub struct KnobValues(std::collections::BTreeMap<String, Option<Knob>>);

impl KnobValues {
    pub fn new<K: Into<Knob>>(knobs: impl IntoIterator<Item = (String, Option<K>)>) -> Self {
        KnobValues(knobs.into_iter().map(|(k, v)| (k, v.map(Into::into))).collect())
    }

    /// An optional integer knob (absent or None), which must be positive when given.
    pub fn optional(&mut self, name: &str) -> Result<Option<u64>> {
        match self.0.remove(name).flatten() {
            None => Ok(None),
            Some(Knob::Int(v)) if v >= 1 => Ok(Some(v as u64)),
            Some(Knob::Int(v)) => layout(format!("{name} must be positive, got {v}")),
            Some(Knob::Float(v)) => layout(format!("{name} must be an int, got {v}")),
        }
    }

    /// An optional float knob (an int is taken as its float), finite and positive when given.
    pub fn optional_float(&mut self, name: &str) -> Result<Option<f64>> {
        let v = match self.0.remove(name).flatten() {
            None => return Ok(None),
            Some(Knob::Int(v)) => v as f64,
            Some(Knob::Float(v)) => v,
        };
        if !(v.is_finite() && v > 0.0) {
            return layout(format!("{name} must be a positive finite number, got {v}"));
        }
        Ok(Some(v))
    }

    /// A required knob, positive.
    pub fn required(&mut self, name: &str) -> Result<u64> {
        match self.optional(name)? {
            Some(v) => Ok(v),
            None => layout(format!("missing knob {name}")),
        }
    }

    fn finish(self, family: &str) -> Result<()> {
        match self.0.keys().next() {
            Some(k) => layout(format!("{family} has no knob {k:?}")),
            None => Ok(()),
        }
    }
}

macro_rules! families {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// A family's geometry: the registry every dispatch goes through.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Geometry {
            $($variant($ty)),+
        }

        impl Geometry {
            /// The geometry of family `name` from its integer knobs.
            pub fn from_knobs(name: &str, mut knobs: KnobValues) -> Result<Self> {
                $(if name == <$ty as Family>::NAME {
                    let g = <$ty as Family>::from_knobs(&mut knobs)?;
                    knobs.finish(name)?;
                    return Ok(Geometry::$variant(g));
                })+
                layout(format!("unknown family {name:?}; expected one of {:?}", [$(<$ty as Family>::NAME),+]))
            }

            pub fn family(&self) -> &'static str {
                match self { $(Geometry::$variant(_) => <$ty as Family>::NAME),+ }
            }

            pub fn validate(&self, pixel: &PixelKnobs) -> Result<()> {
                match self { $(Geometry::$variant(g) => g.validate(pixel)),+ }
            }

            pub fn fingerprint_pairs(&self) -> Vec<(&'static str, String)> {
                match self { $(Geometry::$variant(g) => g.fingerprint_pairs()),+ }
            }

            pub fn image(&self, width: u64, height: u64) -> Result<ImageLayout> {
                match self { $(Geometry::$variant(g) => g.image(width, height)),+ }
            }

            pub fn packing(&self, l: &ImageLayout) -> Packing {
                match self { $(Geometry::$variant(g) => g.packing(l)),+ }
            }

            pub fn row_shape(&self) -> Vec<usize> {
                match self { $(Geometry::$variant(g) => g.row_shape()),+ }
            }

            pub fn channels_last(&self) -> bool {
                match self { $(Geometry::$variant(g) => g.channels_last()),+ }
            }

            pub fn raw_rows(&self) -> bool {
                match self { $(Geometry::$variant(g) => g.raw_rows()),+ }
            }

            pub fn resample(&self, pixel: &PixelKnobs) -> (Resample, &'static str) {
                match self { $(Geometry::$variant(g) => g.resample(pixel)),+ }
            }
        }
    };
}

families! {
    Qwen(QwenGeometry),
    Kimi(KimiGeometry),
    Glm(GlmGeometry),
    Gemma4(Gemma4Geometry),
    Inkling(InklingGeometry),
    Nemotron(NemotronGeometry),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(pairs: &[(&str, Option<i64>)]) -> KnobValues {
        KnobValues::new(pairs.iter().map(|&(k, v)| (k.to_string(), v)))
    }

    #[test]
    fn the_registry_builds_each_family_from_its_knobs() {
        let qwen = [
            ("patch_size", Some(14)),
            ("merge_size", Some(2)),
            ("temporal_patch_size", Some(2)),
            ("min_pixels", Some(3136)),
            ("max_pixels", Some(12845056)),
        ];
        let g = Geometry::from_knobs("qwen_vl", knobs(&qwen)).unwrap();
        let want = QwenGeometry {
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
            min_pixels: 3136,
            max_pixels: 12845056,
        };
        assert_eq!(g, Geometry::Qwen(want));
        assert_eq!((g.family(), g.row_shape()), ("qwen_vl", vec![1176]));
        let kimi = [
            ("patch_size", Some(14)),
            ("merge_kernel_size", Some(2)),
            ("in_patch_limit", Some(16384)),
            ("patch_limit_on_one_side", Some(512)),
            ("fixed_output_tokens", None),
        ];
        let g = Geometry::from_knobs("kimi_k25", knobs(&kimi)).unwrap();
        assert_eq!((g.family(), g.row_shape()), ("kimi_k25", vec![3, 14, 14]));
    }

    #[test]
    fn unknown_families_missing_extra_and_bad_knobs_are_layout_errors() {
        let err = |name: &str, pairs: &[(&str, Option<i64>)]| {
            Geometry::from_knobs(name, knobs(pairs)).unwrap_err().to_string()
        };
        assert!(err("llava", &[]).contains("unknown family \"llava\""));
        assert!(err("qwen_vl", &[("patch_size", Some(14))]).contains("missing knob merge_size"));
        let mut extra = vec![
            ("patch_size", Some(14)),
            ("merge_kernel_size", Some(2)),
            ("in_patch_limit", Some(16384)),
            ("patch_limit_on_one_side", Some(512)),
        ];
        extra.push(("merge_size", Some(2)));
        assert!(err("kimi_k25", &extra).contains("kimi_k25 has no knob \"merge_size\""));
        extra.pop();
        extra[0].1 = Some(0);
        assert!(err("kimi_k25", &extra).contains("patch_size must be positive, got 0"));
    }
}
