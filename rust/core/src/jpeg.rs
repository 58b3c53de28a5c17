//! JPEG decoded by libjpeg-turbo (built from source by `turbojpeg-sys`, SIMD on), with the
//! settings Pillow 13 decodes with: a greyscale file to L, a YCbCr or RGB file to RGB, the
//! library's defaults otherwise (accurate integer IDCT, fancy upsampling), so the rows are
//! Pillow's. CMYK and YCCK files (Pillow's own conversion rules), any error and any libjpeg
//! warning return `None`: the caller then decodes with Pillow, whose pixels or error stand.
//! libjpeg's `longjmp` error handling stays in `jpeg/shim.c`.

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
    fn rawmm_jpeg_can_skip(j: *mut Handle) -> c_int;
    fn rawmm_jpeg_skip(j: *mut Handle, rows: c_uint) -> c_int;
    fn rawmm_jpeg_finish(j: *mut Handle) -> c_int;
    fn rawmm_jpeg_close(j: *mut Handle);
}

/// A JPEG being decompressed, read top to bottom a block of rows at a time.
pub struct JpegRows<'a> {
    handle: NonNull<Handle>,
    data: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// 1 (L) or 3 (RGB).
    pub channels: usize,
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
        Some(JpegRows { handle: NonNull::new(handle)?, data, width, height, channels })
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

    /// A second decompressor, for a single-scan 8-bit DCT file only (`rawmm_jpeg_can_skip`).
    fn fork(&self) -> Option<Self> {
        // SAFETY: the handle is live.
        if unsafe { rawmm_jpeg_can_skip(self.handle.as_ptr()) } == 0 {
            return None;
        }
        JpegRows::open(self.data, self.width, self.height, self.channels)
    }

    /// libjpeg still decodes the skipped rows' entropy data (and counts its warnings), but
    /// no pixels.
    fn skip(&mut self, n: usize) -> Option<()> {
        let rows = c_uint::try_from(n).ok()?;
        // SAFETY: the handle is live.
        (unsafe { rawmm_jpeg_skip(self.handle.as_ptr(), rows) } == 0).then_some(())
    }
}

impl Drop for JpegRows<'_> {
    fn drop(&mut self) {
        // SAFETY: opened by `rawmm_jpeg_open`, closed once.
        unsafe { rawmm_jpeg_close(self.handle.as_ptr()) }
    }
}

/// The whole image (L or RGB), decoded as Pillow decodes it; None as for `JpegRows::open`.
/// `cut`: a row where a second decompressor, on a thread of its own, takes over
/// (`split_row` says where that pays); ignored outside `1..height` and for a file a second
/// decompressor would decode whole again (`fork`).
pub fn jpeg(data: &[u8], width: usize, height: usize, channels: usize, cut: Option<usize>) -> Option<Raster> {
    let mut rows = JpegRows::open(data, width, height, channels)?;
    let len = width.checked_mul(height)?.checked_mul(channels)?;
    let mut out = crate::mem::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let split = cut.filter(|k| (1..height).contains(k)).and_then(|k| Some((k, rows.fork()?)));
    match split {
        Some((k, mut lower)) => {
            let (top, bottom) = spare.split_at_mut(k * width * channels);
            let (a, b) = side_by_side(
                || rows.read_into(k, top),
                || {
                    lower.skip(k)?;
                    lower.read_into(height - k, bottom)?;
                    lower.finish()
                },
            );
            a.and(b)?;
        }
        None => {
            rows.read_into(height, spare)?;
            rows.finish()?;
        }
    }
    // SAFETY: every row of `0..len` was written above.
    unsafe { out.set_len(len) };
    Some(Raster { data: out, width, height, channels })
}

/// `upper` on this thread while `lower` runs on a thread of its own (or after `upper`, if no
/// thread can be started). Not `rayon::join`: a pool thread asleep wakes too late on a VM,
/// and then the joining thread runs both halves itself, slower than one decompressor (the
/// second re-decodes the first half's entropy data), measured on half of the calls.
pub fn side_by_side<A, B: Send>(upper: impl FnOnce() -> A, lower: impl FnOnce() -> B + Send) -> (A, B) {
    let slot = std::sync::Mutex::new(Some(lower));
    let run_lower = || slot.lock().unwrap_or_else(|e| e.into_inner()).take().map(|f| f());
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new().name("rawmm-jpeg".into()).spawn_scoped(s, run_lower);
        let a = upper();
        let b = match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            Err(_) => run_lower(),
        };
        (a, b.expect("`lower` runs exactly once"))
    })
}

/// Where two decompressors should share a `width` x `height` image: when the current rayon
/// pool has two threads or more and the image repays a second decompressor's start. libjpeg
/// decodes in order, so the lower part's decompressor still entropy-decodes the upper part's
/// rows (about half of a row's cost): the upper part takes 11/16 of the rows, the fastest
/// cut measured (from 1/2 to 3/4 in steps of 1/16) on photos and screenshots.
pub fn split_row(width: usize, height: usize) -> Option<usize> {
    const MIN_PIXELS: usize = 1 << 16;
    let worth = rayon::current_num_threads() >= 2 && width * height >= MIN_PIXELS && height >= 32;
    worth.then(|| height * 11 / 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: &[u8] = include_bytes!("../../../tests/corpus/jpeg/sample-2x2.jpg");
    const GREY: &[u8] = include_bytes!("../../../tests/corpus/jpeg/grey-progressive.jpg");

    #[test]
    fn decodes_what_the_caller_read_and_declines_the_rest() {
        let rgb = jpeg(RGB, 77, 53, 3, None).expect("a baseline 4:2:0 file");
        assert_eq!((rgb.width, rgb.height, rgb.channels, rgb.data.len()), (77, 53, 3, 77 * 53 * 3));
        assert_eq!(jpeg(GREY, 77, 53, 1, None).expect("a progressive grey file").data.len(), 77 * 53);
        // Another size or component count than the caller's caps were checked on, or damage.
        for (w, h, c) in [(78, 53, 3), (77, 52, 3), (77, 53, 1), (77, 53, 4)] {
            assert!(jpeg(RGB, w, h, c, None).is_none());
        }
        assert!(jpeg(&RGB[..RGB.len() / 2], 77, 53, 3, None).is_none());
        assert!(jpeg(&[], 77, 53, 3, None).is_none());
    }

    #[test]
    fn two_decompressors_meeting_at_any_row_decode_the_whole_image() {
        let whole = jpeg(RGB, 77, 53, 3, None).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for cut in 0..=54 {
            let got = pool.install(|| jpeg(RGB, 77, 53, 3, Some(cut))).expect("a sound file");
            assert_eq!(got.data, whole.data, "cut at {cut}");
        }
        // A progressive file is never shared (its decompressor decodes it whole at the start).
        let grey = jpeg(GREY, 77, 53, 1, None).unwrap();
        assert_eq!(pool.install(|| jpeg(GREY, 77, 53, 1, Some(20))).unwrap().data, grey.data);
        // Damage anywhere fails either way, so Pillow decides.
        for cut in [1, 26, 52] {
            assert!(pool.install(|| jpeg(&RGB[..RGB.len() * 2 / 3], 77, 53, 3, Some(cut))).is_none());
        }
    }

    #[test]
    fn rows_read_in_blocks_are_the_whole_image() {
        let whole = jpeg(RGB, 77, 53, 3, None).unwrap();
        let mut rows = JpegRows::open(RGB, 77, 53, 3).unwrap();
        let mut out = Vec::new();
        for n in [1, 7, 16, 29] {
            rows.read_rows(n, &mut out).unwrap();
        }
        rows.finish().unwrap();
        assert_eq!(out, whole.data);
    }
}
