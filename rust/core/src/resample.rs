//! Pillow-exact BICUBIC resampling of uint8 images (pixels.md §2).
//!
//! Pillow quantises f64 filter taps to 22-bit fixed point, accumulates in i32 and clamps each
//! pass to uint8. SIMD resize crates use 16-bit taps and differ, hence this hand-written port.
//! Inner loops run over contiguous runs of a row so LLVM vectorises them.

use std::borrow::Cow;

use crate::layout::ResizeCompat;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const ROUND: i32 = 1 << (PRECISION_BITS - 1);

/// Cubic convolution, a = -0.5, in Pillow's operation order.
#[inline]
fn bicubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((1.5 * x - 2.5) * x) * x + 1.0
    } else if x < 2.0 {
        ((((x - 5.0) * x + 8.0) * x) - 4.0) * -0.5
    } else {
        0.0
    }
}

/// Quantised taps for one axis: output `i` reads `count[i]` inputs from `lo[i]`, with taps
/// `taps[i * ksize ..][.. count[i]]`.
#[derive(Debug, Clone)]
pub struct Coeffs {
    pub ksize: usize,
    pub lo: Vec<usize>,
    pub count: Vec<usize>,
    pub taps: Vec<i32>,
}

impl Coeffs {
    pub fn new(n_in: usize, n_out: usize) -> Coeffs {
        assert!(n_in > 0 && n_out > 0);
        let scale = n_in as f64 / n_out as f64;
        let fs = scale.max(1.0);
        let support = 2.0 * fs;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / fs;
        let mut lo = Vec::with_capacity(n_out);
        let mut count = Vec::with_capacity(n_out);
        let mut taps = vec![0i32; n_out * ksize];
        let mut w = vec![0f64; ksize];
        for i in 0..n_out {
            let center = (i as f64 + 0.5) * scale;
            let a = ((center - support + 0.5) as i64).max(0) as usize;
            let b = ((center + support + 0.5) as i64).min(n_in as i64) as usize;
            let n = b - a;
            let mut sum = 0.0;
            for (j, wj) in w[..n].iter_mut().enumerate() {
                *wj = bicubic((((a + j) as f64 - center) + 0.5) * inv);
                sum += *wj;
            }
            for (j, wj) in w[..n].iter().enumerate() {
                let v = if sum != 0.0 { wj / sum } else { *wj };
                let scaled = v * (1u32 << PRECISION_BITS) as f64;
                taps[i * ksize + j] = if v < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
            }
            lo.push(a);
            count.push(n);
        }
        Coeffs { ksize, lo, count, taps }
    }

    #[inline]
    fn tap(&self, i: usize) -> (usize, &[i32]) {
        (self.lo[i], &self.taps[i * self.ksize..i * self.ksize + self.count[i]])
    }
}

#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
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
        let mut acc = [ROUND; RC];
        for (col, &k) in tbuf[lo * RC..].chunks_exact(RC).zip(taps) {
            let col: &[u8; RC] = col.try_into().expect("chunk of RC");
            for i in 0..RC {
                acc[i] += col[i] as i32 * k;
            }
        }
        for i in 0..RC {
            o[i] = clip8(acc[i]);
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

/// One output row of the vertical pass: reads rows of `stride` bytes from `src`.
#[inline(always)]
fn vertical_row_impl(src: &[u8], stride: usize, y: usize, dst: &mut [u8], co: &Coeffs, acc: &mut Vec<i32>) {
    let (lo, taps) = co.tap(y);
    acc.clear();
    acc.resize(stride, ROUND);
    for (j, &k) in taps.iter().enumerate() {
        let row = &src[(lo + j) * stride..(lo + j + 1) * stride];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as i32 * k;
        }
    }
    for (d, &a) in dst.iter_mut().zip(acc.iter()) {
        *d = clip8(a);
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
    fn vertical_row(src: &[u8], stride: usize, y: usize, dst: &mut [u8], co: &Coeffs, acc: &mut Vec<i32>) => vertical_row_impl
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

/// Pillow 13's pass-order rule (signed arithmetic, pixels.md §2.4).
pub fn vertical_first(compat: ResizeCompat, w_in: usize, h_in: usize, w_out: usize, h_out: usize) -> bool {
    let dh = h_in as i64 - h_out as i64;
    let dw = w_in as i64 - w_out as i64;
    compat == ResizeCompat::Pillow13 && dh > 0 && dh > 2 * dw
}

/// One separable pass over a whole image, as a row producer.
#[derive(Debug, Clone)]
enum Pass {
    Copy,
    Horizontal(Coeffs),
    Vertical(Coeffs),
}

/// A resize planned as an optional full first pass plus a second pass that produces any output
/// row on demand, so callers can consume the result band by band without materialising it.
pub struct RowResizer<'a> {
    /// Channels of `base` and of the output (a horizontal pass may drop an unused 4th).
    in_channels: usize,
    channels: usize,
    /// Image the row producer reads: the source, or the first pass's output.
    base: Cow<'a, [u8]>,
    base_width: usize,
    pass: Pass,
    pub out_width: usize,
    pub out_height: usize,
}

impl<'a> RowResizer<'a> {
    /// `src` is a `w_in`×`h_in` image with `channels` interleaved u8 channels (1..=4). With
    /// `drop_fourth`, the 4th channel is unused (RGBX) and a horizontal pass drops it, so the
    /// output may have 3 channels: see `channels()`. The first pass (if two are needed) runs
    /// here, split over rows with rayon when `parallel`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        src: &'a [u8],
        channels: usize,
        drop_fourth: bool,
        (w_in, h_in): (usize, usize),
        (w_out, h_out): (usize, usize),
        compat: ResizeCompat,
        parallel: bool,
    ) -> Self {
        assert!((1..=4).contains(&channels) && src.len() == w_in * h_in * channels);
        let narrow = if drop_fourth && channels == 4 { 3 } else { channels };
        let plan = |base: Cow<'a, [u8]>, in_channels, base_width, pass, out: (usize, usize)| {
            let channels = if matches!(pass, Pass::Horizontal(_)) { narrow } else { in_channels };
            RowResizer { in_channels, channels, base, base_width, pass, out_width: out.0, out_height: out.1 }
        };
        let src = Cow::Borrowed(src);
        match (w_in != w_out, h_in != h_out) {
            (false, false) => plan(src, channels, w_in, Pass::Copy, (w_out, h_out)),
            (true, false) => plan(src, channels, w_in, Pass::Horizontal(Coeffs::new(w_in, w_out)), (w_out, h_out)),
            (false, true) => plan(src, channels, w_in, Pass::Vertical(Coeffs::new(h_in, h_out)), (w_out, h_out)),
            (true, true) if vertical_first(compat, w_in, h_in, w_out, h_out) => {
                let first = plan(src, channels, w_in, Pass::Vertical(Coeffs::new(h_in, h_out)), (w_in, h_out));
                let inter = first.materialize(parallel);
                plan(inter.into(), channels, w_in, Pass::Horizontal(Coeffs::new(w_in, w_out)), (w_out, h_out))
            }
            (true, true) => {
                let first = plan(src, channels, w_in, Pass::Horizontal(Coeffs::new(w_in, w_out)), (w_out, h_in));
                let inter = first.materialize(parallel);
                plan(inter.into(), first.channels, w_out, Pass::Vertical(Coeffs::new(h_in, h_out)), (w_out, h_out))
            }
        }
    }

    /// Channels of the output rows.
    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn row_bytes(&self) -> usize {
        self.out_width * self.channels
    }

    /// Writes output rows `y0..y0 + dst.len() / row_bytes` into `dst`.
    pub fn rows(&self, y0: usize, dst: &mut [u8]) {
        if dst.is_empty() {
            return;
        }
        let rb = self.row_bytes();
        let src_stride = self.base_width * self.in_channels;
        match &self.pass {
            Pass::Copy => dst.copy_from_slice(&self.base[y0 * rb..y0 * rb + dst.len()]),
            Pass::Horizontal(co) => {
                let mut scratch = Default::default();
                horizontal_rows(
                    self.in_channels,
                    self.channels,
                    &self.base[y0 * src_stride..],
                    src_stride,
                    dst,
                    rb,
                    co,
                    &mut scratch,
                );
            }
            Pass::Vertical(co) => {
                let mut acc = Vec::new();
                for (i, out) in dst.chunks_exact_mut(rb).enumerate() {
                    vertical_row(&self.base, src_stride, y0 + i, out, co, &mut acc);
                }
            }
        }
    }

    /// The whole resized image.
    pub fn materialize(&self, parallel: bool) -> Vec<u8> {
        let rb = self.row_bytes();
        let mut out = crate::mem::zeroed(rb * self.out_height);
        if parallel {
            use rayon::prelude::*;
            // Bands of rows amortise the per-task cost and keep the accumulator warm.
            let band = 32;
            out.par_chunks_mut(rb * band).enumerate().for_each(|(i, chunk)| self.rows(i * band, chunk));
        } else {
            self.rows(0, &mut out);
        }
        out
    }
}

/// Resizes a whole `w_in`×`h_in`×`channels` u8 image like Pillow's `Image.resize(BICUBIC)`.
pub fn resize_bicubic(
    src: &[u8],
    channels: usize,
    size_in: (usize, usize),
    size_out: (usize, usize),
    compat: ResizeCompat,
    parallel: bool,
) -> Vec<u8> {
    RowResizer::new(src, channels, false, size_in, size_out, compat, parallel).materialize(parallel)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(vertical_first(ResizeCompat::Pillow13, 720, 477, 728, 476));
        assert!(!vertical_first(ResizeCompat::Pillow12, 720, 477, 728, 476));
        assert!(!vertical_first(ResizeCompat::Pillow13, 1024, 1024, 1036, 1036));
    }

    #[test]
    fn unchanged_size_is_a_copy_and_flat_stays_flat() {
        let src: Vec<u8> = (0..6 * 5 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_bicubic(&src, 3, (6, 5), (6, 5), ResizeCompat::Pillow13, false), src);
        let flat = vec![77u8; 40 * 30 * 3];
        let out = resize_bicubic(&flat, 3, (40, 30), (13, 57), ResizeCompat::Pillow13, true);
        assert!(out.iter().all(|&v| v == 77));
    }

    #[test]
    fn parallel_equals_serial() {
        let src: Vec<u8> = (0..123 * 77 * 4).map(|v| (v * 7919 % 251) as u8).collect();
        for (w, h) in [(60, 200), (300, 40), (123, 30)] {
            let a = resize_bicubic(&src, 4, (123, 77), (w, h), ResizeCompat::Pillow13, false);
            let b = resize_bicubic(&src, 4, (123, 77), (w, h), ResizeCompat::Pillow13, true);
            assert_eq!(a, b);
        }
    }
}
