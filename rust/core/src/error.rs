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
    /// A size, pixel or length cap was exceeded (Python: `LimitExceededError`).
    #[error("{0}")]
    Limit(String),
    /// Malformed ref, hash text or envelope (Python: `RefFormatError`).
    #[error("{0}")]
    RefFormat(String),
    /// Bytes that do not match their digest (Python: `IntegrityError`).
    #[error("integrity check failed: expected {expected}, got {actual}")]
    Integrity { expected: String, actual: String },
    /// File-system failure while reading input (Python: `OSError`).
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn layout<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Layout(msg.into()))
}
