//! torch's float32 antialiased bicubic (`_upsample_bicubic2d_aa` on float tensors, CPU), which
//! transformers runs where it resizes in float to keep the bicubic overshoot (NemotronH Omni).
//!
//! Reproduced from torch 2.15's x86-64 build (its AVX2 kernels, what this CPU dispatches to),
//! measured bit for bit against it: the taps in f32 with torch's mixed f32/f64 expressions and
//! Keys' cubic compiled with fused multiply-adds; each output a sum over its taps whose loop
//! the compiler unrolled by four without contraction, the remaining terms fused. Horizontal
//! pass first; an axis whose size is unchanged is skipped.

/// One axis: output `i` reads `count[i]` inputs from `lo[i]` with weights `w[i·ksize..]`.
#[derive(Debug, Clone)]
pub struct FloatTaps {
    ksize: usize,
    lo: Vec<usize>,
    count: Vec<usize>,
    w: Vec<f32>,
}

/// Keys' cubic, a = −0.5 (`cubic_convolution1/2` of ATen's UpSample.h, in f32), as contracted:
/// `fma(fma(a+2, x, −(a+3))·x, x, 1)` and `fma(fma(fma(a, x, −5a), x, 8a), x, −4a)`.
#[inline]
fn cubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0).mul_add(x, -(A + 3.0)) * x).mul_add(x, 1.0)
    } else if x < 2.0 {
        A.mul_add(x, -(5.0 * A)).mul_add(x, 8.0 * A).mul_add(x, -(4.0 * A))
    } else {
        0.0
    }
}

impl FloatTaps {
    /// `_compute_index_ranges_weights<float>` with antialias: `scale = f32(n_in) / n_out`.
    pub fn new(n_in: usize, n_out: usize) -> FloatTaps {
        assert!(n_in > 0 && n_out > 0);
        let scale = n_in as f32 / n_out as f32;
        let support = if scale >= 1.0 { (2.0 * scale as f64) as f32 } else { 2.0 };
        let ksize = support.ceil() as usize * 2 + 1;
        let invscale = if scale >= 1.0 { (1.0 / scale as f64) as f32 } else { 1.0 };
        let (mut lo, mut count) = (Vec::with_capacity(n_out), Vec::with_capacity(n_out));
        let mut w = vec![0f32; n_out * ksize];
        for (i, wi) in w.chunks_exact_mut(ksize).enumerate() {
            let center = (scale as f64 * (i as f64 + 0.5)) as f32;
            let a = (((center - support) as f64 + 0.5) as i64).max(0);
            let b = (((center + support) as f64 + 0.5) as i64).min(n_in as i64);
            let n = (b - a).clamp(0, ksize as i64) as usize;
            let mut total = 0f32;
            for (j, wj) in wi[..n].iter_mut().enumerate() {
                *wj = cubic(((((j as i64 + a) as f32 - center) as f64 + 0.5) * invscale as f64) as f32);
                total += *wj;
            }
            if total != 0.0 {
                for wj in &mut wi[..n] {
                    *wj /= total;
                }
            }
            lo.push(a as usize);
            count.push(n);
        }
        FloatTaps { ksize, lo, count, w }
    }

    #[inline]
    fn taps(&self, i: usize) -> (usize, &[f32]) {
        (self.lo[i], &self.w[i * self.ksize..i * self.ksize + self.count[i]])
    }
}

/// One pass along the slow axis of a `w`-wide plane: output row `y` is `Σ_j row(lo + j)·k[j]`
/// as torch evaluates `output = t·w₀; output += t·w` (the first `(n − 1) / 4 · 4` terms added
/// unfused, the rest fused; see the module doc), a whole row at a time so it vectorises.
#[inline(always)]
fn pass_body(src: &[f32], w: usize, t: &FloatTaps, out: &mut [f32]) {
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let (lo, k) = t.taps(y);
        let unrolled = (k.len() - 1) / 4 * 4;
        for (d, &v) in row.iter_mut().zip(&src[lo * w..][..w]) {
            *d = v * k[0];
        }
        for (j, &wj) in k.iter().enumerate().skip(1) {
            let r = &src[(lo + j) * w..][..w];
            if j <= unrolled {
                for (d, &v) in row.iter_mut().zip(r) {
                    *d += v * wj;
                }
            } else {
                for (d, &v) in row.iter_mut().zip(r) {
                    *d = v.mul_add(wj, *d);
                }
            }
        }
    }
}

/// `pass_body` compiled with FMA, so `mul_add` is one instruction and the rows vectorise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass_fma(src: &[f32], w: usize, t: &FloatTaps, out: &mut [f32]) {
    pass_body(src, w, t, out)
}

/// Resizes each `w`-wide plane of `src` (`h_in` rows each) to `h_out` rows.
fn pass(src: &[f32], planes: usize, w: usize, h_in: usize, h_out: usize) -> Vec<f32> {
    let t = FloatTaps::new(h_in, h_out);
    let mut out = vec![0f32; planes * h_out * w];
    for (s, o) in src.chunks_exact(h_in * w).zip(out.chunks_exact_mut(h_out * w)) {
        #[cfg(target_arch = "x86_64")]
        if fma_cpu() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { pass_fma(s, w, &t, o) };
            continue;
        }
        pass_body(s, w, &t, o);
    }
    out
}

/// Rows filtered together by the horizontal pass: transposed into a block, each output column
/// is `LANES` independent sums computed in vector registers.
const LANES: usize = 8;

/// The horizontal pass over `LANES` rows held transposed in `block` (`w_in` columns of
/// `LANES`), into `out` rows (`out[i]` is row `i`'s `w_out` values).
#[inline(always)]
fn horizontal_body(block: &[[f32; LANES]], t: &FloatTaps, out: &mut [&mut [f32]]) {
    for x in 0..t.lo.len() {
        let (lo, k) = t.taps(x);
        let unrolled = (k.len() - 1) / 4 * 4;
        let mut acc = block[lo].map(|v| v * k[0]);
        for (j, &wj) in k.iter().enumerate().skip(1) {
            let v = &block[lo + j];
            if j <= unrolled {
                for (a, &v) in acc.iter_mut().zip(v) {
                    *a += v * wj;
                }
            } else {
                for (a, &v) in acc.iter_mut().zip(v) {
                    *a = v.mul_add(wj, *a);
                }
            }
        }
        for (row, &a) in out.iter_mut().zip(&acc) {
            row[x] = a;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn horizontal_fma(block: &[[f32; LANES]], t: &FloatTaps, out: &mut [&mut [f32]]) {
    horizontal_body(block, t, out)
}

fn fma_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// An interleaved uint8 image (`ch` ≥ 3 bytes a pixel, the first three RGB) as f32 resized to
/// `w_out`×`h_out`: three planes, one after the other (`f32(v)` where an axis keeps its size).
pub fn resize_rgb(rgb: &[u8], ch: usize, (w_in, h_in): (usize, usize), (w_out, h_out): (usize, usize)) -> Vec<f32> {
    assert_eq!(rgb.len(), ch * w_in * h_in);
    let fma = fma_cpu();
    let mut planes = vec![0f32; 3 * h_in * w_out];
    if w_out == w_in {
        for (i, px) in rgb.chunks_exact(ch).enumerate() {
            for c in 0..3 {
                planes[c * w_in * h_in + i] = px[c] as f32;
            }
        }
    } else {
        let t = FloatTaps::new(w_in, w_out);
        let mut block = vec![[0f32; LANES]; w_in];
        let plane_len = h_in * w_out;
        // Blocks of rows of one channel: row r of channel c is plane row c·h_in + r.
        for c in 0..3 {
            for y0 in (0..h_in).step_by(LANES) {
                let n = LANES.min(h_in - y0);
                for i in 0..n {
                    let src = &rgb[(y0 + i) * w_in * ch..][..w_in * ch];
                    for (b, px) in block.iter_mut().zip(src.chunks_exact(ch)) {
                        b[i] = px[c] as f32;
                    }
                }
                let dst = &mut planes[c * plane_len + y0 * w_out..][..n * w_out];
                let mut rows: Vec<&mut [f32]> = dst.chunks_exact_mut(w_out).collect();
                #[cfg(target_arch = "x86_64")]
                if fma {
                    // SAFETY: the CPU has AVX2 and FMA.
                    unsafe { horizontal_fma(&block, &t, &mut rows) };
                    continue;
                }
                horizontal_body(&block, &t, &mut rows);
            }
        }
    }
    if h_out == h_in {
        return planes;
    }
    pass(&planes, 3, w_out, h_in, h_out)
}
