//! Image header reading without decoding pixels (refs.md §6 rule 6): the format and the size
//! the header claims, so the caps and the layout are checked before any decoder allocates. No
//! checksums are verified, so a decompression bomb with a broken CRC is still measured and
//! refused. Orientation and the size Pillow finally decodes (a GIF canvas grown to its first
//! frame) are Pillow's to say: the Python layer asks it, without decoding pixels.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
}

impl Format {
    /// Sniffs the leading bytes (refs.md §2.3).
    pub fn sniff(data: &[u8]) -> Option<Format> {
        let starts = |p: &[u8]| data.starts_with(p);
        if starts(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if starts(b"\xff\xd8\xff") {
            Some(Format::Jpeg)
        } else if data.len() >= 12 && starts(b"RIFF") && &data[8..12] == b"WEBP" {
            Some(Format::Webp)
        } else if starts(b"GIF87a") || starts(b"GIF89a") {
            Some(Format::Gif)
        } else if starts(b"BM") {
            Some(Format::Bmp)
        } else if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
            Some(Format::Tiff)
        } else {
            None
        }
    }

    /// The asset-id extension of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tiff",
        }
    }
}

/// What the header claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    pub width: u64,
    pub height: u64,
    /// The fewest bytes any file of this format and size can hold (0 when no bound is known):
    /// shorter data is surely truncated, and refused before a decoder allocates the image.
    pub min_bytes: u64,
}

fn be16(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as u64)
}
fn be32(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
}
fn le16(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
}
fn le24(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 3).map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]) as u64)
}
fn le32(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
}

fn truncated(what: &str) -> Error {
    Error::Decode(format!("truncated or malformed {what} header"))
}

/// Reads the header of encoded image bytes.
pub fn read(data: &[u8]) -> Result<Header> {
    let format =
        Format::sniff(data).ok_or_else(|| Error::Decode("not a PNG, JPEG, WebP, GIF, BMP or TIFF image".into()))?;
    let (width, height) = match format {
        Format::Png => png(data).map(|(w, h, _)| (w, h)),
        Format::Jpeg => jpeg(data),
        Format::Webp => webp(data),
        Format::Gif => Some((le16(data, 6).unwrap_or(0), le16(data, 8).unwrap_or(0))).filter(|_| data.len() >= 10),
        Format::Bmp => bmp(data),
        Format::Tiff => tiff(data),
    }
    .ok_or_else(|| truncated(format.extension()))?;
    if width == 0 || height == 0 {
        return Err(Error::Decode(format!("{} header claims an empty image ({width}x{height})", format.extension())));
    }
    // Only PNG: Pillow decodes truncated JPEGs (libjpeg fills the rest), so no bound may refuse one.
    let min_bytes = if format == Format::Png { png(data).map_or(0, |r| r.2) } else { 0 };
    Ok(Header { format, width, height, min_bytes })
}

/// Size and the least data: the raw pixels (filter bytes not counted) at deflate's best ratio,
/// 1032:1 (a 258-byte match coded in 2 bits).
fn png(d: &[u8]) -> Option<(u64, u64, u64)> {
    if d.get(12..16)? != b"IHDR" {
        return None;
    }
    let (w, h) = (be32(d, 16)?, be32(d, 20)?);
    let channels = match *d.get(25)? {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => 0,
    };
    let bits = u128::from(*d.get(24)?) * channels;
    let raw = u128::from(h) * u128::from(w) * bits / 8; // interlaced rows round up per pass
    Some((w, h, u64::try_from(raw / 1032).unwrap_or(u64::MAX)))
}

fn jpeg(d: &[u8]) -> Option<(u64, u64)> {
    // Pillow's marker scan: bytes other than 0xFF between segments are skipped, fill bytes too.
    let mut at = 2;
    loop {
        while *d.get(at)? != 0xFF {
            at += 1;
        }
        while *d.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = *d.get(at + 1)?;
        at += 2;
        if matches!(marker, 0xD0..=0xD9 | 0x01 | 0x00) {
            continue; // markers without a length
        }
        let len = be16(d, at)? as usize;
        if len < 2 {
            return None;
        }
        match marker {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Some((be16(d, at + 5)?, be16(d, at + 3)?));
            }
            0xDA => return None, // scan data before any frame header
            _ => {}
        }
        at += len;
    }
}

fn webp(d: &[u8]) -> Option<(u64, u64)> {
    match d.get(12..16)? {
        b"VP8 " => {
            if d.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(d, 26)? & 0x3FFF, le16(d, 28)? & 0x3FFF))
        }
        b"VP8L" => {
            if *d.get(20)? != 0x2F {
                return None;
            }
            let bits = le32(d, 21)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(d, 24)? + 1, le24(d, 27)? + 1)),
        _ => None,
    }
}

fn bmp(d: &[u8]) -> Option<(u64, u64)> {
    let dib = le32(d, 14)?;
    if dib == 12 {
        return Some((le16(d, 18)?, le16(d, 20)?));
    }
    let w = le32(d, 18)? as u32 as i32;
    let h = le32(d, 22)? as u32 as i32; // negative: top-down rows
    Some((w.unsigned_abs() as u64, h.unsigned_abs() as u64))
}

/// IFD0's width and height (the last of duplicate tags, as Pillow).
fn tiff(t: &[u8]) -> Option<(u64, u64)> {
    let le = match t.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: usize| if le { le16(t, at) } else { be16(t, at) };
    let u32_at = |at: usize| if le { le32(t, at) } else { be32(t, at) };
    let u64_at = |at: usize| {
        let b: [u8; 8] = t.get(at..at + 8)?.try_into().ok()?;
        Some(if le { u64::from_le_bytes(b) } else { u64::from_be_bytes(b) })
    };
    let big = u16_at(2)? == 43;
    let (ifd, count, entry, first) = if big {
        let off = usize::try_from(u64_at(8)?).ok()?;
        (off, usize::try_from(u64_at(off)?).ok()?, 20, 8)
    } else {
        let off = u32_at(4)? as usize;
        (off, u16_at(off)? as usize, 12, 2)
    };
    let (mut w, mut h) = (0, 0);
    for i in 0..count.min(1024) {
        let e = ifd.checked_add(first + i * entry)?;
        let tag = u16_at(e)?;
        let value_at = e + if big { 12 } else { 8 };
        let value = match u16_at(e + 2)? {
            3 => u16_at(value_at)?,
            4 => u32_at(value_at)?,
            _ => continue,
        };
        match tag {
            256 => w = value,
            257 => h = value,
            _ => {}
        }
    }
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_header_without_crc_checks() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(200_000u32.to_be_bytes());
        png.extend(100_000u32.to_be_bytes());
        png.extend([8, 2, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]); // wrong CRC
        let h = read(&png).unwrap();
        assert_eq!((h.format, h.width, h.height), (Format::Png, 200_000, 100_000));
    }

    #[test]
    fn rejects_non_images_and_truncation() {
        assert!(matches!(read(b""), Err(Error::Decode(_))));
        assert!(matches!(read(b"hello world"), Err(Error::Decode(_))));
        assert!(matches!(read(b"\x89PNG\r\n\x1a\n\0\0"), Err(Error::Decode(_))));
        assert!(matches!(read(b"\xff\xd8\xff\xe0\0\x10JFIF"), Err(Error::Decode(_))));
    }

    #[test]
    fn least_bytes_of_png() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(13376u32.to_be_bytes());
        png.extend(13376u32.to_be_bytes());
        png.extend([8, 2, 0, 0, 0]);
        assert_eq!(read(&png).unwrap().min_bytes, 13376 * 13376 * 3 / 1032);
    }

    #[test]
    fn jpeg_skips_junk_between_segments_as_pillow() {
        // SOI, an APP0 segment, junk, SOF0 of 7x5.
        let jpg = b"\xff\xd8\xff\xe0\x00\x04ab\x42\xff\xff\xc0\x00\x0b\x08\x00\x05\x00\x07\x01\x01\x11\x00";
        let h = read(jpg).unwrap();
        assert_eq!((h.format, h.width, h.height), (Format::Jpeg, 7, 5));
    }
}
