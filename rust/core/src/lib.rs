//! rawmm-core: the algorithms behind rawmm, with no Python dependency, so `cargo test` and
//! criterion run on their own. The `rawmm-py` crate binds them as `rawmm._core`.

pub mod decode;
pub mod encode;
pub mod error;
pub mod families;
pub mod fingerprint;
pub mod floatfmt;
pub mod header;
pub mod jpeg;
pub mod layout;
pub mod mem;
pub mod video;

pub use error::{Error, Result};
pub mod convert;
pub mod pack;
pub mod pipeline;
pub mod resample;
