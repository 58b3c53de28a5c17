//! PNG to the raster rawmm's decode rules make of Pillow 13's image, without Pillow: the `png`
//! crate (fdeflate) inflates, unfilters and de-interlaces; the conversions below repeat Pillow's
//! unpackers (`Unpack.c`) and `Image.convert` (`Convert.c`) for each colour type and depth.
//!
//! The caller (Python) has opened the file with Pillow, so it passes Pillow's mode and
//! `info["transparency"]`, which also reflect chunks after the image data. Anything this decoder
//! is not sure to decode exactly as Pillow does (APNG, a mode that does not match, any decoding
//! error, checksums included) returns `None`, and the caller decodes with Pillow instead, which
//! then gives the authoritative pixels or error.

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
    let mut rows = PngRows::open(data, mode, transparency, composite)?;
    let (width, height, channels) = (rows.width, rows.height, rows.channels);
    let mut raw = crate::mem::zeroed(rows.reader.output_buffer_size()?);
    rows.reader.next_frame(&mut raw).ok()?; // de-interlaces too
    let data = if rows.direct() {
        raw // the raw samples are already Pillow's bytes
    } else {
        let mut out = Vec::with_capacity(width * height * channels);
        raw.chunks_exact(rows.line).for_each(|r| rows.convert(r, &mut out));
        out
    };
    Some(Raster { data, width, height, channels })
}

/// An opened PNG whose rows convert one at a time to the raster `png` returns, so a caller can
/// consume a non-interlaced image row by row without holding it whole.
pub struct PngRows<'a> {
    reader: png::Reader<Cursor<&'a [u8]>>,
    mode: PngMode,
    bits: u8,
    grey_alpha: bool,
    to_alpha: bool,
    key: [u8; 3],
    palette: [[u8; 4]; 256],
    /// Bytes of one raw row.
    line: usize,
    row: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Channels of the converted rows (1 L, 2 LA, 3 RGB, 4 RGBA).
    pub channels: usize,
    pub interlaced: bool,
}

impl<'a> PngRows<'a> {
    /// The header and palette read, the conversion chosen; None as for `png`.
    pub fn open(data: &'a [u8], mode: PngMode, transparency: &Transparency, composite: bool) -> Option<Self> {
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
        let reader = decoder.read_info().ok()?;
        let info = reader.info();
        if info.animation_control.is_some() || PngMode::of(info.color_type, info.bit_depth) != mode {
            return None;
        }
        let has_alpha = matches!(mode, PngMode::La | PngMode::Rgba) || *transparency != Transparency::None;
        let to_alpha = has_alpha && composite;
        let key = match transparency {
            Transparency::Key(k) => k.map(|k| k as u8), // `convert_transparent` compares low bytes
            Transparency::Alphas(_) if mode != PngMode::P => return None,
            _ => [0; 3],
        };
        let keyed = to_alpha && !matches!(mode, PngMode::La | PngMode::Rgba | PngMode::P);
        if keyed && !matches!(transparency, Transparency::Key(_)) {
            return None;
        }
        let channels = match mode {
            PngMode::La => 2,
            PngMode::Rgba => 4,
            _ if to_alpha => 4,
            PngMode::L => 1,
            _ => 3,
        };
        let rows = PngRows {
            mode,
            bits: info.bit_depth as u8,
            grey_alpha: info.color_type == ColorType::GrayscaleAlpha,
            to_alpha,
            key,
            palette: palette_table(info.palette.as_deref(), transparency, mode)?,
            line: reader.output_line_size(info.width)?,
            row: Vec::new(),
            width: info.width as usize,
            height: info.height as usize,
            channels,
            interlaced: info.interlaced,
            reader,
        };
        Some(rows)
    }

    /// Whether the raw samples are already the converted bytes.
    fn direct(&self) -> bool {
        self.bits == 8 && matches!(self.mode, PngMode::L | PngMode::La | PngMode::Rgb | PngMode::Rgba) && !self.keyed()
    }

    fn keyed(&self) -> bool {
        self.to_alpha && !matches!(self.mode, PngMode::La | PngMode::Rgba | PngMode::P)
    }

    /// Appends the next `n` rows (fewer at the end) of a non-interlaced image, converted, to
    /// `out`. None on any decoding error.
    pub fn read_rows(&mut self, n: usize, out: &mut Vec<u8>) -> Option<()> {
        debug_assert!(!self.interlaced);
        let mut row = std::mem::take(&mut self.row);
        row.resize(self.line, 0);
        for _ in 0..n {
            self.reader.read_row(&mut row).ok()??;
            self.convert(&row, out);
        }
        self.row = row;
        Some(())
    }

    /// Reads past the last row: the rest of the image data, and its checksum, must be sound.
    pub fn finish(&mut self) -> Option<()> {
        let mut row = std::mem::take(&mut self.row);
        row.resize(self.line, 0);
        self.reader.read_row(&mut row).ok()?.is_none().then_some(())
    }

    /// One raw row (`line` bytes) converted and appended to `out`.
    fn convert(&self, raw: &[u8], out: &mut Vec<u8>) {
        let (w, bits) = (self.width, self.bits);
        match self.mode {
            _ if self.direct() => out.extend_from_slice(&raw[..w * self.channels]),
            PngMode::Rgba if self.grey_alpha => raw.chunks_exact(4).for_each(|s| out.extend([s[0], s[0], s[0], s[2]])),
            PngMode::Rgba => out.extend(raw.iter().step_by(2)),
            PngMode::P => {
                let c = self.channels;
                for_each_sample(raw, w, bits, |i| out.extend_from_slice(&self.palette[i as usize][..c]));
            }
            _ => {
                // Greyscale and RGB: Pillow's 8-bit pixel, then a colour key to alpha, or RGB.
                let mut push = |px: [u8; 3], grey: bool| {
                    if self.keyed() {
                        out.extend(px);
                        out.push(if px == self.key { 0 } else { 255 });
                    } else if !grey || self.channels == 3 {
                        out.extend(px); // RGB, and "1" and I;16 to RGB
                    } else {
                        out.push(px[0]);
                    }
                };
                match self.mode {
                    PngMode::Rgb if bits == 16 => raw.chunks_exact(6).for_each(|s| push([s[0], s[2], s[4]], false)),
                    PngMode::Rgb => raw[..3 * w].chunks_exact(3).for_each(|s| push([s[0], s[1], s[2]], false)),
                    PngMode::I16 => raw.chunks_exact(2).for_each(|s| {
                        let v = if s[0] == 0 { s[1] } else { 255 }; // Pillow's I;16 → 8 bits clips
                        push([v; 3], true)
                    }),
                    _ => {
                        // Pillow's "1", L;2 and L;4 unpackers scale to 8 bits.
                        let scale = match bits {
                            1 => 255,
                            2 => 0x55,
                            4 => 0x11,
                            _ => 1,
                        };
                        for_each_sample(raw, w, bits, |v| push([v * scale; 3], true));
                    }
                }
            }
        }
    }
}

impl crate::pipeline::RowSource for PngRows<'_> {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn read_rows(&mut self, n: usize, out: &mut Vec<u8>) -> Option<()> {
        PngRows::read_rows(self, n, out)
    }

    fn finish(&mut self) -> Option<()> {
        PngRows::finish(self)
    }
}

/// Calls `f` with each of the `width` samples of a row packed at `bits` (MSB first).
#[inline(always)]
fn for_each_sample(row: &[u8], width: usize, bits: u8, mut f: impl FnMut(u8)) {
    if bits == 8 {
        row[..width].iter().for_each(|&v| f(v));
        return;
    }
    let (per_byte, mask) = (8 / bits as usize, (1u8 << bits) - 1);
    for x in 0..width {
        let shift = 8 - bits as usize * (x % per_byte + 1);
        f((row[x / per_byte] >> shift) & mask);
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
