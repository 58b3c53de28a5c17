//! JPEG decoded by libjpeg-turbo (built from source by `turbojpeg-sys`, SIMD on), with the
//! settings Pillow 13 decodes with: a greyscale file to L, a YCbCr or RGB file to RGB, the
//! library's defaults otherwise (accurate integer IDCT, fancy upsampling), so the rows are
//! Pillow's. CMYK and YCCK files (Pillow's own conversion rules), any error and any libjpeg
//! warning return `None`: the caller then decodes with Pillow, whose pixels or error stand.
//! libjpeg's `longjmp` error handling stays in `jpeg/shim.c`.

use std::marker::PhantomData;
use std::os::raw::{c_int, c_uchar, c_uint};
use std::ptr::NonNull;

use crate::decode::Raster;
use crate::pipeline::RowSource;

// Links the libjpeg-turbo that turbojpeg-sys builds; the shim calls its libjpeg API.
use turbojpeg_sys as _;

#[repr(C)]
struct Handle {
    _private: [u8; 0],
}

extern "C" {
    fn rawmm_jpeg_open(data: *const c_uchar, len: usize, width: c_uint, height: c_uint, channels: c_int)
        -> *mut Handle;
    fn rawmm_jpeg_read(j: *mut Handle, out: *mut c_uchar, stride: usize, rows: c_uint) -> c_int;
    fn rawmm_jpeg_finish(j: *mut Handle) -> c_int;
    fn rawmm_jpeg_close(j: *mut Handle);
}

/// A JPEG being decompressed, read top to bottom a block of rows at a time.
pub struct JpegRows<'a> {
    handle: NonNull<Handle>,
    pub width: usize,
    pub height: usize,
    /// 1 (L) or 3 (RGB).
    pub channels: usize,
    /// libjpeg reads `data` until `finish`.
    _data: PhantomData<&'a [u8]>,
}

// SAFETY: the decompressor is owned by this value alone and libjpeg keeps no global state.
unsafe impl Send for JpegRows<'_> {}

impl<'a> JpegRows<'a> {
    /// Header read, decompression started (which decodes a progressive file whole); None as
    /// for the module, and when the header is not `width` x `height` with `channels` (1 or 3)
    /// components: the caller's caps were checked on the size it read, so a file claiming
    /// another is declined before anything image-sized is allocated.
    pub fn open(data: &'a [u8], width: usize, height: usize, channels: usize) -> Option<Self> {
        if !matches!(channels, 1 | 3) {
            return None;
        }
        let (w, h) = (c_uint::try_from(width).ok()?, c_uint::try_from(height).ok()?);
        // SAFETY: `data` outlives the handle (the lifetime).
        let handle = unsafe { rawmm_jpeg_open(data.as_ptr(), data.len(), w, h, channels as c_int) };
        Some(JpegRows { handle: NonNull::new(handle)?, width, height, channels, _data: PhantomData })
    }

    /// Decodes the next `n` rows into `out[..n · width · channels]`.
    fn read_into(&mut self, n: usize, out: &mut [std::mem::MaybeUninit<u8>]) -> Option<()> {
        let stride = self.width * self.channels;
        assert!(out.len() >= n * stride);
        let rows = c_uint::try_from(n).ok()?;
        // SAFETY: `out` holds `n` rows of `stride` bytes; libjpeg writes exactly those.
        let rc = unsafe { rawmm_jpeg_read(self.handle.as_ptr(), out.as_mut_ptr().cast(), stride, rows) };
        (rc == 0).then_some(())
    }
}

impl RowSource for JpegRows<'_> {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn read_rows(&mut self, n: usize, out: &mut Vec<u8>) -> Option<()> {
        let (start, len) = (out.len(), n * self.width * self.channels);
        out.reserve(len);
        self.read_into(n, &mut out.spare_capacity_mut()[..len])?;
        // SAFETY: `read_into` wrote all `len` bytes.
        unsafe { out.set_len(start + len) };
        Some(())
    }

    fn finish(&mut self) -> Option<()> {
        // SAFETY: the handle is live.
        (unsafe { rawmm_jpeg_finish(self.handle.as_ptr()) } == 0).then_some(())
    }
}

impl Drop for JpegRows<'_> {
    fn drop(&mut self) {
        // SAFETY: opened by `rawmm_jpeg_open`, closed once.
        unsafe { rawmm_jpeg_close(self.handle.as_ptr()) }
    }
}

/// The whole image (L or RGB), decoded as Pillow decodes it; None as for `JpegRows::open`.
pub fn jpeg(data: &[u8], width: usize, height: usize, channels: usize) -> Option<Raster> {
    let mut rows = JpegRows::open(data, width, height, channels)?;
    let mut out = crate::mem::with_capacity(width.checked_mul(height)?.checked_mul(channels)?);
    rows.read_rows(height, &mut out)?;
    rows.finish()?;
    Some(Raster { data: out, width, height, channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: &[u8] = include_bytes!("../../../tests/corpus/jpeg/sample-2x2.jpg");
    const GREY: &[u8] = include_bytes!("../../../tests/corpus/jpeg/grey-progressive.jpg");

    #[test]
    fn decodes_what_the_caller_read_and_declines_the_rest() {
        let rgb = jpeg(RGB, 77, 53, 3).expect("a baseline 4:2:0 file");
        assert_eq!((rgb.width, rgb.height, rgb.channels, rgb.data.len()), (77, 53, 3, 77 * 53 * 3));
        assert_eq!(jpeg(GREY, 77, 53, 1).expect("a progressive grey file").data.len(), 77 * 53);
        // Another size or component count than the caller's caps were checked on, or damage.
        for (w, h, c) in [(78, 53, 3), (77, 52, 3), (77, 53, 1), (77, 53, 4)] {
            assert!(jpeg(RGB, w, h, c).is_none());
        }
        assert!(jpeg(&RGB[..RGB.len() / 2], 77, 53, 3).is_none());
        assert!(jpeg(&[], 77, 53, 3).is_none());
    }

    #[test]
    fn rows_read_in_blocks_are_the_whole_image() {
        let whole = jpeg(RGB, 77, 53, 3).unwrap();
        let mut rows = JpegRows::open(RGB, 77, 53, 3).unwrap();
        let mut out = Vec::new();
        for n in [1, 7, 16, 29] {
            rows.read_rows(n, &mut out).unwrap();
        }
        rows.finish().unwrap();
        assert_eq!(out, whole.data);
    }
}
