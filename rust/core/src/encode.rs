//! Lossless PNG encoding of in-memory images at fixed settings (refs.md §2.4): only IHDR,
//! PLTE/tRNS when needed, IDAT and IEND. The bytes depend only on the pinned `png` crate.

use crate::error::{Error, Result};

/// An 8-bit (or 16-bit for `I;16`, 1-bit packed for `1`) raster in one of the modes PNG stores
/// directly. `palette`/`trns` only for `P` (and `trns` as a colour key for `L`/`RGB`).
pub struct Raster<'a> {
    pub mode: &'a str,
    pub width: u32,
    pub height: u32,
    pub data: &'a [u8],
    pub palette: Option<&'a [u8]>,
    pub trns: Option<&'a [u8]>,
}

pub fn png(r: &Raster) -> Result<Vec<u8>> {
    use png::{BitDepth, ColorType};
    let (color, depth, bits_per_px) = match r.mode {
        "1" => (ColorType::Grayscale, BitDepth::One, 1),
        "L" => (ColorType::Grayscale, BitDepth::Eight, 8),
        "LA" => (ColorType::GrayscaleAlpha, BitDepth::Eight, 16),
        "RGB" => (ColorType::Rgb, BitDepth::Eight, 24),
        "RGBA" => (ColorType::Rgba, BitDepth::Eight, 32),
        "P" => (ColorType::Indexed, BitDepth::Eight, 8),
        "I;16" => (ColorType::Grayscale, BitDepth::Sixteen, 16),
        other => return Err(Error::Decode(format!("cannot store mode {other:?} as PNG"))),
    };
    let row = (r.width as usize * bits_per_px).div_ceil(8);
    if r.width == 0 || r.height == 0 || r.data.len() != row * r.height as usize {
        return Err(Error::Decode("raster size does not match its data".into()));
    }
    let mut out = Vec::with_capacity(r.data.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, r.width, r.height);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        if let Some(p) = r.palette {
            enc.set_palette(p);
        }
        if let Some(t) = r.trns {
            enc.set_trns(t);
        }
        let mut w = enc.write_header().map_err(|e| Error::Decode(format!("PNG encoding failed: {e}")))?;
        w.write_image_data(r.data).map_err(|e| Error::Decode(format!("PNG encoding failed: {e}")))?;
        w.finish().map_err(|e| Error::Decode(format!("PNG encoding failed: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_only_the_needed_chunks() {
        let data = [0xff, 0, 0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let bytes = png(&Raster { mode: "RGB", width: 2, height: 2, data: &data, palette: None, trns: None }).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let mut at = 8;
        let mut kinds = Vec::new();
        while at + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            kinds.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert!(png(&Raster { mode: "RGB", width: 3, height: 2, data: &data, palette: None, trns: None }).is_err());
        assert!(png(&Raster { mode: "CMYK", width: 1, height: 3, data: &data, palette: None, trns: None }).is_err());
    }
}
