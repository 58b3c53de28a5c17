//! AVX2 kernels for the two resampling passes, exact like the portable ones.
//!
//! Both passes reduce to one primitive, `dot32`: 32 byte lanes, each the sum over taps of a u8
//! times a tap. `vpmaddwd` multiplies 16-bit pairs: torch's int16 taps go in as they are, and
//! Pillow's 22-bit taps are split into a high and a low 11-bit half (`Coeffs::pairs`) whose two
//! sums are recombined as `(hi << 11) + lo`: the same integer either reference accumulates,
//! without 32-bit multiplies. The horizontal pass transposes blocks of 8 rows so that each tap
//! reads 32 contiguous bytes (8 rows × 4 channels), exactly like the vertical pass reads a row.
//! On a CPU with AVX-VNNI, `vpdpwssd` multiplies and accumulates in one instruction where AVX2
//! needs `vpmaddwd` then `vpaddd`: the same wrapping i32 sums, a quarter fewer instructions in
//! the loop that dominates both passes.

use std::arch::x86_64::*;

use super::Coeffs;

/// Σ_j src_j · k_j for 32 byte lanes, `src_j = base + j · step`, clipped to u8 like `clip8`.
/// `SPLIT`: the taps are split halves (`Coeffs::split`); `VNNI`: multiply-accumulate with
/// AVX-VNNI.
#[inline(always)]
unsafe fn dot32<const SPLIT: bool, const VNNI: bool>(
    base: *const u8,
    step: usize,
    count: usize,
    pairs: *const [i32; 2],
    co: &Coeffs,
) -> __m256i {
    let zero = _mm256_setzero_si256();
    let mut hi = [zero; 4];
    let mut lo = [_mm256_set1_epi32(co.round()); 4];
    let mut j = 0;
    while j < count {
        let a = _mm256_loadu_si256(base.add(j * step) as *const __m256i);
        // An odd last tap pairs with zeros (its partner's tap is 0 as well).
        let b = if j + 1 < count { _mm256_loadu_si256(base.add((j + 1) * step) as *const __m256i) } else { zero };
        let [kh, kl] = *pairs.add(j / 2);
        let (kh, kl) = (_mm256_set1_epi32(kh), _mm256_set1_epi32(kl));
        // 16-bit (a, b) pairs; the lane order this creates is undone by the packs below.
        let (ab_lo, ab_hi) = (_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b));
        let p = [
            _mm256_unpacklo_epi8(ab_lo, zero),
            _mm256_unpackhi_epi8(ab_lo, zero),
            _mm256_unpacklo_epi8(ab_hi, zero),
            _mm256_unpackhi_epi8(ab_hi, zero),
        ];
        let k = if SPLIT { kl } else { kh };
        for q in 0..4 {
            if VNNI {
                if SPLIT {
                    hi[q] = _mm256_dpwssd_avx_epi32(hi[q], p[q], kh);
                }
                lo[q] = _mm256_dpwssd_avx_epi32(lo[q], p[q], k);
            } else {
                if SPLIT {
                    hi[q] = _mm256_add_epi32(hi[q], _mm256_madd_epi16(p[q], kh));
                }
                lo[q] = _mm256_add_epi32(lo[q], _mm256_madd_epi16(p[q], k));
            }
        }
        j += 2;
    }
    let shift = _mm_cvtsi32_si128(co.precision as i32);
    let r = |q: usize| {
        let sum = if SPLIT { _mm256_add_epi32(_mm256_slli_epi32::<11>(hi[q]), lo[q]) } else { lo[q] };
        _mm256_sra_epi32(sum, shift)
    };
    // Saturating packs clamp to 0..=255 (the shifted sums are far inside i16).
    _mm256_packus_epi16(_mm256_packs_epi32(r(0), r(1)), _mm256_packs_epi32(r(2), r(3)))
}

/// One output row of the vertical pass over rows of `stride` bytes (`stride >= 32`) held from
/// row `origin` on.
pub unsafe fn vertical_row(src: &[u8], stride: usize, origin: usize, y: usize, dst: &mut [u8], co: &Coeffs) {
    vertical_row_as(vnni(), src, stride, origin, y, dst, co)
}

/// Whether this CPU has AVX-VNNI (checked once, then cached by std).
#[inline]
pub fn vnni() -> bool {
    std::is_x86_feature_detected!("avxvnni")
}

/// `vertical_row` with AVX-VNNI or without it (`vnni` only where the CPU has it).
pub unsafe fn vertical_row_as(
    vnni: bool,
    src: &[u8],
    stride: usize,
    origin: usize,
    y: usize,
    dst: &mut [u8],
    co: &Coeffs,
) {
    #[target_feature(enable = "avx2")]
    unsafe fn plain(src: &[u8], stride: usize, origin: usize, y: usize, dst: &mut [u8], co: &Coeffs) {
        match co.split {
            true => vertical_row_impl::<true, false>(src, stride, origin, y, dst, co),
            false => vertical_row_impl::<false, false>(src, stride, origin, y, dst, co),
        }
    }
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn fused(src: &[u8], stride: usize, origin: usize, y: usize, dst: &mut [u8], co: &Coeffs) {
        match co.split {
            true => vertical_row_impl::<true, true>(src, stride, origin, y, dst, co),
            false => vertical_row_impl::<false, true>(src, stride, origin, y, dst, co),
        }
    }
    if vnni {
        fused(src, stride, origin, y, dst, co)
    } else {
        plain(src, stride, origin, y, dst, co)
    }
}

#[inline(always)]
unsafe fn vertical_row_impl<const SPLIT: bool, const VNNI: bool>(
    src: &[u8],
    stride: usize,
    origin: usize,
    y: usize,
    dst: &mut [u8],
    co: &Coeffs,
) {
    let n = dst.len();
    let (lo, count) = (co.lo[y] - origin, co.count[y]);
    assert!(n >= 32 && n <= stride && (lo + count) * stride <= src.len());
    let pairs = co.pairs_of(y);
    let base = src.as_ptr().add(lo * stride);
    let mut x = 0;
    loop {
        _mm256_storeu_si256(
            dst.as_mut_ptr().add(x) as *mut __m256i,
            dot32::<SPLIT, VNNI>(base.add(x), stride, count, pairs, co),
        );
        if x + 32 == n {
            break;
        }
        // The last strip overlaps the previous one and rewrites the same bytes.
        x = (x + 32).min(n - 32);
    }
}

/// Transposes 8 vectors of 8 u32: `out[i][r] = v[r][i]`.
#[inline(always)]
unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t = |a, b| (_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    let (t0, t1) = t(v[0], v[1]);
    let (t2, t3) = t(v[2], v[3]);
    let (t4, t5) = t(v[4], v[5]);
    let (t6, t7) = t(v[6], v[7]);
    let u = |a, b| (_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
    let (u0, u1) = u(t0, t2);
    let (u2, u3) = u(t1, t3);
    let (u4, u5) = u(t4, t6);
    let (u6, u7) = u(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// 8 pixels of `CIN` (3 or 4) bytes from `p` as RGBX u32 lanes; reads 32 bytes.
#[inline(always)]
unsafe fn load8<const CIN: usize>(p: *const u8) -> __m256i {
    let v = _mm256_loadu_si256(p as *const __m256i);
    if CIN == 4 {
        return v;
    }
    // Bytes 0-11 to the low lane, 12-23 to the high one, then 3 bytes per 32-bit lane.
    let spread = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0));
    _mm256_shuffle_epi8(
        spread,
        _mm256_setr_epi8(
            0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
        ),
    )
}

/// Writes 8 RGBX pixels as `C` (3 or 4) bytes each: exactly `8 · C` bytes.
#[inline(always)]
unsafe fn store8<const C: usize>(p: *mut u8, v: __m256i) {
    if C == 4 {
        return _mm256_storeu_si256(p as *mut __m256i, v);
    }
    let packed = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1,
            -1,
        ),
    );
    let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7));
    _mm_storeu_si128(p as *mut __m128i, _mm256_castsi256_si128(packed));
    _mm_storel_epi64(p.add(16) as *mut __m128i, _mm256_extracti128_si256::<1>(packed));
}

/// Output columns filtered per step of the horizontal pass: the step's transposed input and
/// output (a few KB each) stay in L1.
const STEP: usize = 128;

/// Horizontal pass over up to 8 rows (`CIN` = 3 or 4 bytes in, `C` = 3 or 4 out, `C <= CIN`),
/// `STEP` output columns at a time: transpose the input columns they read into `tb` (32 bytes
/// per column), filter each output column into `ob`, transpose back.
#[allow(clippy::too_many_arguments)]
pub unsafe fn horizontal_block<const CIN: usize, const C: usize>(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    dst: &mut [u8],
    dst_stride: usize,
    co: &Coeffs,
    scratch: &mut (Vec<u8>, Vec<u8>),
) {
    horizontal_block_as::<CIN, C>(vnni(), src, src_stride, rows, dst, dst_stride, co, scratch)
}

/// `horizontal_block` with AVX-VNNI or without it (`vnni` only where the CPU has it).
#[allow(clippy::too_many_arguments)]
pub unsafe fn horizontal_block_as<const CIN: usize, const C: usize>(
    vnni: bool,
    src: &[u8],
    src_stride: usize,
    rows: usize,
    dst: &mut [u8],
    dst_stride: usize,
    co: &Coeffs,
    scratch: &mut (Vec<u8>, Vec<u8>),
) {
    type Args<'a> = (&'a [u8], usize, usize, &'a mut [u8], usize, &'a Coeffs, &'a mut (Vec<u8>, Vec<u8>));
    #[target_feature(enable = "avx2")]
    unsafe fn plain<const CIN: usize, const C: usize>((s, ss, r, d, ds, co, sc): Args) {
        match co.split {
            true => horizontal_block_impl::<CIN, C, true, false>(s, ss, r, d, ds, co, sc),
            false => horizontal_block_impl::<CIN, C, false, false>(s, ss, r, d, ds, co, sc),
        }
    }
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn fused<const CIN: usize, const C: usize>((s, ss, r, d, ds, co, sc): Args) {
        match co.split {
            true => horizontal_block_impl::<CIN, C, true, true>(s, ss, r, d, ds, co, sc),
            false => horizontal_block_impl::<CIN, C, false, true>(s, ss, r, d, ds, co, sc),
        }
    }
    let args = (src, src_stride, rows, dst, dst_stride, co, scratch);
    if vnni {
        fused::<CIN, C>(args)
    } else {
        plain::<CIN, C>(args)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn horizontal_block_impl<const CIN: usize, const C: usize, const SPLIT: bool, const VNNI: bool>(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    dst: &mut [u8],
    dst_stride: usize,
    co: &Coeffs,
    (tb, ob): &mut (Vec<u8>, Vec<u8>),
) {
    let w_in = src_stride / CIN;
    let w_out = co.lo.len();
    assert!((1..=8).contains(&rows) && src.len() >= (rows - 1) * src_stride + w_in * CIN);
    assert!(dst.len() >= (rows - 1) * dst_stride + w_out * C);
    // Rows past `rows` repeat the last one: computed, never stored.
    let row = |r: usize| src.as_ptr().add(r.min(rows - 1) * src_stride);
    let d = dst.as_mut_ptr();
    for x0 in (0..w_out).step_by(STEP) {
        let x1 = (x0 + STEP).min(w_out);
        // Input columns the step reads (`lo` and `lo + count` never decrease).
        let (a, b) = (co.lo[x0], co.lo[x1 - 1] + co.count[x1 - 1]);
        tb.resize((b - a + 8) * 32, 0);
        ob.resize(STEP * 32, 0);
        let mut x = a;
        // Whole groups of 8 (possibly past `b`, never past the row).
        while x < b && x + 8 <= w_in && x * CIN + 32 <= w_in * CIN {
            let cols = transpose8(std::array::from_fn(|r| load8::<CIN>(row(r).add(x * CIN))));
            for (i, c) in cols.into_iter().enumerate() {
                _mm256_storeu_si256(tb.as_mut_ptr().add((x - a + i) * 32) as *mut __m256i, c);
            }
            x += 8;
        }
        for x in x..b {
            for r in 0..8 {
                let px = row(r).add(x * CIN);
                for c in 0..4 {
                    tb[(x - a) * 32 + r * 4 + c] = if c < CIN { *px.add(c) } else { 0 };
                }
            }
        }
        for xo in x0..x1 {
            let v = dot32::<SPLIT, VNNI>(tb.as_ptr().add((co.lo[xo] - a) * 32), 32, co.count[xo], co.pairs_of(xo), co);
            _mm256_storeu_si256(ob.as_mut_ptr().add((xo - x0) * 32) as *mut __m256i, v);
        }
        let mut x = x0;
        while x + 8 <= x1 {
            let at = |i: usize| ob.as_ptr().add((x - x0 + i) * 32) as *const __m256i;
            let rows_px = transpose8(std::array::from_fn(|i| _mm256_loadu_si256(at(i))));
            for (r, v) in rows_px.into_iter().enumerate().take(rows) {
                store8::<C>(d.add(r * dst_stride + x * C), v);
            }
            x += 8;
        }
        for x in x..x1 {
            for r in 0..rows {
                for c in 0..C {
                    *d.add(r * dst_stride + x * C + c) = ob[(x - x0) * 32 + r * 4 + c];
                }
            }
        }
    }
}
