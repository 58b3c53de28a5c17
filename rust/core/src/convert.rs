//! RGB conversion of decoded uint8 arrays (pixels.md §1.2). Mode conversions that need
//! Pillow's own tables (P, 1, CMYK, I;16, F) happen in Pillow before the data gets here.

use std::borrow::Cow;

use crate::layout::AlphaPolicy;

/// Pillow's integer `alpha_composite` of (s, a) over opaque white; equals `floor(v/255 + 1/2)`.
#[inline(always)]
pub fn composite_white(s: u8, a: u8) -> u8 {
    let v = s as u32 * a as u32 + 255 * (255 - a as u32);
    let t = 128 * (v + 128);
    ((((t >> 8) + t) >> 8) >> 7) as u8
}

/// Interleaved `channels` (1 = L, 2 = LA, 3 = RGB, 4 = RGBA) → RGB, returned with its
/// channel count. RGB, and 4-channel data whose fourth byte is unused (RGBX, or RGBA under
/// `Drop`), are borrowed as they are: the pipeline ignores a fourth channel.
pub fn to_rgb(src: &[u8], channels: usize, has_alpha: bool, alpha: AlphaPolicy) -> (Cow<'_, [u8]>, usize) {
    let px = src.len() / channels;
    if channels == 3 || (channels == 4 && (!has_alpha || alpha == AlphaPolicy::Drop)) {
        return (Cow::Borrowed(src), channels);
    }
    let mut out = crate::mem::zeroed(px * 3);
    let comp = alpha == AlphaPolicy::CompositeWhite;
    let dst = out.chunks_exact_mut(3);
    match channels {
        1 => dst.zip(src).for_each(|(d, &l)| d.fill(l)),
        2 => dst
            .zip(src.chunks_exact(2))
            .for_each(|(d, s)| d.fill(if comp { composite_white(s[0], s[1]) } else { s[0] })),
        4 => dst.zip(src.chunks_exact(4)).for_each(|(d, s)| {
            for c in 0..3 {
                d[c] = if comp { composite_white(s[c], s[3]) } else { s[c] };
            }
        }),
        _ => unreachable!("channels are validated by the caller"),
    }
    (Cow::Owned(out), 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_composite_equals_rounded_blend() {
        // pixels.md §1.2: the integer form equals floor(v/255 + 1/2) and the f64 blend.
        for s in 0..=255u32 {
            for a in 0..=255u32 {
                let v = s * a + 255 * (255 - a);
                let want = (v as f64 / 255.0 + 0.5).floor() as u8;
                assert_eq!(composite_white(s as u8, a as u8), want, "s={s} a={a}");
                let blend = (a as f64 / 255.0 * s as f64 + (1.0 - a as f64 / 255.0) * 255.0).round_ties_even() as u8;
                assert_eq!(want, blend);
            }
        }
        assert_eq!(composite_white(0, 0), 255);
    }

    #[test]
    fn modes() {
        let rgb = |src: &[u8], ch, a, p| {
            let (v, c) = to_rgb(src, ch, a, p);
            (v.into_owned(), c)
        };
        assert_eq!(rgb(&[9, 200], 1, false, AlphaPolicy::Drop), (vec![9, 9, 9, 200, 200, 200], 3));
        assert_eq!(rgb(&[10, 0], 2, true, AlphaPolicy::CompositeWhite), (vec![255, 255, 255], 3));
        assert_eq!(rgb(&[10, 0], 2, true, AlphaPolicy::Drop), (vec![10, 10, 10], 3));
        assert_eq!(rgb(&[1, 2, 3, 0], 4, true, AlphaPolicy::CompositeWhite), (vec![255, 255, 255], 3));
        assert_eq!(rgb(&[1, 2, 3, 0], 4, false, AlphaPolicy::CompositeWhite), (vec![1, 2, 3, 0], 4));
        assert_eq!(rgb(&[1, 2, 3, 0], 4, true, AlphaPolicy::Drop), (vec![1, 2, 3, 0], 4));
    }
}
