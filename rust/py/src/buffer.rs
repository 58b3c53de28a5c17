//! Raw, zero-copy access to any C-contiguous buffer (bytes, bytearray, memoryview, numpy of any
//! dtype), as hashlib and blake3-py do; non-contiguous exporters raise `BufferError`.

use std::ffi::c_int;

use pyo3::ffi;
use pyo3::prelude::*;

pub struct ByteView {
    view: Box<ffi::Py_buffer>,
}

impl ByteView {
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `view` is a valid, zeroed Py_buffer; on success it is released in Drop.
        let rc: c_int = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_C_CONTIGUOUS) };
        if rc != 0 {
            let err = PyErr::fetch(obj.py());
            // Exporters that refuse a contiguous view (numpy raises ValueError) get the
            // BufferError hashlib and blake3-py raise; non-buffers keep their TypeError.
            if err.is_instance_of::<pyo3::exceptions::PyTypeError>(obj.py()) {
                return Err(err);
            }
            return Err(pyo3::exceptions::PyBufferError::new_err(format!("buffer is not C-contiguous: {err}")));
        }
        Ok(ByteView { view })
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.view.len == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous buffer exposes `len` readable bytes at `buf` while held.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for ByteView {
    fn drop(&mut self) {
        // Dropped while attached to the interpreter (it lives in a pyfunction's scope).
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.view) });
    }
}
