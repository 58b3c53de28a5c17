//! The fused pass from a resized uint8 image to `pixel_values` (pixels.md §3–§5, §7).
//!
//! The resize's second pass produces one band of rows at a time (one merge-block row for Qwen,
//! one patch row for Kimi) straight into a small buffer, which is normalised through a per-channel
//! lookup table and scattered into the output. No full-size float intermediate exists, and each
//! band owns a contiguous slice of the output, so bands run in parallel.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::layout::{Backend, Resample};
use crate::resample::{RowResizer, Scratch};

/// Output element: f32, bfloat16 bit patterns, or u8 (the resized bytes, not normalised).
pub trait Element: Copy + Send + Sync + Default + 'static {
    /// The raw wire format: the "normalisation" is the identity on bytes.
    const RAW: bool = false;

    fn from_f32(x: f32) -> Self;

    /// Normalises one segment of a patch row: `d[c].len()` pixels of `CH` interleaved bytes
    /// from the start of `src` (CH = 4: RGBX; `src` may run on past them) into the three
    /// channel planes, through the table.
    #[inline(always)]
    fn segment<const CH: usize>(src: &[u8], d: [&mut [Self]; 3], norm: &Norm<Self>) {
        lut_segment::<Self, CH>(src, d, &norm.lut)
    }
}

#[inline(always)]
fn lut_segment<T: Copy, const CH: usize>(src: &[u8], [d0, d1, d2]: [&mut [T]; 3], [l0, l1, l2]: &[[T; 256]; 3]) {
    for (((a, b), c), px) in d0.iter_mut().zip(d1.iter_mut()).zip(d2.iter_mut()).zip(src.chunks_exact(CH)) {
        // RGBX: one load per pixel, bytes split in registers (measured 10% faster).
        let v = if CH == 4 {
            u32::from_le_bytes(px.try_into().expect("4 bytes"))
        } else {
            u32::from(px[0]) | u32::from(px[1]) << 8 | u32::from(px[2]) << 16
        };
        *a = l0[(v & 0xFF) as usize];
        *b = l1[(v >> 8 & 0xFF) as usize];
        *c = l2[(v >> 16 & 0xFF) as usize];
    }
}

impl Element for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }

    /// Both normalisations are a few IEEE operations per value, so AVX2 computes them eight
    /// lanes at a time with the table's exact bits; three table lookups per pixel cost more
    /// than the vector arithmetic.
    #[inline(always)]
    fn segment<const CH: usize>(src: &[u8], d: [&mut [Self]; 3], norm: &Norm<Self>) {
        #[cfg(target_arch = "x86_64")]
        if let (Some(affine), true) = (&norm.affine, d[0].len() >= 8) {
            // SAFETY: `affine` is only set when the CPU has AVX2; lengths are checked inside.
            return unsafe { avx2_affine_segment::<CH>(src, d, affine) };
        }
        lut_segment::<f32, CH>(src, d, &norm.lut)
    }
}

/// `Element::segment` for f32 with AVX2: 8 pixels become u32 lanes, each channel is shifted
/// out and converted exactly, `x` formed (torchvision: `f32(v)`; PIL: `f32(f64(v) · rescale)`,
/// one f64 multiply and one rounding), then `(x − m) / s` applied with `vsubps` and `vdivps`
/// (correctly rounded, like the scalar table and torch's `sub_` and `div_`). A segment of
/// `n >= 8` pixels is done in steps of 8, the last one overlapping the previous (it rewrites
/// equal values).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_affine_segment<const CH: usize>(src: &[u8], d: [&mut [f32]; 3], affine: &Affine) {
    use std::arch::x86_64::*;
    let n = d[0].len();
    assert!(n >= 8 && src.len() >= n * CH && d.iter().all(|p| p.len() == n));
    let (m, s) = (affine.mean.map(|v| _mm256_set1_ps(v)), affine.std.map(|v| _mm256_set1_ps(v)));
    let rescale = affine.rescale.map(|r| _mm256_set1_pd(r));
    let to_f32 = |v: __m256i| match rescale {
        None => _mm256_cvtepi32_ps(v),
        Some(r) => {
            let lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), r));
            let hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256::<1>(v)), r));
            _mm256_set_m128(hi, lo)
        }
    };
    let byte = _mm256_set1_epi32(0xFF);
    let mut x = 0;
    loop {
        let p = src.as_ptr().add(x * CH);
        let px = if CH == 4 {
            _mm256_loadu_si256(p as *const __m256i)
        } else {
            // Exactly 24 bytes: pixels 0-3 to the low lane, 4-7 to the high one, one per u32.
            let v =
                _mm256_set_m128i(_mm_loadl_epi64(p.add(16) as *const __m128i), _mm_loadu_si128(p as *const __m128i));
            let spread = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0));
            _mm256_shuffle_epi8(
                spread,
                _mm256_setr_epi8(
                    0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10,
                    11, -1,
                ),
            )
        };
        let channels = [
            _mm256_and_si256(px, byte),
            _mm256_and_si256(_mm256_srli_epi32::<8>(px), byte),
            _mm256_and_si256(_mm256_srli_epi32::<16>(px), byte),
        ];
        for c in 0..3 {
            let y = _mm256_div_ps(_mm256_sub_ps(to_f32(channels[c]), m[c]), s[c]);
            _mm256_storeu_ps(d[c].as_ptr().add(x) as *mut f32, y);
        }
        if x + 8 == n {
            break;
        }
        x = (x + 8).min(n - 8);
    }
}
impl Element for u16 {
    fn from_f32(x: f32) -> Self {
        bf16_bits(x)
    }
}

impl Element for u8 {
    const RAW: bool = true;

    fn from_f32(x: f32) -> Self {
        x as u8
    }

    /// The bytes themselves: a plain de-interleave, with SSSE3 byte shuffles for a patch's
    /// segment of up to 16 RGB pixels when 48 source bytes are readable.
    #[inline(always)]
    fn segment<const CH: usize>(src: &[u8], [d0, d1, d2]: [&mut [Self]; 3], _: &Norm<Self>) {
        #[cfg(target_arch = "x86_64")]
        if CH == 3 && d0.len() <= 16 && src.len() >= 48 && std::is_x86_feature_detected!("ssse3") {
            // SAFETY: SSSE3 is present, and 48 bytes of `src` are readable.
            let planes = unsafe { ssse3_deinterleave3(src) };
            let n = d0.len();
            for (d, plane) in [d0, d1, d2].into_iter().zip(&planes) {
                if n >= 8 {
                    // Two overlapping 8-byte copies: no memmove call for a 14-byte segment.
                    d[..8].copy_from_slice(&plane[..8]);
                    d[n - 8..].copy_from_slice(&plane[n - 8..n]);
                } else {
                    d.copy_from_slice(&plane[..n]);
                }
            }
            return;
        }
        for (((a, b), c), px) in d0.iter_mut().zip(d1.iter_mut()).zip(d2.iter_mut()).zip(src.chunks_exact(CH)) {
            (*a, *b, *c) = (px[0], px[1], px[2]);
        }
    }
}

/// 16 RGB pixels (48 bytes) as their R, G and B planes: each plane gathers its bytes from
/// the three 16-byte loads with one shuffle per load.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn ssse3_deinterleave3(src: &[u8]) -> [[u8; 16]; 3] {
    use std::arch::x86_64::*;
    debug_assert!(src.len() >= 48);
    let p = src.as_ptr() as *const __m128i;
    let v = [_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)), _mm_loadu_si128(p.add(2))];
    let mut out = [[0u8; 16]; 3];
    for (c, plane) in out.iter_mut().enumerate() {
        let mut acc = _mm_setzero_si128();
        for (k, &reg) in v.iter().enumerate() {
            // Output byte i takes source byte 3i + c when it lies in load k, else zero.
            let mask: [i8; 16] = std::array::from_fn(|i| {
                let j = 3 * i + c;
                if j / 16 == k {
                    (j % 16) as i8
                } else {
                    -1
                }
            });
            acc = _mm_or_si128(acc, _mm_shuffle_epi8(reg, _mm_loadu_si128(mask.as_ptr() as *const __m128i)));
        }
        _mm_storeu_si128(plane.as_mut_ptr() as *mut __m128i, acc);
    }
    out
}

/// The normalisation of a layout: a table of every (channel, byte value), and on an AVX2 CPU
/// its arithmetic form, which `Element::segment` evaluates in vector registers with the same
/// bits.
pub struct Norm<T> {
    pub lut: [[T; 256]; 3],
    affine: Option<Affine>,
    /// Each channel's value for a float −1.0 input in torchvision's fused arithmetic
    /// `(−1 − m) / s`: Inkling's tile padding, filled before normalising.
    pub minus_one: [T; 3],
}

/// `(x − mean) / std` in f32, with `x = f32(f64(v) · rescale)` (PIL backend) or `x = f32(v)`
/// (torchvision: `rescale` is None, mean and std carry the fused `1 / rescale`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Affine {
    rescale: Option<f64>,
    mean: [f32; 3],
    std: [f32; 3],
}

impl<T: Element> Norm<T> {
    pub fn new(mean: [f64; 3], std: [f64; 3], rescale: f64, backend: Backend) -> Self {
        let affine = match backend {
            Backend::Pil => Affine { rescale: Some(rescale), mean: mean.map(|v| v as f32), std: std.map(|v| v as f32) },
            Backend::Torchvision => {
                let inv = (1.0 / rescale) as f32;
                Affine { rescale: None, mean: mean.map(|v| v as f32 * inv), std: std.map(|v| v as f32 * inv) }
            }
        };
        #[cfg(target_arch = "x86_64")]
        let simd = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        let minus_one =
            std::array::from_fn(|c| T::from_f32((-1.0 - affine_tv(mean, rescale)[c]) / affine_tv(std, rescale)[c]));
        if T::RAW {
            let identity = std::array::from_fn(|v| T::from_f32(v as f32));
            return Norm { lut: [identity; 3], affine: None, minus_one: [T::default(); 3] };
        }
        Norm { lut: normalize_lut(mean, std, rescale, backend), affine: simd.then_some(affine), minus_one }
    }

    /// Rescale without normalising (`do_normalize` off, Gemma 4's default): PIL
    /// `f32(f64(v) · rescale)`, which is the normalisation with mean 0 and std 1 bit for bit;
    /// torchvision `f32(v) · f32(rescale)` (a uint8 tensor times a Python float).
    pub fn rescale_only(rescale: f64, backend: Backend) -> Self {
        match backend {
            Backend::Pil => Norm::new([0.0; 3], [1.0; 3], rescale, backend),
            Backend::Torchvision if T::RAW => Norm::new([0.0; 3], [1.0; 3], rescale, backend),
            Backend::Torchvision => {
                let table = std::array::from_fn(|v| T::from_f32(v as f32 * rescale as f32));
                Norm { lut: [table; 3], affine: None, minus_one: [T::from_f32(-(rescale as f32)); 3] }
            }
        }
    }
}

impl Norm<f32> {
    /// vLLM's in-model normalisation of uint8 patches (`FusedMMInputNorm.forward_native`, what
    /// its CPU platform runs): `f32(v) · w + b` in f32 with two roundings, where
    /// `w = f32(1 / std) · f32(rescale)` (torch evaluates `rescale / std` as a reciprocal times
    /// the scalar) and `b = −mean / std`, all in f32.
    pub fn vllm(mean: [f64; 3], std: [f64; 3], rescale: f64) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            let (m, s) = (mean[c] as f32, std[c] as f32);
            let (w, b) = ((1.0 / s) * rescale as f32, -m / s);
            for (v, x) in table.iter_mut().enumerate() {
                *x = v as f32 * w + b;
            }
        }
        Norm { lut, affine: None, minus_one: [0.0; 3] }
    }
}

/// transformers' fused mean or std: `f32(v) · f32(1 / rescale)`.
fn affine_tv(v: [f64; 3], rescale: f64) -> [f32; 3] {
    v.map(|x| x as f32 * (1.0 / rescale) as f32)
}

/// The uint8 wire format back to float32 `pixel_values`, bit-identical to the pipeline's own
/// float32 output: `src` holds rows of three channel-major blocks of `block` bytes (Qwen:
/// `(3, T, P, P)`, Kimi: `(3, P, P)`), each normalised with its channel's arithmetic (AVX2,
/// eight lanes) or table. Rows run in parallel when `parallel`.
///
/// `stream`: write with non-temporal stores, which skip reading each output line first. That
/// pays on memory already mapped (a reused `out`: 0.6x the time here) and costs on fresh pages,
/// which must be faulted in anyway (1.15x).
pub fn normalize_planar(
    src: &[u8],
    block: usize,
    norm: &Norm<f32>,
    out: &mut [f32],
    parallel: bool,
    stream: bool,
) -> bool {
    let row = 3 * block;
    if block == 0 || src.len() != out.len() || !src.len().is_multiple_of(row) {
        return false;
    }
    let one = |(s, o): (&[u8], &mut [f32])| {
        for (r, d) in s.chunks_exact(row).zip(o.chunks_exact_mut(row)) {
            for c in 0..3 {
                let (s, d) = (&r[c * block..(c + 1) * block], &mut d[c * block..(c + 1) * block]);
                #[cfg(target_arch = "x86_64")]
                if let (Some(affine), true) = (&norm.affine, s.len() >= 8) {
                    // SAFETY: `affine` is only set when the CPU has AVX2; lengths are equal.
                    unsafe { avx2_affine_planar(s, d, affine, c, stream) };
                    continue;
                }
                let lut = &norm.lut[c];
                for (x, &v) in d.iter_mut().zip(s) {
                    *x = lut[v as usize];
                }
            }
        }
    };
    // Tasks of about 256 KiB of input: enough work per task, enough tasks per core.
    let rows_per_task = ((256 << 10) / row).max(1) * row;
    let task = |(s, o): (&[u8], &mut [f32])| {
        one((s, o));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of x86_64; orders this task's streaming stores before it returns.
        unsafe {
            std::arch::x86_64::_mm_sfence()
        };
    };
    if parallel {
        src.par_chunks(rows_per_task).zip(out.par_chunks_mut(rows_per_task)).for_each(task);
    } else {
        task((src, out));
    }
    true
}

/// One channel's bytes to f32 with `Affine`'s exact arithmetic, 8 at a time (the last step
/// overlapping the previous one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_affine_planar(src: &[u8], d: &mut [f32], affine: &Affine, c: usize, stream: bool) {
    use std::arch::x86_64::*;
    let n = d.len();
    assert!(n >= 8 && src.len() == n);
    let (m, s) = (_mm256_set1_ps(affine.mean[c]), _mm256_set1_ps(affine.std[c]));
    let mut x = 0;
    loop {
        let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(src.as_ptr().add(x) as *const __m128i));
        let f = match affine.rescale {
            None => _mm256_cvtepi32_ps(v),
            Some(r) => {
                let r = _mm256_set1_pd(r);
                let lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), r));
                let hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256::<1>(v)), r));
                _mm256_set_m128(hi, lo)
            }
        };
        let y = _mm256_div_ps(_mm256_sub_ps(f, m), s);
        let p = d.as_mut_ptr().add(x);
        if stream && (p as usize).is_multiple_of(16) {
            // Streaming stores: the output is written once and not read back here, so skip
            // reading its lines into the cache first (the caller fences).
            _mm_stream_ps(p, _mm256_castps256_ps128(y));
            _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(y));
        } else {
            _mm256_storeu_ps(p, y);
        }
        if x + 8 == n {
            break;
        }
        x = (x + 8).min(n - 8);
    }
}

/// Packs into a new vector without zeroing it first (every element is written once).
pub fn pack_to_vec<T: Element>(
    job: &Job,
    packing: Packing,
    norm: &Norm<T>,
    resample: Resample,
    parallel: bool,
) -> Vec<T> {
    let n = packing.len(job.resized_width, job.resized_height);
    let mut out = crate::mem::with_capacity(n);
    pack_image(job, packing, norm, resample, &mut out.spare_capacity_mut()[..n], parallel);
    // SAFETY: `pack_image` initialised all `n` elements.
    unsafe { out.set_len(n) };
    out
}

/// float32 → bfloat16 bits, round-to-nearest-even (`half`'s conversion; for the finite values
/// produced here it equals pixels.md §7's `(u + 0x7FFF + ((u >> 16) & 1)) >> 16`).
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// The normalisation of every channel and byte value: exact as a table, because it is a pure
/// function of (channel, value).
/// - PIL backend: `(f32(f64(v) · rescale) − f32(mean)) / f32(std)` (pixels.md §3);
/// - torchvision backend, rescale fused into mean and std as transformers does it (float32
///   tensors times the Python float `1 / rescale`): `(f32(v) − m) / s` with
///   `m = f32(mean) · f32(1 / rescale)`, `s = f32(std) · f32(1 / rescale)`, every step in f32.
pub fn normalize_lut<T: Element>(mean: [f64; 3], std: [f64; 3], rescale: f64, backend: Backend) -> [[T; 256]; 3] {
    let mut lut = [[T::default(); 256]; 3];
    let inv = (1.0 / rescale) as f32;
    for (c, table) in lut.iter_mut().enumerate() {
        let (m, s) = (mean[c] as f32, std[c] as f32);
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = T::from_f32(match backend {
                Backend::Pil => ((v as f64 * rescale) as f32 - m) / s,
                Backend::Torchvision => (v as f32 - m * inv) / (s * inv),
            });
        }
    }
    lut
}

/// How patches are laid out in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Qwen: merge-block row order, `C·T·p·p` columns, the image tiled `temporal` times.
    Qwen { patch: usize, merge: usize, temporal: usize },
    /// Kimi K2.5: raster patches `(3, p, p)`, zero-padded (before normalisation) to `padded`.
    Kimi { patch: usize, padded_width: usize, padded_height: usize },
    /// Gemma 4: raster patches `(p, p, 3)`, then rows of zeros (after normalisation) up to
    /// `rows` patches.
    Gemma4 { patch: usize, rows: usize },
    /// Inkling: raster tiles `(2, p, p, 3)` (the tile twice) over `padded`, the area outside the
    /// image −1.0 before normalisation.
    Inkling { patch: usize, padded_width: usize, padded_height: usize },
}

impl Packing {
    /// Number of output elements for an image resized to `w`×`h`.
    pub fn len(&self, w: usize, h: usize) -> usize {
        match *self {
            Packing::Qwen { patch, temporal, .. } => (h / patch) * (w / patch) * 3 * temporal * patch * patch,
            Packing::Kimi { patch, padded_width, padded_height } => {
                (padded_height / patch) * (padded_width / patch) * 3 * patch * patch
            }
            Packing::Gemma4 { patch, rows } => rows * 3 * patch * patch,
            Packing::Inkling { patch, padded_width, padded_height } => {
                (padded_height / patch) * (padded_width / patch) * 6 * patch * patch
            }
        }
    }
}

/// One RGB image (3 channels, or 4 with an ignored fourth byte) and the size to resize it to.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub rgb: &'a [u8],
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub resized_width: usize,
    pub resized_height: usize,
}

/// Resizes and packs one image into `out` (`packing.len(resized)` elements), writing every
/// element: `out` may be uninitialised memory.
pub fn pack_image<T: Element>(
    job: &Job,
    packing: Packing,
    norm: &Norm<T>,
    resample: Resample,
    out: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    let (rw, rh) = (job.resized_width, job.resized_height);
    let rs = RowResizer::new(job.rgb, job.channels, true, (job.width, job.height), (rw, rh), resample);
    pack_resized(&rs, packing, norm, out, parallel)
}

/// Packs the output rows of `rs` (band by band, in parallel when `parallel`) into `out`.
pub fn pack_resized<T: Element>(
    rs: &RowResizer,
    packing: Packing,
    norm: &Norm<T>,
    out: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    let (rw, rh) = (rs.out_width, rs.out_height);
    assert_eq!(out.len(), packing.len(rw, rh), "output slice has the wrong length");
    let (band_rows, band_len) = packing.band(rw);
    let work = |(rsc, scratch): &mut (Scratch, Vec<T>), (band, chunk): (usize, &mut [MaybeUninit<T>])| {
        let y0 = band * band_rows;
        let buf = rs.rows_ref(y0, band_rows.min(rh.saturating_sub(y0)), rsc);
        pack_band(buf, rw, rs.channels(), packing, norm, chunk, scratch)
    };
    if parallel {
        out.par_chunks_mut(band_len).enumerate().for_each_init(Default::default, work);
    } else {
        let mut buf = Default::default();
        out.chunks_mut(band_len).enumerate().for_each(|item| work(&mut buf, item));
    }
}

impl Packing {
    /// Resized rows per band and the band's output elements, for a resized width `rw`.
    pub fn band(&self, rw: usize) -> (usize, usize) {
        match *self {
            Packing::Qwen { patch, merge, .. } => (patch * merge, self.len(rw, patch * merge)),
            Packing::Kimi { patch, padded_width, .. } => (patch, (padded_width / patch) * 3 * patch * patch),
            Packing::Gemma4 { patch, .. } => (patch, (rw / patch) * 3 * patch * patch),
            Packing::Inkling { patch, padded_width, .. } => (patch, (padded_width / patch) * 6 * patch * patch),
        }
    }
}

/// Packs one band of resized rows (`Packing::band`'s rows of width `rw`, `ch` channels; the
/// last band may be shorter) into its `chunk` of the output.
pub fn pack_band<T: Element>(
    buf: &[u8],
    rw: usize,
    ch: usize,
    packing: Packing,
    norm: &Norm<T>,
    chunk: &mut [MaybeUninit<T>],
    scratch: &mut Vec<T>,
) {
    match packing {
        Packing::Qwen { patch, merge, temporal } if ch == 4 => {
            pack_qwen_band::<T, 4>(buf, rw, patch, merge, temporal, norm, chunk, scratch)
        }
        Packing::Qwen { patch, merge, temporal } => {
            pack_qwen_band::<T, 3>(buf, rw, patch, merge, temporal, norm, chunk, scratch)
        }
        Packing::Kimi { patch, .. } => pack_kimi_band(buf, rw, ch, patch, &norm.lut, chunk),
        Packing::Gemma4 { patch, .. } => pack_gemma4_band(buf, rw, ch, patch, &norm.lut, chunk),
        Packing::Inkling { patch, .. } => pack_inkling_band(buf, rw, ch, patch, norm, chunk),
    }
}

/// One merge-block row: `band` holds `merge·patch` rows of width `w` with `CH` channels.
/// Each output row is assembled in `scratch` (L1) and copied out (see `copy_out`).
#[allow(clippy::too_many_arguments)]
fn pack_qwen_band<T: Element, const CH: usize>(
    band: &[u8],
    w: usize,
    p: usize,
    m: usize,
    temporal: usize,
    norm: &Norm<T>,
    chunk: &mut [MaybeUninit<T>],
    scratch: &mut Vec<T>,
) {
    let pp = p * p;
    let row_len = 3 * temporal * pp;
    let stride = w * CH;
    scratch.resize(3 * pp, T::default());
    // Where patch `r` (merge-block order) starts in the band.
    let at = |r: usize| (r / m % m) * p * stride + ((r / (m * m)) * m + r % m) * p * CH;
    let rows = chunk.len() / row_len;
    let base = chunk.as_ptr();
    let row_bytes = row_len * std::mem::size_of::<T>();
    for (r, out) in chunk.chunks_exact_mut(row_len).enumerate() {
        let patch = at(r);
        // The p short segments a patch reads lie a row apart, too many streams for the hardware
        // prefetcher: fetch the patch after next ahead of time.
        if r + 2 < rows {
            let ahead = at(r + 2);
            for y in 0..p {
                prefetch(&band[ahead + y * stride..][..p * CH]);
            }
        }
        // The row's three p·p channel planes.
        let (c0, rest) = scratch.split_at_mut(pp);
        let (c1, c2) = rest.split_at_mut(pp);
        let mut next = WritePrefetch::next_item(base, r, rows, row_bytes, p);
        for y in 0..p {
            next.step();
            let src = &band[patch + y * stride..];
            let o = y * p;
            T::segment::<CH>(src, [&mut c0[o..o + p], &mut c1[o..o + p], &mut c2[o..o + p]], norm);
        }
        // The temporal copies of a still image are identical.
        for (dst, plane) in
            out.chunks_exact_mut(pp).zip(scratch.chunks_exact(pp).flat_map(|c| std::iter::repeat_n(c, temporal)))
        {
            copy_out(dst, plane);
        }
    }
}

/// Qwen video (pixels.md §4): `frames` (sampled, one size) resized to (`rw`, `rh`) and packed
/// in groups of `temporal`; an incomplete last group repeats the last frame. Output rows are
/// group by group, each group in the image's merge-block order.
#[allow(clippy::too_many_arguments)]
pub fn pack_qwen_video<T: Element>(
    frames: &[Job],
    (patch, merge, temporal): (usize, usize, usize),
    norm: &Norm<T>,
    resample: Resample,
    out: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    let packing = Packing::Qwen { patch, merge, temporal };
    let (rw, rh) = (frames[0].resized_width, frames[0].resized_height);
    let groups = frames.len().div_ceil(temporal);
    assert_eq!(out.len(), groups * packing.len(rw, rh), "output slice has the wrong length");
    let resizers: Vec<RowResizer> = frames
        .iter()
        .map(|f| RowResizer::new(f.rgb, f.channels, true, (f.width, f.height), (rw, rh), resample))
        .collect();
    let ch = resizers[0].channels();
    assert!(resizers.iter().all(|r| r.channels() == ch), "frames must share one channel layout");
    let band_rows = patch * merge;
    let band_len = packing.len(rw, band_rows);
    let bands_per_group = rh / band_rows;
    let work = |(scratch, row): &mut (Vec<Scratch>, Vec<T>), (i, chunk): (usize, &mut [MaybeUninit<T>])| {
        let (tg, band) = (i / bands_per_group, i % bands_per_group);
        scratch.resize_with(temporal, Default::default);
        let bands: Vec<&[u8]> = scratch
            .iter_mut()
            .enumerate()
            .map(|(t, s)| resizers[(tg * temporal + t).min(frames.len() - 1)].rows_ref(band * band_rows, band_rows, s))
            .collect();
        if ch == 4 {
            pack_video_band::<T, 4>(&bands, rw, patch, merge, &norm.lut, chunk, row);
        } else {
            pack_video_band::<T, 3>(&bands, rw, patch, merge, &norm.lut, chunk, row);
        }
    };
    if parallel {
        out.par_chunks_mut(band_len).enumerate().for_each_init(Default::default, work);
    } else {
        let mut scratch = Default::default();
        out.chunks_mut(band_len).enumerate().for_each(|item| work(&mut scratch, item));
    }
}

/// One merge-block row of a frame group: `bands[t]` is frame t's band.
fn pack_video_band<T: Element, const CH: usize>(
    bands: &[&[u8]],
    w: usize,
    p: usize,
    m: usize,
    lut: &[[T; 256]; 3],
    chunk: &mut [MaybeUninit<T>],
    row: &mut Vec<T>,
) {
    let (pp, temporal) = (p * p, bands.len());
    let row_len = 3 * temporal * pp;
    row.resize(row_len, T::default());
    let (base, rows) = (chunk.as_ptr(), chunk.len() / row_len);
    let row_bytes = row_len * std::mem::size_of::<T>();
    for (r, out) in chunk.chunks_exact_mut(row_len).enumerate() {
        let (bw, ih, iw) = (r / (m * m), r / m % m, r % m);
        let x0 = (bw * m + iw) * p;
        let mut next = WritePrefetch::next_item(base, r, rows, row_bytes, 3 * temporal);
        for (k, block) in row.chunks_exact_mut(pp).enumerate() {
            next.step();
            let (c, t) = (k / temporal, k % temporal);
            for (y, seg) in block.chunks_exact_mut(p).enumerate() {
                let src = &bands[t][((ih * p + y) * w + x0) * CH..][..p * CH];
                for (d, px) in seg.iter_mut().zip(src.chunks_exact(CH)) {
                    *d = lut[c][px[c] as usize];
                }
            }
        }
        copy_out(out, row);
    }
}

/// Asks for the cache lines of `bytes` (a hint; no effect on results).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching has no architectural effect and both addresses are inside `bytes`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr() as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(bytes.len() - 1) as *const i8);
    }
}

/// Asks for the `len` bytes at `p` with intent to write, a share at each of `n` steps: while
/// one output row is looked up, the next row's lines arrive, so its copy finds them in cache
/// instead of waiting for each read-for-ownership (measured 30% faster packing). A hint: `p`
/// is never dereferenced. No divisions: this runs in the inner loops.
struct WritePrefetch {
    p: *const u8,
    lines: usize,
    n: usize,
    line: usize,
    due: usize,
}

impl WritePrefetch {
    /// For item `i + 1` of the `count` items of `bytes` each that start at `base` (nothing
    /// when `i` is the last), over `n` steps.
    fn next_item<T>(base: *const T, i: usize, count: usize, bytes: usize, n: usize) -> Self {
        let len = if i + 1 < count { bytes } else { 0 };
        WritePrefetch {
            p: (base as *const u8).wrapping_add((i + 1) * bytes),
            lines: len.div_ceil(64),
            n,
            line: 0,
            due: 0,
        }
    }

    #[inline(always)]
    fn step(&mut self) {
        self.due += self.lines;
        while self.due >= self.n {
            let line = self.p.wrapping_add(self.line * 64);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetching has no architectural effect, even for an invalid address.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
                _mm_prefetch::<_MM_HINT_ET0>(line as *const i8);
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = line;
            self.line += 1;
            self.due -= self.n;
        }
    }
}

/// Copies a row assembled in L1 to the output. Plain stores: streaming stores were measured
/// slower (5.6 vs 6.4 ms for a 25 MB pack) because an output this size still fits the L3.
fn copy_out<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: equal lengths, distinct buffers, and MaybeUninit<T> has T's layout.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut T, src.len()) };
}

/// One patch row: `band` holds up to `patch` rows of width `w` with `ch` channels (fewer at
/// the bottom edge); everything outside it is zero padding, normalised like a 0 byte.
fn pack_kimi_band<T: Element>(
    band: &[u8],
    w: usize,
    ch: usize,
    p: usize,
    lut: &[[T; 256]; 3],
    chunk: &mut [MaybeUninit<T>],
) {
    let stride = w * ch;
    let rows = band.len() / stride.max(1);
    let (base, patches) = (chunk.as_ptr(), chunk.len() / (3 * p * p));
    let patch_bytes = 3 * p * p * std::mem::size_of::<T>();
    for (pc, patch) in chunk.chunks_exact_mut(3 * p * p).enumerate() {
        let mut next = WritePrefetch::next_item(base, pc, patches, patch_bytes, 3);
        for ((c, plane), lut_c) in patch.chunks_exact_mut(p * p).enumerate().zip(lut) {
            next.step();
            for (y, dst) in plane.chunks_exact_mut(p).enumerate() {
                let x0 = pc * p;
                let real = if y < rows { w.saturating_sub(x0).min(p) } else { 0 };
                if real > 0 {
                    let src = &band[y * stride + x0 * ch..][..real * ch];
                    for (d, px) in dst.iter_mut().zip(src.chunks_exact(ch)) {
                        d.write(lut_c[px[c] as usize]);
                    }
                }
                dst[real..].fill(MaybeUninit::new(lut_c[0]));
            }
        }
    }
}

/// One row of Gemma 4 patches: `band` holds `p` rows of width `w` (`ch` channels), each patch
/// `p` runs of `p` pixels kept interleaved. The bands after the image (an empty `band`) are
/// its padding: zeros, as transformers pads after normalising.
fn pack_gemma4_band<T: Element>(
    band: &[u8],
    w: usize,
    ch: usize,
    p: usize,
    [l0, l1, l2]: &[[T; 256]; 3],
    chunk: &mut [MaybeUninit<T>],
) {
    if band.is_empty() {
        chunk.fill(MaybeUninit::new(T::default()));
        return;
    }
    let stride = w * ch;
    for (pc, patch) in chunk.chunks_exact_mut(3 * p * p).enumerate() {
        for (y, dst) in patch.chunks_exact_mut(3 * p).enumerate() {
            let src = &band[y * stride + pc * p * ch..][..p * ch];
            for (d, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(ch)) {
                d[0].write(l0[px[0] as usize]);
                d[1].write(l1[px[1] as usize]);
                d[2].write(l2[px[2] as usize]);
            }
        }
    }
}

/// One row of Inkling tiles: `band` holds up to `p` rows of width `w` (`ch` channels); each
/// tile's `p` rows of `p` pixels, interleaved, outside the image `norm.minus_one`, then the
/// same `(p, p, 3)` block again (temporal 2).
fn pack_inkling_band<T: Element>(
    band: &[u8],
    w: usize,
    ch: usize,
    p: usize,
    norm: &Norm<T>,
    chunk: &mut [MaybeUninit<T>],
) {
    let [l0, l1, l2] = &norm.lut;
    let stride = w * ch;
    let rows = band.len() / stride.max(1);
    let block = 3 * p * p;
    for (pc, tile) in chunk.chunks_exact_mut(2 * block).enumerate() {
        let (first, second) = tile.split_at_mut(block);
        let x0 = pc * p;
        let real = w.saturating_sub(x0).min(p);
        for (y, dst) in first.chunks_exact_mut(3 * p).enumerate() {
            let n = if y < rows { real } else { 0 };
            let (inside, outside) = dst.split_at_mut(3 * n);
            if n > 0 {
                let src = &band[y * stride + x0 * ch..][..n * ch];
                for (d, px) in inside.chunks_exact_mut(3).zip(src.chunks_exact(ch)) {
                    d[0].write(l0[px[0] as usize]);
                    d[1].write(l1[px[1] as usize]);
                    d[2].write(l2[px[2] as usize]);
                }
            }
            for d in outside.chunks_exact_mut(3) {
                for (slot, &v) in d.iter_mut().zip(&norm.minus_one) {
                    slot.write(v);
                }
            }
        }
        // `first` is fully written above.
        second.copy_from_slice(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lut() -> [[f32; 256]; 3] {
        normalize_lut([0.5; 3], [0.5; 3], 1.0 / 255.0, Backend::Pil)
    }

    fn norm() -> Norm<f32> {
        Norm::new([0.5; 3], [0.5; 3], 1.0 / 255.0, Backend::Pil)
    }

    #[test]
    fn planar_normalize_equals_the_table_for_every_byte() {
        for backend in [Backend::Pil, Backend::Torchvision] {
            let (mean, std) = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]);
            let norm = Norm::<f32>::new(mean, std, 1.0 / 255.0, backend);
            let lut = normalize_lut::<f32>(mean, std, 1.0 / 255.0, backend);
            for block in [1usize, 7, 8, 13, 1176 / 3] {
                let src: Vec<u8> = (0..3 * block * 300).map(|i| (i * 31 % 256) as u8).collect();
                for stream in [false, true] {
                    let mut out = vec![0f32; src.len()];
                    assert!(normalize_planar(&src, block, &norm, &mut out, true, stream));
                    for (i, (&v, &x)) in src.iter().zip(&out).enumerate() {
                        let c = i % (3 * block) / block;
                        assert_eq!(x.to_bits(), lut[c][v as usize].to_bits(), "{backend:?} block {block} at {i}");
                    }
                }
            }
            assert!(!normalize_planar(&[0; 10], 3, &norm, &mut [0.0; 10], false, false));
        }
    }

    /// Direct transcription of the closed form of pixels.md §4.
    fn qwen_reference(img: &[u8], w: usize, h: usize, p: usize, m: usize, t: usize) -> Vec<f32> {
        let l = lut();
        let (gh, gw) = (h / p, w / p);
        let row_len = 3 * t * p * p;
        let mut out = vec![0f32; gh * gw * row_len];
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for ih in 0..m {
                    for iw in 0..m {
                        let r = ((bh * (gw / m) + bw) * m + ih) * m + iw;
                        let (pr, pc) = (bh * m + ih, bw * m + iw);
                        for c in 0..3 {
                            for tt in 0..t {
                                for y in 0..p {
                                    for x in 0..p {
                                        let k = ((c * t + tt) * p + y) * p + x;
                                        out[r * row_len + k] =
                                            l[c][img[((pr * p + y) * w + pc * p + x) * 3 + c] as usize];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn qwen_closed_form() {
        let (w, h, p, m, t) = (8 * 4, 4 * 4, 4, 2, 2);
        let img: Vec<u8> = (0..w * h * 3).map(|v| (v * 31 % 256) as u8).collect();
        let packing = Packing::Qwen { patch: p, merge: m, temporal: t };
        for parallel in [false, true] {
            let job = Job { rgb: &img, channels: 3, width: w, height: h, resized_width: w, resized_height: h };
            let out =
                pack_to_vec(&job, packing, &norm(), Resample::Pillow(crate::layout::ResizeCompat::Pillow13), parallel);
            assert_eq!(out, qwen_reference(&img, w, h, p, m, t));
        }
    }

    #[test]
    fn qwen_video_closed_form_with_odd_frames() {
        // pixels.md §4 video form; 3 frames → groups (0, 1) and (2, 2).
        let (w, h, p, m, t) = (8, 8, 2, 2, 2);
        let frames: Vec<Vec<u8>> =
            (0..3).map(|f| (0..w * h * 3).map(|v| ((v * 7 + f * 50) % 256) as u8).collect()).collect();
        let jobs: Vec<Job> = frames
            .iter()
            .map(|d| Job { rgb: d, channels: 3, width: w, height: h, resized_width: w, resized_height: h })
            .collect();
        let n = 2 * Packing::Qwen { patch: p, merge: m, temporal: t }.len(w, h);
        for parallel in [false, true] {
            let mut out = Vec::with_capacity(n);
            pack_qwen_video(
                &jobs,
                (p, m, t),
                &norm(),
                Resample::Pillow(crate::layout::ResizeCompat::Pillow13),
                &mut out.spare_capacity_mut()[..n],
                parallel,
            );
            // SAFETY: fully written by pack_qwen_video.
            unsafe { out.set_len(n) };
            let l = lut();
            let (gh, gw) = (h / p, w / p);
            let row_len = 3 * t * p * p;
            for tg in 0..2 {
                for bh in 0..gh / m {
                    for bw in 0..gw / m {
                        for ih in 0..m {
                            for iw in 0..m {
                                let r = tg * gh * gw + ((bh * (gw / m) + bw) * m + ih) * m + iw;
                                let (pr, pc) = (bh * m + ih, bw * m + iw);
                                for c in 0..3 {
                                    for tt in 0..t {
                                        let f = (tg * t + tt).min(2);
                                        for y in 0..p {
                                            for x in 0..p {
                                                let k = ((c * t + tt) * p + y) * p + x;
                                                let v = frames[f][((pr * p + y) * w + pc * p + x) * 3 + c];
                                                assert_eq!(out[r * row_len + k], l[c][v as usize]);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn kimi_padding_bands_below_a_resized_image() {
        // 30×9 resized to 20×5 (both passes), padded to 28×28: bands past row 5 are all padding.
        let img: Vec<u8> = (0..30 * 9 * 3).map(|v| (v * 13 % 256) as u8).collect();
        let packing = Packing::Kimi { patch: 14, padded_width: 28, padded_height: 28 };
        let job = Job { rgb: &img, channels: 3, width: 30, height: 9, resized_width: 20, resized_height: 5 };
        for parallel in [false, true] {
            let out =
                pack_to_vec(&job, packing, &norm(), Resample::Pillow(crate::layout::ResizeCompat::Pillow13), parallel);
            assert_eq!(out.len(), 4 * 3 * 14 * 14);
            assert!(out[2 * 3 * 196..].iter().all(|&v| v == -1.0), "second patch row is padding");
        }
    }

    #[test]
    fn kimi_raster_and_padding() {
        let (w, h, p) = (5, 3, 2);
        let img: Vec<u8> = (0..w * h * 3).map(|v| (v * 17 % 256) as u8).collect();
        let packing = Packing::Kimi { patch: p, padded_width: 8, padded_height: 4 };
        let job = Job { rgb: &img, channels: 3, width: w, height: h, resized_width: w, resized_height: h };
        let out = pack_to_vec(&job, packing, &norm(), Resample::Pillow(crate::layout::ResizeCompat::Pillow13), false);
        let l = lut();
        let (gw, pw) = (4, 8);
        for py in 0..4 {
            for px in 0..pw {
                for c in 0..3 {
                    let n = (py / p) * gw + px / p;
                    let got = out[((n * 3 + c) * p + py % p) * p + px % p];
                    let want = if py < h && px < w { l[c][img[(py * w + px) * 3 + c] as usize] } else { -1.0 };
                    assert_eq!(got.to_bits(), want.to_bits(), "y={py} x={px} c={c}");
                }
            }
        }
    }

    #[test]
    fn vector_normalise_equals_the_table() {
        // Every byte value in every channel, RGB and RGBX, segments of 8 to 20 pixels (the
        // last vector step overlaps), against the scalar table with the same knobs.
        for (mean, std) in
            [([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]), ([0.5; 3], [0.5; 3])]
        {
            let norm = Norm::<f32>::new(mean, std, 1.0 / 255.0, Backend::Torchvision);
            let lut = normalize_lut::<f32>(mean, std, 1.0 / 255.0, Backend::Torchvision);
            let src: Vec<u8> = (0..4 * 300).map(|v| (v * 7 + v / 256) as u8).collect();
            for n in 8..=20 {
                for start in (0..256).step_by(n) {
                    for ch in [4, 3] {
                        let seg = &src[start * ch..(start + n) * ch];
                        let (mut got, mut want) =
                            ([vec![0f32; n], vec![0f32; n], vec![0f32; n]], [(); 3].map(|_| vec![0f32; n]));
                        let [g0, g1, g2] = &mut got;
                        let [w0, w1, w2] = &mut want;
                        if ch == 4 {
                            f32::segment::<4>(seg, [g0, g1, g2], &norm);
                            lut_segment::<f32, 4>(seg, [w0, w1, w2], &lut);
                        } else {
                            f32::segment::<3>(seg, [g0, g1, g2], &norm);
                            lut_segment::<f32, 3>(seg, [w0, w1, w2], &lut);
                        }
                        assert_eq!(got, want, "channels={ch} n={n} start={start}");
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_equals_the_spec_formula() {
        let spec = |x: f32| {
            let u = x.to_bits();
            ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) as u16
        };
        for c in 0..3 {
            for v in 0..256u32 {
                for (m, s) in [(0.5, 0.5), (0.48145466, 0.26862954)] {
                    let x = ((v as f64 * (1.0 / 255.0)) as f32 - m as f32) / s as f32;
                    assert_eq!(bf16_bits(x), spec(x), "c={c} v={v}");
                }
            }
        }
        let mut u = 1u32;
        for _ in 0..200_000 {
            u = u.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(u & 0xBFFF_FFFF); // finite: exponent never all ones
            assert_eq!(bf16_bits(x), spec(x), "{u:#x}");
        }
    }

    #[test]
    fn bf16_round_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is a tie between 0x3F80 and 0x3F81: even wins.
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(bf16_bits(-1.0), 0xBF80);
    }
}
