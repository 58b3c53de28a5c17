//! Bit-exact BICUBIC resampling of uint8 images: Pillow's (pixels.md §2) and torch's uint8
//! antialiased kernel, which torchvision runs for transformers' torchvision backend (§8).
//!
//! Both quantise f64 filter taps to fixed point, accumulate in i32 and clamp each pass to
//! uint8; they differ in the cubic's operation order, the tap precision (Pillow: 22 bits;
//! torch: int16 taps, precision chosen per axis from the largest weight) and the pass order.
//! SIMD resize crates use other precisions and differ, hence this hand-written port. Inner
//! loops run over contiguous runs of a row so LLVM vectorises them.

use crate::layout::{Resample, ResizeCompat};

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod float;

/// Pillow's precision for 8-bit images: 32 − 8 − 2 bits.
const PILLOW_PRECISION: u32 = 22;

/// Cubic convolution, a = −0.5, in Pillow's operation order.
#[inline]
fn pillow_cubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((1.5 * x - 2.5) * x) * x + 1.0
    } else if x < 2.0 {
        ((((x - 5.0) * x + 8.0) * x) - 4.0) * -0.5
    } else {
        0.0
    }
}

/// The same cubic in torch's order (`cubic_convolution1/2` of ATen's UpSample.h with
/// A = −0.5): `((A+2)x − (A+3))·x·x + 1` and `((A·x − 5A)·x + 8A)·x − 4A`.
#[inline]
fn torch_cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Lanczos-3 (`sinc(x)·sinc(x/3)` on |x| < 3), as Pillow's `lanczos_filter` computes it, which
/// torch's uint8 `_upsample_lanczos2d_aa` matches (the taps are then quantised as for bicubic).
#[inline]
fn lanczos3(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let px = x * std::f64::consts::PI;
            px.sin() / px
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Quantised taps for one axis: output `i` reads `count[i]` inputs from `lo[i]`, with taps
/// `taps[i * ksize ..][.. count[i]]`; `(Σ src·tap + round) >> precision`, clamped to u8.
#[derive(Debug, Clone)]
pub struct Coeffs {
    pub ksize: usize,
    pub lo: Vec<usize>,
    pub count: Vec<usize>,
    pub taps: Vec<i32>,
    pub precision: u32,
    /// For the SIMD kernels, per output, taps two by two: when every tap fits i16 (torch),
    /// `[k0 | k1 << 16, 0]`; otherwise (Pillow's 22-bit taps) `[hi, lo]` words holding the two
    /// taps' `k >> 11` and `k & 0x7FF` as 16-bit halves. `ksize.div_ceil(2)` per output.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pairs: Vec<[i32; 2]>,
    /// Whether `pairs` holds split halves.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    split: bool,
}

impl Coeffs {
    /// Pillow's taps for `n_in` → `n_out`.
    pub fn new(n_in: usize, n_out: usize) -> Coeffs {
        Coeffs::build(n_in, n_out, false)
    }

    /// torch's taps (`_compute_index_ranges_int16_weights` with antialias, align_corners=False).
    pub fn torch(n_in: usize, n_out: usize) -> Coeffs {
        Coeffs::build(n_in, n_out, true)
    }

    /// The taps of `resample`.
    pub fn of(resample: Resample, n_in: usize, n_out: usize) -> Coeffs {
        match resample {
            Resample::Pillow(_) => Coeffs::build(n_in, n_out, false),
            Resample::Torch => Coeffs::build(n_in, n_out, true),
            Resample::TorchLanczos => Coeffs::build_with(n_in, n_out, true, lanczos3, 3.0),
            Resample::TorchFloat => unreachable!("float resizes run in resample::float"),
        }
    }

    fn build(n_in: usize, n_out: usize, torch: bool) -> Coeffs {
        Coeffs::build_with(n_in, n_out, torch, if torch { torch_cubic } else { pillow_cubic }, 2.0)
    }

    /// Taps of `filter`, nonzero on `(-radius, radius)`.
    fn build_with(n_in: usize, n_out: usize, torch: bool, filter: fn(f64) -> f64, radius: f64) -> Coeffs {
        assert!(n_in > 0 && n_out > 0);
        let scale = n_in as f64 / n_out as f64;
        let fs = scale.max(1.0);
        let support = radius * fs;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / fs;
        let mut lo = Vec::with_capacity(n_out);
        let mut count = Vec::with_capacity(n_out);
        let mut weights = vec![0f64; n_out * ksize];
        let mut w_max = 0f64;
        for (i, w) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            let a = ((center - support + 0.5) as i64).max(0) as usize;
            let b = ((center + support + 0.5) as i64).min(n_in as i64) as usize;
            // torch clips the rare count that rounding makes one larger than the kernel.
            let n = if torch { (b - a).min(ksize) } else { b - a };
            let mut sum = 0.0;
            for (j, wj) in w[..n].iter_mut().enumerate() {
                *wj = filter((((a + j) as f64 - center) + 0.5) * inv);
                sum += *wj;
            }
            if sum != 0.0 {
                for wj in &mut w[..n] {
                    *wj /= sum;
                    w_max = w_max.max(*wj);
                }
            }
            lo.push(a);
            count.push(n);
        }
        // torch: the largest precision whose doubled largest weight still rounds below 2^15.
        let precision = if torch {
            (0..22).find(|p| (0.5 + w_max * (1u32 << (p + 1)) as f64) as i32 >= 1 << 15).unwrap_or(22)
        } else {
            PILLOW_PRECISION
        };
        let one = (1u32 << precision) as f64;
        let taps: Vec<i32> =
            weights.iter().map(|&w| if w < 0.0 { (w * one - 0.5) as i32 } else { (w * one + 0.5) as i32 }).collect();
        let split = taps.iter().any(|&k| k as i16 as i32 != k);
        let half = |k: i32| -> (u32, u32) {
            if !split {
                return (k as u16 as u32, 0);
            }
            // |k| < 2^24, so k >> 11 fits i16; k = (k >> 11) · 2^11 + (k & 0x7FF) exactly.
            debug_assert!((k >> 11) as i16 as i32 == k >> 11);
            ((k >> 11) as u16 as u32, (k & 0x7FF) as u32)
        };
        let pairs = taps
            .chunks_exact(ksize)
            .flat_map(|t| {
                (0..ksize.div_ceil(2)).map(move |q| {
                    let (h0, l0) = half(t[2 * q]);
                    let (h1, l1) = half(t.get(2 * q + 1).copied().unwrap_or(0));
                    [(h0 | h1 << 16) as i32, (l0 | l1 << 16) as i32]
                })
            })
            .collect();
        Coeffs { ksize, lo, count, taps, precision, pairs, split }
    }

    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn pairs_of(&self, i: usize) -> *const [i32; 2] {
        self.pairs[i * self.ksize.div_ceil(2)..].as_ptr()
    }

    #[inline]
    fn tap(&self, i: usize) -> (usize, &[i32]) {
        (self.lo[i], &self.taps[i * self.ksize..i * self.ksize + self.count[i]])
    }

    /// The accumulator's starting value: one half in fixed point.
    #[inline]
    fn round(&self) -> i32 {
        1 << (self.precision - 1)
    }
}

#[inline(always)]
fn clip8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// Rows filtered together by the horizontal pass. The block is transposed so each tap reads
/// `ROWS · C` contiguous bytes, which vectorises across rows (a per-pixel loop over 3 or 4
/// channels does not).
const ROWS: usize = 8;

/// Horizontal pass over up to `ROWS` rows: `src` rows of `w_in · CIN` bytes at `src_stride`,
/// `dst` rows of `w_out · C` bytes at `dst_stride`. Pixels keep their first `C` of `CIN`
/// bytes (RGBX → RGB costs nothing here). `RC = ROWS · C`.
#[inline(always)]
fn horizontal_block_impl<const CIN: usize, const C: usize, const RC: usize>(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    dst: &mut [u8],
    dst_stride: usize,
    co: &Coeffs,
    (tbuf, obuf): &mut (Vec<u8>, Vec<u8>),
) {
    let w_in = src_stride / CIN;
    // Scratch is reused without zeroing: lanes of missing rows are computed but never stored.
    if tbuf.len() < w_in * RC {
        tbuf.resize(w_in * RC, 0);
    }
    for r in 0..rows {
        let row = &src[r * src_stride..][..w_in * CIN];
        for (x, px) in row.chunks_exact(CIN).enumerate() {
            tbuf[x * RC + r * C..][..C].copy_from_slice(&px[..C]);
        }
    }
    let w_out = co.lo.len();
    if obuf.len() < w_out * RC {
        obuf.resize(w_out * RC, 0);
    }
    for (xo, o) in obuf[..w_out * RC].chunks_exact_mut(RC).enumerate() {
        let (lo, taps) = co.tap(xo);
        let mut acc = [co.round(); RC];
        for (col, &k) in tbuf[lo * RC..].chunks_exact(RC).zip(taps) {
            let col: &[u8; RC] = col.try_into().expect("chunk of RC");
            for i in 0..RC {
                acc[i] += col[i] as i32 * k;
            }
        }
        for i in 0..RC {
            o[i] = clip8(acc[i], co.precision);
        }
    }
    // Transpose back: row r of the block is every RC-th group of C bytes.
    for r in 0..rows {
        let drow = &mut dst[r * dst_stride..][..w_out * C];
        for (d, o) in drow.chunks_exact_mut(C).zip(obuf.chunks_exact(RC)) {
            d.copy_from_slice(&o[r * C..r * C + C]);
        }
    }
}

/// One output row of the vertical pass: `src` holds rows of `stride` bytes from row `origin` on.
#[inline(always)]
fn vertical_row_impl(
    src: &[u8],
    stride: usize,
    origin: usize,
    y: usize,
    dst: &mut [u8],
    co: &Coeffs,
    acc: &mut Vec<i32>,
) {
    let (lo, taps) = co.tap(y);
    acc.clear();
    acc.resize(stride, co.round());
    for (j, &k) in taps.iter().enumerate() {
        let row = &src[(lo + j - origin) * stride..][..stride];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as i32 * k;
        }
    }
    for (d, &a) in dst.iter_mut().zip(acc.iter()) {
        *d = clip8(a, co.precision);
    }
}

/// Compiles a kernel twice, for the baseline target and for AVX2 (chosen at run time): the
/// abi3 wheel targets baseline x86-64, whose 32-bit multiplies LLVM cannot vectorise well.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident $(<$(const $g:ident: usize),*>)? ($($arg:ident: $ty:ty),*) => $imp:ident) => {
        $(#[$m])*
        fn $name $(<$(const $g: usize),*>)? ($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2 $(<$(const $g: usize),*>)? ($($arg: $ty),*) {
                    $imp $(::<$($g),*>)? ($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2 $(::<$($g),*>)? ($($arg),*) };
                }
            }
            $imp $(::<$($g),*>)? ($($arg),*)
        }
    };
}

multiversion!(
    #[allow(clippy::too_many_arguments)]
    fn horizontal_block<const CIN: usize, const C: usize, const RC: usize>(src: &[u8], src_stride: usize, rows: usize, dst: &mut [u8], dst_stride: usize, co: &Coeffs, scratch: &mut (Vec<u8>, Vec<u8>)) => horizontal_block_impl
);
multiversion!(
    fn vertical_row(src: &[u8], stride: usize, origin: usize, y: usize, dst: &mut [u8], co: &Coeffs, acc: &mut Vec<i32>) => vertical_row_impl
);

/// Horizontal pass over any number of rows, in blocks of `ROWS`.
#[allow(clippy::too_many_arguments)]
fn horizontal_rows(
    in_channels: usize,
    channels: usize,
    src: &[u8],
    src_stride: usize,
    dst: &mut [u8],
    dst_stride: usize,
    co: &Coeffs,
    scratch: &mut (Vec<u8>, Vec<u8>),
) {
    let n = dst.len() / dst_stride;
    #[cfg(target_arch = "x86_64")]
    if matches!((in_channels, channels), (3, 3) | (4, 3) | (4, 4)) && std::is_x86_feature_detected!("avx2") {
        for b in (0..n).step_by(ROWS) {
            let rows = ROWS.min(n - b);
            let (s, d) = (&src[b * src_stride..], &mut dst[b * dst_stride..]);
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe {
                match (in_channels, channels) {
                    (3, 3) => avx2::horizontal_block::<3, 3>(s, src_stride, rows, d, dst_stride, co, scratch),
                    (4, 3) => avx2::horizontal_block::<4, 3>(s, src_stride, rows, d, dst_stride, co, scratch),
                    _ => avx2::horizontal_block::<4, 4>(s, src_stride, rows, d, dst_stride, co, scratch),
                }
            }
        }
        return;
    }
    for b in (0..n).step_by(ROWS) {
        let rows = ROWS.min(n - b);
        let (s, d) = (&src[b * src_stride..], &mut dst[b * dst_stride..]);
        match (in_channels, channels) {
            (1, 1) => horizontal_block::<1, 1, { ROWS }>(s, src_stride, rows, d, dst_stride, co, scratch),
            (2, 2) => horizontal_block::<2, 2, { 2 * ROWS }>(s, src_stride, rows, d, dst_stride, co, scratch),
            (3, 3) => horizontal_block::<3, 3, { 3 * ROWS }>(s, src_stride, rows, d, dst_stride, co, scratch),
            (4, 3) => horizontal_block::<4, 3, { 3 * ROWS }>(s, src_stride, rows, d, dst_stride, co, scratch),
            (4, 4) => horizontal_block::<4, 4, { 4 * ROWS }>(s, src_stride, rows, d, dst_stride, co, scratch),
            _ => unreachable!("channel counts are validated by the caller"),
        }
    }
}

/// Pillow 13's pass-order rule (signed arithmetic, pixels.md §2.4); Pillow 12 and torch
/// always run the horizontal pass first.
pub fn vertical_first(resample: Resample, w_in: usize, h_in: usize, w_out: usize, h_out: usize) -> bool {
    let dh = h_in as i64 - h_out as i64;
    let dw = w_in as i64 - w_out as i64;
    resample == Resample::Pillow(ResizeCompat::Pillow13) && dh > 0 && dh > 2 * dw
}

/// How a resize runs: at most one pass per axis, in Pillow's order.
#[derive(Debug, Clone)]
enum Plan {
    Copy,
    Horizontal(Coeffs),
    Vertical(Coeffs),
    /// Horizontal, then vertical over a sliding window of horizontally filtered rows.
    HorizontalFirst(Coeffs, Coeffs),
    /// Vertical, then horizontal on the band's own vertically filtered rows.
    VerticalFirst(Coeffs, Coeffs),
}

/// Per-thread buffers of a `RowResizer`: the intermediate rows of a two-pass resize (and which
/// intermediate rows they are), the horizontal pass's transposed blocks, the vertical
/// accumulator, and the output rows when they cannot be borrowed from the source.
#[derive(Default)]
pub struct Scratch {
    window: Vec<u8>,
    /// The `RowResizer::id` whose intermediate rows the window holds.
    window_owner: u64,
    window_rows: std::ops::Range<usize>,
    blocks: (Vec<u8>, Vec<u8>),
    acc: Vec<i32>,
    out: Vec<u8>,
}

/// A resize that produces any band of output rows on demand, so callers consume the result
/// band by band. Two-pass resizes never materialise their intermediate image: a band filters
/// only the intermediate rows it needs (reusing the rows a previous band on the same thread
/// already made), so memory beyond the output stays a few hundred rows at most.
pub struct RowResizer<'a> {
    /// Unique per resizer, so a `Scratch` shared by several never reuses another's rows.
    id: u64,
    src: &'a [u8],
    in_channels: usize,
    /// Channels of the output (a horizontal pass may drop an unused 4th).
    channels: usize,
    in_width: usize,
    plan: Plan,
    pub out_width: usize,
    pub out_height: usize,
}

impl<'a> RowResizer<'a> {
    /// `src` is a `w_in`×`h_in` image with `channels` interleaved u8 channels (1..=4). With
    /// `drop_fourth`, the 4th channel is unused (RGBX) and a horizontal pass drops it, so the
    /// output may have 3 channels: see `channels()`.
    pub fn new(
        src: &'a [u8],
        channels: usize,
        drop_fourth: bool,
        (w_in, h_in): (usize, usize),
        (w_out, h_out): (usize, usize),
        resample: Resample,
    ) -> Self {
        assert!((1..=4).contains(&channels) && src.len() == w_in * h_in * channels);
        let (h, v) = (|| Coeffs::of(resample, w_in, w_out), || Coeffs::of(resample, h_in, h_out));
        let plan = match (w_in != w_out, h_in != h_out) {
            (false, false) => Plan::Copy,
            (true, false) => Plan::Horizontal(h()),
            (false, true) => Plan::Vertical(v()),
            (true, true) if vertical_first(resample, w_in, h_in, w_out, h_out) => Plan::VerticalFirst(v(), h()),
            (true, true) => Plan::HorizontalFirst(h(), v()),
        };
        let narrow = drop_fourth && channels == 4 && !matches!(plan, Plan::Copy | Plan::Vertical(_));
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        RowResizer {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            src,
            in_channels: channels,
            channels: if narrow { 3 } else { channels },
            in_width: w_in,
            plan,
            out_width: w_out,
            out_height: h_out,
        }
    }

    /// Channels of the output rows.
    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn row_bytes(&self) -> usize {
        self.out_width * self.channels
    }

    /// Output rows `y0..y0 + n`: borrowed from the source when nothing is resized, otherwise
    /// made in `scratch.out`.
    pub fn rows_ref<'s>(&'s self, y0: usize, n: usize, scratch: &'s mut Scratch) -> &'s [u8] {
        let rb = self.row_bytes();
        if n == 0 {
            return &[];
        }
        if let Plan::Copy = self.plan {
            return &self.src[y0 * rb..(y0 + n) * rb];
        }
        let mut out = std::mem::take(&mut scratch.out);
        out.resize(n * rb, 0);
        self.rows(y0, &mut out, scratch);
        scratch.out = out;
        &scratch.out
    }

    /// Writes output rows `y0..y0 + dst.len() / row_bytes` into `dst`.
    pub fn rows(&self, y0: usize, dst: &mut [u8], scratch: &mut Scratch) {
        let n = dst.len() / self.row_bytes().max(1);
        if n == 0 {
            return;
        }
        let (cin, c, rb) = (self.in_channels, self.channels, self.row_bytes());
        let in_stride = self.in_width * cin;
        if scratch.window_owner != self.id {
            scratch.window_owner = self.id;
            scratch.window_rows = 0..0;
        }
        let Scratch { window, window_rows, blocks, acc, .. } = scratch;
        match &self.plan {
            Plan::Copy => dst.copy_from_slice(&self.src[y0 * rb..(y0 + n) * rb]),
            Plan::Horizontal(h) => horizontal_rows(cin, c, &self.src[y0 * in_stride..], in_stride, dst, rb, h, blocks),
            Plan::Vertical(v) => vertical_rows(self.src, in_stride, 0, y0, dst, v, acc),
            Plan::VerticalFirst(v, h) => {
                window.resize(n * in_stride, 0);
                vertical_rows(self.src, in_stride, 0, y0, window, v, acc);
                horizontal_rows(cin, c, window, in_stride, dst, rb, h, blocks);
            }
            Plan::HorizontalFirst(h, v) => {
                // Intermediate rows the band reads: `lo` and `lo + count` never decrease.
                let need = v.lo[y0]..v.lo[y0 + n - 1] + v.count[y0 + n - 1];
                let mid = self.out_width * c;
                let keep = if window_rows.contains(&need.start) { window_rows.end.min(need.end) } else { need.start };
                let kept = keep - need.start;
                if kept > 0 {
                    let from = (need.start - window_rows.start) * mid;
                    window.copy_within(from..from + kept * mid, 0);
                }
                window.resize(need.len() * mid, 0);
                let fresh = &mut window[kept * mid..need.len() * mid];
                horizontal_rows(cin, c, &self.src[keep * in_stride..], in_stride, fresh, mid, h, blocks);
                *window_rows = need.clone();
                vertical_rows(window, mid, need.start, y0, dst, v, acc);
            }
        }
    }

    /// The whole resized image, bands in parallel when `parallel`.
    pub fn materialize(&self, parallel: bool) -> Vec<u8> {
        let rb = self.row_bytes();
        let mut out = crate::mem::zeroed(rb * self.out_height);
        // Bands amortise the per-task cost and the window's overlap.
        let band = 32;
        if parallel {
            use rayon::prelude::*;
            out.par_chunks_mut(rb * band)
                .enumerate()
                .for_each_init(Scratch::default, |s, (i, chunk)| self.rows(i * band, chunk, s));
        } else {
            let mut s = Scratch::default();
            out.chunks_mut(rb * band).enumerate().for_each(|(i, chunk)| self.rows(i * band, chunk, &mut s));
        }
        out
    }
}

/// Output rows `y0..` of a vertical pass into `dst` (rows of `stride` bytes); `src` holds the
/// input rows from `origin` on.
fn vertical_rows(src: &[u8], stride: usize, origin: usize, y0: usize, dst: &mut [u8], co: &Coeffs, acc: &mut Vec<i32>) {
    #[cfg(target_arch = "x86_64")]
    if stride >= 32 && std::is_x86_feature_detected!("avx2") {
        for (i, out) in dst.chunks_exact_mut(stride).enumerate() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { avx2::vertical_row(src, stride, origin, y0 + i, out, co) };
        }
        return;
    }
    for (i, out) in dst.chunks_exact_mut(stride).enumerate() {
        vertical_row(src, stride, origin, y0 + i, out, co, acc);
    }
}

/// The horizontal pass alone, for a producer of input rows (a decoder) that feeds them a few at
/// a time: the same taps and arithmetic as a `RowResizer`'s first pass.
pub struct Horizontal {
    co: Coeffs,
    in_channels: usize,
    /// Channels of the output rows (an unused 4th is dropped, as `RowResizer` does).
    pub channels: usize,
    out_width: usize,
}

impl Horizontal {
    pub fn new(in_channels: usize, drop_fourth: bool, w_in: usize, w_out: usize, resample: Resample) -> Self {
        let co = Coeffs::of(resample, w_in, w_out);
        let channels = if drop_fourth && in_channels == 4 { 3 } else { in_channels };
        Horizontal { co, in_channels, channels, out_width: w_out }
    }

    /// Bytes of one output row.
    pub fn out_row(&self) -> usize {
        self.out_width * self.channels
    }

    /// Filters whole rows of `src` (each `src_stride` bytes) into `dst`, one output row per row.
    pub fn rows(&self, src: &[u8], src_stride: usize, dst: &mut [u8], scratch: &mut Scratch) {
        let rb = self.out_row();
        horizontal_rows(self.in_channels, self.channels, src, src_stride, dst, rb, &self.co, &mut scratch.blocks);
    }
}

/// The vertical pass alone, over a window of input rows that a producer (a decoder, then the
/// horizontal pass) fills in order: the same taps and arithmetic as a `RowResizer`'s.
pub struct Vertical {
    co: Coeffs,
}

impl Vertical {
    pub fn new(h_in: usize, h_out: usize, resample: Resample) -> Self {
        Vertical { co: Coeffs::of(resample, h_in, h_out) }
    }

    /// The input rows that output rows `y0..y0 + n` (n > 0) read; neither end ever decreases
    /// as `y0` grows.
    pub fn need(&self, y0: usize, n: usize) -> std::ops::Range<usize> {
        let last = y0 + n - 1;
        self.co.lo[y0]..self.co.lo[last] + self.co.count[last]
    }

    /// Output rows `y0..` into `dst` (rows of `stride` bytes); `window` holds the input rows
    /// from `origin` on, at least `need(y0, n)`.
    pub fn rows(&self, window: &[u8], stride: usize, origin: usize, y0: usize, dst: &mut [u8], scratch: &mut Scratch) {
        vertical_rows(window, stride, origin, y0, dst, &self.co, &mut scratch.acc);
    }
}

/// Resizes a whole `w_in`×`h_in`×`channels` u8 image like Pillow's `Image.resize(BICUBIC)` or
/// torch's `interpolate(mode="bicubic", antialias=True)` on uint8.
pub fn resize_bicubic(
    src: &[u8],
    channels: usize,
    size_in: (usize, usize),
    size_out: (usize, usize),
    resample: Resample,
    parallel: bool,
) -> Vec<u8> {
    RowResizer::new(src, channels, false, size_in, size_out, resample).materialize(parallel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P13: Resample = Resample::Pillow(ResizeCompat::Pillow13);
    const P12: Resample = Resample::Pillow(ResizeCompat::Pillow12);

    fn taps(n_in: usize, n_out: usize, i: usize) -> (usize, Vec<i32>) {
        let c = Coeffs::new(n_in, n_out);
        let (lo, t) = c.tap(i);
        (lo, t.to_vec())
    }

    #[test]
    fn coefficient_vectors_from_spec() {
        // pixels.md §2.2 test vectors.
        assert_eq!(taps(4, 8, 0), (0, vec![4564390, -370086]));
        assert_eq!(taps(4, 8, 3), (0, vec![-294912, 3637248, 950272, -98304]));
        assert_eq!(taps(1024, 980, 0), (0, vec![4052376, 162821, -20893]));
        assert_eq!(taps(1024, 980, 500), (521, vec![-286889, 2523952, 2225216, -267976]));
        assert_eq!(taps(517, 504, 503), (514, vec![-7619, 88971, 4112951]));
        assert_eq!(taps(30, 112, 0), (0, vec![4658231, -463927]));
    }

    #[test]
    fn pass_order_rule() {
        // 720×477 → 728×476 shrinks the height and grows the width: vertical first in Pillow 13.
        assert!(vertical_first(P13, 720, 477, 728, 476));
        assert!(!vertical_first(P12, 720, 477, 728, 476));
        assert!(!vertical_first(P13, 1024, 1024, 1036, 1036));
    }

    #[test]
    fn unchanged_size_is_a_copy_and_flat_stays_flat() {
        let src: Vec<u8> = (0..6 * 5 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_bicubic(&src, 3, (6, 5), (6, 5), P13, false), src);
        let flat = vec![77u8; 40 * 30 * 3];
        let out = resize_bicubic(&flat, 3, (40, 30), (13, 57), P13, true);
        assert!(out.iter().all(|&v| v == 77));
    }

    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// The SIMD kernels' instruction sets here: AVX2, and AVX2 with AVX-VNNI where present.
    #[cfg(target_arch = "x86_64")]
    fn vnni_modes() -> Vec<bool> {
        if avx2::vnni() {
            vec![false, true]
        } else {
            vec![false]
        }
    }

    /// The AVX2 horizontal block against the portable one, `rows` rows of noise.
    #[cfg(target_arch = "x86_64")]
    fn horizontal_agrees<const CIN: usize, const C: usize, const RC: usize>(
        w_in: usize,
        w_out: usize,
        rows: usize,
        co: &Coeffs,
        seed: u32,
    ) {
        let src = noise(rows * w_in * CIN, seed);
        let (mut want, mut got) = (vec![0u8; rows * w_out * C], vec![0u8; rows * w_out * C]);
        let mut scratch = Default::default();
        horizontal_block_impl::<CIN, C, RC>(&src, w_in * CIN, rows, &mut want, w_out * C, co, &mut scratch);
        for vnni in vnni_modes() {
            // SAFETY: callers check for AVX2 first; `vnni_modes` for AVX-VNNI.
            unsafe {
                avx2::horizontal_block_as::<CIN, C>(vnni, &src, w_in * CIN, rows, &mut got, w_out * C, co, &mut scratch)
            };
            assert_eq!(got, want, "horizontal {w_in}->{w_out} cin={CIN} c={C} rows={rows} vnni={vnni}");
        }
    }

    /// The AVX2 vertical row (both instruction sets) against the portable one.
    #[cfg(target_arch = "x86_64")]
    fn vertical_agrees(src: &[u8], stride: usize, origin: usize, y: usize, co: &Coeffs, want: &[u8]) {
        for vnni in vnni_modes() {
            let mut got = vec![0u8; want.len()];
            // SAFETY: callers check for AVX2 first; `vnni_modes` for AVX-VNNI.
            unsafe { avx2::vertical_row_as(vnni, src, stride, origin, y, &mut got, co) };
            assert_eq!(got, want, "vertical y={y} stride={stride} origin={origin} vnni={vnni}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_equal_the_portable_ones() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let sizes = [(1, 1), (5, 9), (8, 8), (11, 3), (16, 40), (37, 100), (100, 37), (300, 7), (7, 300), (1000, 13)];
        // Both tap kinds: Pillow's split 22-bit taps and torch's int16 ones.
        let cases = sizes.iter().flat_map(|&(w_in, w_out)| {
            [(w_in, w_out, Coeffs::new(w_in, w_out)), (w_in, w_out, Coeffs::torch(w_in, w_out))]
        });
        for (case, (w_in, w_out, co)) in cases.enumerate() {
            for rows in 1..=8 {
                let seed = (case * 97 + rows) as u32;
                horizontal_agrees::<3, 3, 24>(w_in, w_out, rows, &co, seed);
                horizontal_agrees::<4, 3, 24>(w_in, w_out, rows, &co, seed);
                horizontal_agrees::<4, 4, 32>(w_in, w_out, rows, &co, seed);
            }
            // Vertical: w_in → w_out rows of 32..200 bytes.
            for stride in [32, 33, 63, 64, 200] {
                let src = noise(w_in * stride, case as u32 + 7);
                for y in 0..w_out {
                    let (mut want, mut got) = (vec![0u8; stride], vec![0u8; stride]);
                    vertical_row_impl(&src, stride, 0, y, &mut want, &co, &mut Vec::new());
                    vertical_agrees(&src, stride, 0, y, &co, &want);
                    // A window holding rows from `origin` on, as the streaming resize passes it.
                    let origin = co.lo[y];
                    let window = &src[origin * stride..];
                    vertical_row_impl(window, stride, origin, y, &mut got, &co, &mut Vec::new());
                    assert_eq!(got, want, "portable window {w_in}->{w_out} y={y}");
                    vertical_agrees(window, stride, origin, y, &co, &want);
                }
            }
        }
        // Extreme taps: strong upscale (largest centre tap) and strong downscale (many taps).
        for (n_in, n_out) in [(2, 1000), (3000, 7), (1024, 1036)] {
            for co in [Coeffs::new(n_in, n_out), Coeffs::torch(n_in, n_out)] {
                let src = noise(n_in * 48, 3);
                for y in (0..n_out).step_by(1 + n_out / 50) {
                    let mut want = vec![0u8; 48];
                    vertical_row_impl(&src, 48, 0, y, &mut want, &co, &mut Vec::new());
                    vertical_agrees(&src, 48, 0, y, &co, &want);
                }
            }
        }
    }

    #[test]
    fn torch_taps_fit_int16_and_the_precision_rule() {
        // torch's rule: the largest precision p < 22 such that round(w_max · 2^(p+1)) < 2^15.
        for (n_in, n_out) in [(1, 1), (1, 500), (500, 1), (1024, 1036), (4000, 7), (7, 4000), (33, 32)] {
            let co = Coeffs::torch(n_in, n_out);
            assert!(!co.split, "{n_in}->{n_out}");
            let w_max = *co.taps.iter().max().unwrap() as f64 / (1u32 << co.precision) as f64;
            assert!((1..=22).contains(&co.precision));
            if co.precision < 22 {
                assert!((w_max * (1u32 << (co.precision + 1)) as f64).round() >= 32768.0, "{n_in}->{n_out}");
            }
        }
        assert!(Coeffs::new(1024, 1036).split, "Pillow's 22-bit taps need the split form");
    }

    #[test]
    fn torch_runs_horizontal_first_and_channels_are_independent() {
        assert!(!vertical_first(Resample::Torch, 720, 477, 728, 476));
        let src = noise(90 * 70 * 3, 5);
        let rgb = resize_bicubic(&src, 3, (90, 70), (33, 120), Resample::Torch, false);
        for c in 0..3 {
            let plane: Vec<u8> = src.iter().skip(c).step_by(3).copied().collect();
            let one = resize_bicubic(&plane, 1, (90, 70), (33, 120), Resample::Torch, true);
            let got: Vec<u8> = rgb.iter().skip(c).step_by(3).copied().collect();
            assert_eq!(got, one, "channel {c}");
        }
    }

    #[test]
    fn bands_in_any_order_equal_the_whole_image() {
        // Both pass orders; one scratch shared by two resizers and bands out of order, so the
        // sliding window must notice rows it cannot reuse.
        let src = noise(97 * 61 * 4, 11);
        let a = RowResizer::new(&src, 4, true, (97, 61), (40, 150), P13);
        let b = RowResizer::new(&src, 4, true, (97, 61), (120, 20), P13);
        let whole = [a.materialize(false), b.materialize(false)];
        let mut scratch = Scratch::default();
        for (y0, n) in [(0, 7), (7, 7), (3, 20), (100, 50), (14, 1), (0, 20), (19, 1), (60, 41)] {
            for (k, r) in [&a, &b].into_iter().enumerate() {
                if y0 + n <= r.out_height {
                    let rb = r.row_bytes();
                    let got = r.rows_ref(y0, n, &mut scratch).to_vec();
                    assert_eq!(got, whole[k][y0 * rb..(y0 + n) * rb], "resizer {k} rows {y0}+{n}");
                }
            }
        }
    }

    #[test]
    fn parallel_equals_serial() {
        let src: Vec<u8> = (0..123 * 77 * 4).map(|v| (v * 7919 % 251) as u8).collect();
        for (w, h) in [(60, 200), (300, 40), (123, 30)] {
            let a = resize_bicubic(&src, 4, (123, 77), (w, h), P13, false);
            let b = resize_bicubic(&src, 4, (123, 77), (w, h), P13, true);
            assert_eq!(a, b);
        }
    }
}
