//! Zero-copy access to a PIL image's pixels through the Arrow PyCapsule interface that
//! Pillow >= 11.2 exports (`Image.__arrow_c_array__`). `np.asarray(image)` copies and
//! repacks every pixel; this borrows Pillow's own buffer (RGB is stored as RGBX).

use std::ffi::{c_char, c_void, CStr};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use rawmm_core::pipeline::Decoded;

#[repr(C)]
struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

#[repr(C)]
struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

/// `(schema capsule, array capsule, width, height, channels, alpha)` as built by
/// `rawmm.pixels`; the capsules keep Pillow's buffer alive and release it when collected.
pub struct PillowImage<'py> {
    _capsules: (Bound<'py, PyCapsule>, Bound<'py, PyCapsule>),
    data: &'py [u8],
    width: usize,
    height: usize,
    channels: usize,
    alpha: bool,
}

fn bad(msg: &str) -> PyErr {
    PyValueError::new_err(format!("unexpected Arrow export from Pillow: {msg}"))
}

impl<'py> PillowImage<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let (schema, array, width, height, channels, alpha): (
            Bound<'py, PyCapsule>,
            Bound<'py, PyCapsule>,
            usize,
            usize,
            usize,
            bool,
        ) = obj.extract()?;
        let sp = schema.pointer_checked(Some(c"arrow_schema"))?.as_ptr() as *const ArrowSchema;
        let ap = array.pointer_checked(Some(c"arrow_array"))?.as_ptr() as *const ArrowArray;
        // SAFETY: the capsules hold valid Arrow C structs (checked by name above) that stay
        // alive, unreleased, as long as the capsules, which `self` keeps.
        let data = unsafe {
            let (s, a) = (&*sp, &*ap);
            if s.release.is_none() || a.release.is_none() {
                return Err(bad("released"));
            }
            let format = CStr::from_ptr(s.format).to_bytes();
            let n = width * height;
            if a.length as usize != n || a.offset != 0 || a.null_count > 0 {
                return Err(bad("length, offset or nulls"));
            }
            let leaf = match (format, channels) {
                (b"C", 1) => a,
                (b"+w:4", 4)
                    if a.n_children == 1
                        && s.n_children == 1
                        && CStr::from_ptr((**s.children).format).to_bytes() == b"C" =>
                {
                    &**a.children
                }
                _ => return Err(bad("format")),
            };
            if leaf.n_buffers != 2 || leaf.offset != 0 || leaf.length as usize != n * channels {
                return Err(bad("buffers"));
            }
            let ptr = *leaf.buffers.add(1) as *const u8;
            if ptr.is_null() {
                return Err(bad("null data"));
            }
            std::slice::from_raw_parts(ptr, n * channels)
        };
        Ok(PillowImage { _capsules: (schema, array), data, width, height, channels, alpha })
    }

    pub fn decoded(&self) -> Decoded<'_> {
        Decoded { data: self.data, width: self.width, height: self.height, channels: self.channels, alpha: self.alpha }
    }
}
