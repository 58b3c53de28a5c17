//! The core's error enum. The bindings map each variant onto the Python exception
//! hierarchy (`rawmm.errors`) in exactly one place.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Invalid geometry or knobs (Python: `LayoutError`, a `ValueError`).
    #[error("{0}")]
    Layout(String),
    /// Input that is not a usable image (Python: `ImageDecodeError`).
    #[error("{0}")]
    Decode(String),
    /// A size or pixel cap was exceeded (Python: `LimitExceededError`).
    #[error("{0}")]
    Limit(String),
    /// File-system or thread failure (Python: `OSError`). Refs, envelopes and digests are
    /// checked in Python, so the core has no ref or integrity errors of its own.
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn layout<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Layout(msg.into()))
}
