//! Image header reading without decoding pixels (refs.md §5.1, §6): format, size and EXIF
//! orientation from the first bytes. No checksums are verified, so a decompression bomb with
//! a broken CRC is still measured and refused before any pixel is decoded.

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
    /// EXIF Orientation (1..=8); 1 when absent or unreadable.
    pub orientation: u8,
}

impl Header {
    /// Width and height after applying the orientation (5..=8 swap them).
    pub fn oriented(&self) -> (u64, u64) {
        if self.orientation >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
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
    let (width, height, orientation) = match format {
        Format::Png => png(data),
        Format::Jpeg => jpeg(data),
        Format::Webp => webp(data),
        Format::Gif => Some((le16(data, 6).unwrap_or(0), le16(data, 8).unwrap_or(0), 1)).filter(|_| data.len() >= 10),
        Format::Bmp => bmp(data),
        Format::Tiff => tiff(data, 0),
    }
    .ok_or_else(|| truncated(format.extension()))?;
    if width == 0 || height == 0 {
        return Err(Error::Decode(format!("{} header claims an empty image ({width}x{height})", format.extension())));
    }
    Ok(Header { format, width, height, orientation })
}

fn png(d: &[u8]) -> Option<(u64, u64, u8)> {
    if d.get(12..16)? != b"IHDR" {
        return None;
    }
    let (w, h) = (be32(d, 16)?, be32(d, 20)?);
    // Walk the chunks (lengths only, no CRC checks) for an eXIf chunk before the image data.
    let mut at = 8;
    let mut orientation = 1;
    while let (Some(len), Some(kind)) = (be32(d, at), d.get(at + 4..at + 8)) {
        let body = at + 8;
        match kind {
            b"eXIf" => {
                orientation = d.get(body..body + len as usize).and_then(|t| tiff(t, 0)).map_or(1, |r| r.2);
                break;
            }
            b"IDAT" | b"IEND" => break,
            _ => at = body.checked_add(len as usize)?.checked_add(4)?,
        }
    }
    Some((w, h, orientation))
}

fn jpeg(d: &[u8]) -> Option<(u64, u64, u8)> {
    let mut at = 2;
    let mut orientation = 1;
    loop {
        // Skip fill bytes before a marker.
        while *d.get(at)? == 0xFF && *d.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *d.get(at)? != 0xFF {
            return None;
        }
        let marker = *d.get(at + 1)?;
        at += 2;
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            continue; // markers without a length
        }
        let len = be16(d, at)? as usize;
        if len < 2 {
            return None;
        }
        match marker {
            0xE1 if d.get(at + 2..at + 8) == Some(b"Exif\0\0") && orientation == 1 => {
                let end = (at + len).min(d.len());
                orientation = d.get(at + 8..end).and_then(|t| tiff(t, 0)).map_or(1, |r| r.2);
            }
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Some((be16(d, at + 5)?, be16(d, at + 3)?, orientation));
            }
            0xDA => return None, // scan data before any frame header
            _ => {}
        }
        at += len;
    }
}

fn webp(d: &[u8]) -> Option<(u64, u64, u8)> {
    let kind = d.get(12..16)?;
    match kind {
        b"VP8 " => {
            if d.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(d, 26)? & 0x3FFF, le16(d, 28)? & 0x3FFF, 1))
        }
        b"VP8L" => {
            if *d.get(20)? != 0x2F {
                return None;
            }
            let bits = le32(d, 21)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1))
        }
        b"VP8X" => {
            let (w, h) = (le24(d, 24)? + 1, le24(d, 27)? + 1);
            // An EXIF chunk may follow among the extended chunks.
            let mut at = 30;
            let mut orientation = 1;
            while let (Some(tag), Some(len)) = (d.get(at..at + 4), le32(d, at + 4)) {
                let body = at + 8;
                if tag == b"EXIF" {
                    let t = d.get(body..body + len as usize)?;
                    let t = t.strip_prefix(b"Exif\0\0").unwrap_or(t);
                    orientation = tiff(t, 0).map_or(1, |r| r.2);
                    break;
                }
                at = body.checked_add(len as usize + (len as usize & 1))?;
            }
            Some((w, h, orientation))
        }
        _ => None,
    }
}

fn bmp(d: &[u8]) -> Option<(u64, u64, u8)> {
    let dib = le32(d, 14)?;
    if dib == 12 {
        return Some((le16(d, 18)?, le16(d, 20)?, 1));
    }
    let w = le32(d, 18)? as u32 as i32;
    let h = le32(d, 22)? as u32 as i32; // negative: top-down rows
    Some((w.unsigned_abs() as u64, h.unsigned_abs() as u64, 1))
}

/// A TIFF structure (a TIFF file or an EXIF block): IFD0's width, height and orientation.
fn tiff(d: &[u8], base: usize) -> Option<(u64, u64, u8)> {
    let t = d.get(base..)?;
    let le = match t.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: usize| if le { le16(t, at) } else { be16(t, at) };
    let u32_at = |at: usize| if le { le32(t, at) } else { be32(t, at) };
    let big = u16_at(2)? == 43;
    let (mut w, mut h, mut orientation) = (0, 0, 1u8);
    let (ifd, count, entry, first) = if big {
        let off = if le {
            u64::from_le_bytes(t.get(8..16)?.try_into().ok()?)
        } else {
            u64::from_be_bytes(t.get(8..16)?.try_into().ok()?)
        };
        let n = if le {
            u64::from_le_bytes(t.get(off as usize..off as usize + 8)?.try_into().ok()?)
        } else {
            u64::from_be_bytes(t.get(off as usize..off as usize + 8)?.try_into().ok()?)
        };
        (off as usize, n as usize, 20, 8)
    } else {
        let off = u32_at(4)? as usize;
        (off, u16_at(off)? as usize, 12, 2)
    };
    for i in 0..count.min(1024) {
        let e = ifd + first + i * entry;
        let tag = u16_at(e)?;
        let typ = u16_at(e + 2)?;
        let value_at = e + if big { 12 } else { 8 };
        let value = match typ {
            3 => u16_at(value_at)?,
            4 => u32_at(value_at)?,
            _ => continue,
        };
        match tag {
            256 => w = value,
            257 => h = value,
            274 if (1..=8).contains(&value) => orientation = value as u8,
            _ => {}
        }
    }
    Some((w, h, orientation))
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
        assert_eq!((h.format, h.width, h.height, h.orientation), (Format::Png, 200_000, 100_000, 1));
    }

    #[test]
    fn rejects_non_images_and_truncation() {
        assert!(matches!(read(b""), Err(Error::Decode(_))));
        assert!(matches!(read(b"hello world"), Err(Error::Decode(_))));
        assert!(matches!(read(b"\x89PNG\r\n\x1a\n\0\0"), Err(Error::Decode(_))));
        assert!(matches!(read(b"\xff\xd8\xff\xe0\0\x10JFIF"), Err(Error::Decode(_))));
    }

    #[test]
    fn oriented_size_swaps_for_5_to_8() {
        let h = Header { format: Format::Jpeg, width: 100, height: 60, orientation: 6 };
        assert_eq!(h.oriented(), (60, 100));
        assert_eq!(Header { orientation: 3, ..h }.oriented(), (100, 60));
    }
}
