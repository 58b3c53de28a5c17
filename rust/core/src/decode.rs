//! PNG to the raster rawmm's decode rules make of Pillow 13's image, without Pillow: the `png`
//! crate (fdeflate) inflates, unfilters and de-interlaces; the conversions below repeat Pillow's
//! unpackers (`Unpack.c`) and `Image.convert` (`Convert.c`) for each colour type and depth.
//!
//! The caller (Python) has opened the file with Pillow, so it passes Pillow's mode and
//! `info["transparency"]`, which also reflect chunks after the image data. Anything this decoder
//! is not sure to decode exactly as Pillow does (APNG, a mode that does not match, any decoding
//! error, checksums included) returns `None`, and the caller decodes with Pillow instead, which
//! then gives the authoritative pixels or error.

use std::borrow::Cow;
use std::io::Cursor;

use png::{BitDepth, ColorType, DecodeOptions, Decoder, Limits, Transformations};

/// Pillow's mode of a PNG (`PngImagePlugin._MODES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngMode {
    /// "1": 1-bit greyscale.
    Bilevel,
    /// "L": 2-, 4- and 8-bit greyscale (scaled to 8 bits).
    L,
    /// "I;16": 16-bit greyscale.
    I16,
    Rgb,
    /// "P": 1- to 8-bit palette indices.
    P,
    La,
    /// "RGBA": 8- and 16-bit RGBA, and 16-bit greyscale with alpha.
    Rgba,
}

impl PngMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "1" => Self::Bilevel,
            "L" => Self::L,
            "I;16" => Self::I16,
            "RGB" => Self::Rgb,
            "P" => Self::P,
            "LA" => Self::La,
            "RGBA" => Self::Rgba,
            _ => return None,
        })
    }

    fn of(color: ColorType, depth: BitDepth) -> Self {
        use {BitDepth as D, ColorType as C};
        match (color, depth) {
            (C::Grayscale, D::One) => Self::Bilevel,
            (C::Grayscale, D::Sixteen) => Self::I16,
            (C::Grayscale, _) => Self::L,
            (C::Rgb, _) => Self::Rgb,
            (C::Indexed, _) => Self::P,
            (C::GrayscaleAlpha, D::Eight) => Self::La,
            (C::GrayscaleAlpha | C::Rgba, _) => Self::Rgba,
        }
    }
}

/// Pillow's `info["transparency"]` of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transparency {
    None,
    /// A colour key (greyscale keys repeat the value): `convert_transparent` compares each
    /// converted pixel with its low bytes.
    Key([u32; 3]),
    /// Palette alphas, entry by entry (`putpalettealphas`; at most 256).
    Alphas(Vec<u8>),
}

/// A decoded image: rows of `width` pixels of `channels` bytes (1 L, 2 LA, 3 RGB, 4 RGBA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

/// Decodes `data` as Pillow would decode this PNG, then converts as `pixels._pil_to_array`
/// does: with `composite` an image with alpha (an A band or a transparency entry) becomes LA or
/// RGBA; otherwise P, 1 and I;16 become RGB and the rest keep their bands. `None`: not for this
/// decoder (see the module doc).
pub fn png(data: &[u8], mode: PngMode, transparency: &Transparency, composite: bool) -> Option<Raster> {
    let mut options = DecodeOptions::default();
    // Strict where Pillow is lenient: a file that fails here goes to Pillow, never the reverse.
    options.set_ignore_adler32(false);
    options.set_skip_ancillary_crc_failures(false);
    options.set_ignore_text_chunk(true);
    options.set_ignore_iccp_chunk(true);
    let mut decoder = Decoder::new_with_options(Cursor::new(data), options);
    // The caller has checked the pixel and byte caps on the header.
    decoder.set_limits(Limits { bytes: usize::MAX });
    decoder.set_transformations(Transformations::IDENTITY);
    let mut reader = decoder.read_info().ok()?;
    let info = reader.info();
    if info.animation_control.is_some() || PngMode::of(info.color_type, info.bit_depth) != mode {
        return None;
    }
    let (color, depth) = (info.color_type, info.bit_depth);
    let (width, height) = (info.width as usize, info.height as usize);
    let palette = palette_table(info.palette.as_deref(), transparency, mode)?;
    let line = reader.output_line_size(info.width)?;
    let mut raw = crate::mem::zeroed(reader.output_buffer_size()?);
    reader.next_frame(&mut raw).ok()?;

    let has_alpha = matches!(mode, PngMode::La | PngMode::Rgba) || *transparency != Transparency::None;
    let to_alpha = has_alpha && composite;
    let out = |data: Vec<u8>, channels| Some(Raster { data, width, height, channels });
    let n = width * height;
    let bits = depth as u8;
    match mode {
        // Raw samples are already Pillow's bytes.
        PngMode::L | PngMode::La | PngMode::Rgb | PngMode::Rgba
            if bits == 8 && !(to_alpha && matches!(mode, PngMode::L | PngMode::Rgb)) =>
        {
            out(raw, color.samples())
        }
        PngMode::Rgba => out(high_bytes(&raw, color == ColorType::GrayscaleAlpha), 4),
        PngMode::P => {
            let indices = unpack(&raw, line, width, height, bits);
            out(lookup(&indices, &palette, if to_alpha { 4 } else { 3 }), if to_alpha { 4 } else { 3 })
        }
        _ => {
            // Greyscale and RGB: Pillow's 8-bit pixels, then a colour key to alpha or RGB.
            let (pixels, channels): (Cow<[u8]>, usize) = match mode {
                PngMode::Rgb if bits == 16 => (high_bytes(&raw, false).into(), 3),
                PngMode::Rgb => (raw.into(), 3),
                PngMode::I16 => (raw.chunks_exact(2).map(|s| if s[0] == 0 { s[1] } else { 255 }).collect(), 1),
                _ => {
                    let scale = match bits {
                        1 => 255,
                        2 => 0x55,
                        4 => 0x11,
                        _ => 1,
                    };
                    let samples = unpack(&raw, line, width, height, bits);
                    if scale == 1 {
                        (samples, 1)
                    } else {
                        (samples.iter().map(|&v| v * scale).collect(), 1)
                    }
                }
            };
            if to_alpha {
                let Transparency::Key(key) = transparency else { return None };
                out(keyed(&pixels, channels, key.map(|k| k as u8)), 4)
            } else if channels == 1 && mode != PngMode::L {
                out(pixels.iter().flat_map(|&v| [v, v, v]).collect(), 3) // "1" and I;16 to RGB
            } else {
                debug_assert_eq!(pixels.len(), n * channels);
                out(pixels.into_owned(), channels)
            }
        }
    }
}

/// Pillow's 256-entry RGBA palette: PLTE's colours, zeros after them, alpha from the tRNS
/// alphas (255 after them). None when Pillow would refuse the palette.
fn palette_table(plte: Option<&[u8]>, transparency: &Transparency, mode: PngMode) -> Option<[[u8; 4]; 256]> {
    let mut table = [[0, 0, 0, 255]; 256];
    if mode != PngMode::P {
        return Some(table);
    }
    let plte = plte?;
    if plte.len() % 3 != 0 || plte.len() > 768 {
        return None;
    }
    for (entry, rgb) in table.iter_mut().zip(plte.chunks_exact(3)) {
        entry[..3].copy_from_slice(rgb);
    }
    match transparency {
        Transparency::Alphas(a) if a.len() <= 256 => table.iter_mut().zip(a).for_each(|(e, &a)| e[3] = a),
        Transparency::None => {}
        _ => return None,
    }
    Some(table)
}

/// One byte per pixel from rows of `line` bytes packed at `bits` per sample, MSB first.
fn unpack(raw: &[u8], line: usize, width: usize, height: usize, bits: u8) -> Cow<'_, [u8]> {
    if bits == 8 {
        return raw.into();
    }
    let (per_byte, mask) = (8 / bits as usize, (1u8 << bits) - 1);
    let mut out = Vec::with_capacity(width * height);
    for row in raw.chunks_exact(line).take(height) {
        for x in 0..width {
            let shift = 8 - bits as usize * (x % per_byte + 1);
            out.push((row[x / per_byte] >> shift) & mask);
        }
    }
    out.into()
}

/// The most significant byte of each big-endian 16-bit sample (Pillow's `;16B` unpackers); a
/// greyscale-alpha pair becomes RGBA, as Pillow's `LA;16B` does.
fn high_bytes(raw: &[u8], grey_alpha: bool) -> Vec<u8> {
    if grey_alpha {
        raw.chunks_exact(4).flat_map(|s| [s[0], s[0], s[0], s[2]]).collect()
    } else {
        raw.iter().step_by(2).copied().collect()
    }
}

fn lookup(indices: &[u8], table: &[[u8; 4]; 256], channels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(indices.len() * channels);
    for &i in indices {
        out.extend_from_slice(&table[i as usize][..channels]);
    }
    out
}

/// `convert_transparent` to RGBA: pixels equal to the key get alpha 0.
fn keyed(pixels: &[u8], channels: usize, key: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels.len() / channels * 4);
    for p in pixels.chunks_exact(channels) {
        let rgb = if channels == 1 { [p[0]; 3] } else { [p[0], p[1], p[2]] };
        out.extend_from_slice(&rgb);
        out.push(if rgb == key { 0 } else { 255 });
    }
    out
}

/// Pillow's `Image.Transpose` values (what `ImageOps.exif_transpose` applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    FlipLeftRight = 0,
    FlipTopBottom = 1,
    Rotate90 = 2,
    Rotate180 = 3,
    Rotate270 = 4,
    Transpose = 5,
    Transverse = 6,
}

impl Transpose {
    pub fn from_pillow(v: u8) -> Option<Self> {
        use self::Transpose as T;
        [T::FlipLeftRight, T::FlipTopBottom, T::Rotate90, T::Rotate180, T::Rotate270, T::Transpose, T::Transverse]
            .get(v as usize)
            .copied()
    }
}

/// `Image.transpose(op)` of a raster.
pub fn transpose(r: &Raster, op: Transpose) -> Raster {
    let (w, h, c) = (r.width, r.height, r.channels);
    let swap = matches!(op, Transpose::Rotate90 | Transpose::Rotate270 | Transpose::Transpose | Transpose::Transverse);
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut data = Vec::with_capacity(r.data.len());
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = match op {
                Transpose::FlipLeftRight => (w - 1 - x, y),
                Transpose::FlipTopBottom => (x, h - 1 - y),
                Transpose::Rotate90 => (w - 1 - y, x),
                Transpose::Rotate180 => (w - 1 - x, h - 1 - y),
                Transpose::Rotate270 => (y, h - 1 - x),
                Transpose::Transpose => (y, x),
                Transpose::Transverse => (w - 1 - y, h - 1 - x),
            };
            let i = (sy * w + sx) * c;
            data.extend_from_slice(&r.data[i..i + c]);
        }
    }
    Raster { data, width: ow, height: oh, channels: c }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: u32, h: u32, color: ColorType, depth: BitDepth, raw: &[u8], plte: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if let Some(p) = plte {
            e.set_palette(p.to_vec());
        }
        e.write_header().unwrap().write_image_data(raw).unwrap();
        out
    }

    #[test]
    fn packed_greyscale_scales_like_pillow() {
        // 2-bit samples 0..3 in one byte: Pillow's L;2 multiplies by 0x55.
        let data = encode(4, 1, ColorType::Grayscale, BitDepth::Two, &[0b00_01_10_11], None);
        let r = png(&data, PngMode::L, &Transparency::None, true).unwrap();
        assert_eq!(r.data, [0, 0x55, 0xaa, 0xff]);
        assert_eq!(r.channels, 1);
    }

    #[test]
    fn palette_pads_with_black_and_applies_alphas() {
        let data = encode(3, 1, ColorType::Indexed, BitDepth::Eight, &[0, 1, 2], Some(&[1, 2, 3, 4, 5, 6]));
        let r = png(&data, PngMode::P, &Transparency::Alphas(vec![7]), true).unwrap();
        assert_eq!(r.data, [1, 2, 3, 7, 4, 5, 6, 255, 0, 0, 0, 255]);
        let r = png(&data, PngMode::P, &Transparency::None, true).unwrap();
        assert_eq!(r.data, [1, 2, 3, 4, 5, 6, 0, 0, 0]);
    }

    #[test]
    fn a_mode_that_differs_from_pillows_is_refused() {
        let data = encode(1, 1, ColorType::Rgb, BitDepth::Eight, &[1, 2, 3], None);
        assert!(png(&data, PngMode::L, &Transparency::None, true).is_none());
        assert!(png(&data[..data.len() - 14], PngMode::Rgb, &Transparency::None, true).is_none());
    }

    #[test]
    fn transposes_compose_to_identity() {
        let r = Raster { data: (0..24).collect(), width: 4, height: 3, channels: 2 };
        let t = |r: &Raster, op| transpose(r, op);
        assert_eq!(t(&t(&r, Transpose::Rotate90), Transpose::Rotate270), r);
        assert_eq!(t(&t(&r, Transpose::Transpose), Transpose::Transpose), r);
        assert_eq!(t(&t(&r, Transpose::Transverse), Transpose::Rotate180), t(&r, Transpose::Transpose));
        assert_eq!(t(&r, Transpose::Rotate90).data[..2], r.data[6..8]); // top-left ← top-right
    }
}
