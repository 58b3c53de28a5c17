//! BLAKE3 digests (hashing.md §2, §4): bytes, files, framed streams.

use std::path::Path;

use crate::error::{Error, Result};

/// Below this, multithreaded hashing does not pay. hashing.md §9 puts the crossover between
/// 64 KiB and 1 MiB; a sweep on the 2-core development VM (medians of 400 runs, same crate)
/// gave rayon/1-thread = 0.93x at 128 KiB, 1.18x at 256 KiB, 1.35x at 512 KiB, 1.59x at
/// 1 MiB: 512 KiB keeps a margin. Above it the global rayon pool is used (never a pool per call).
pub const MT_THRESHOLD: usize = 512 << 10;

pub fn hash_bytes(data: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    if data.len() >= MT_THRESHOLD {
        h.update_rayon(data);
    } else {
        h.update(data);
    }
    h.finalize().to_hex().to_string()
}

/// Memory-maps large files (streamed reads for small ones, as `update_mmap_rayon` decides).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Whether an open file holds exactly `data`: the store's check that an existing asset is a
/// good copy, by comparison rather than a second hash, and without copying the file.
pub fn same_contents(file: &std::fs::File, data: &[u8]) -> std::io::Result<bool> {
    if file.metadata()?.len() != data.len() as u64 {
        return Ok(false);
    }
    if data.len() < 64 << 10 {
        use std::io::Read;
        let mut buf = Vec::with_capacity(data.len() + 1);
        file.take(data.len() as u64 + 1).read_to_end(&mut buf)?;
        return Ok(buf == data);
    }
    // SAFETY: read-only and dropped before returning; a concurrent writer can only make the
    // comparison fail, which then replaces the file atomically.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(map[..] == *data)
}

/// BLAKE3 of the concatenation of `chunks`, without concatenating them.
pub fn hash_chunks(chunks: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        if c.len() >= MT_THRESHOLD {
            h.update_rayon(c);
        } else {
            h.update(c);
        }
    }
    h.finalize().to_hex().to_string()
}

/// `u64le(len(b)) ‖ b`, the framing of every rawmm digest.
pub fn frame(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

/// Pixel fingerprint over a canonical raster (hashing.md §4).
pub fn pixel_fingerprint(mode: &str, width: u64, height: u64, pixels: &[u8]) -> Result<String> {
    let bpp = match mode {
        "L" => 1,
        "LA" | "I;16" => 2,
        "RGB" => 3,
        "RGBA" => 4,
        _ => return Err(Error::Decode(format!("no canonical raster for mode {mode:?}"))),
    };
    if (width * height) as usize * bpp != pixels.len() {
        return Err(Error::Decode("pixel buffer length does not match width*height*bpp".into()));
    }
    let mut head = Vec::with_capacity(96);
    frame(&mut head, b"rawmm-pixels:v1");
    frame(&mut head, mode.as_bytes());
    frame(&mut head, &width.to_le_bytes());
    frame(&mut head, &height.to_le_bytes());
    head.extend_from_slice(&(pixels.len() as u64).to_le_bytes());
    Ok(hash_chunks(&[&head, pixels]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_contents_compares_bytes_and_length() {
        let dir = std::env::temp_dir().join(format!("rawmm-same-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0usize, 10, 100 << 10] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let path = dir.join(format!("f{n}"));
            std::fs::write(&path, &data).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            assert!(same_contents(&f, &data).unwrap());
            if n > 0 {
                let mut other = data.clone();
                other[n / 2] ^= 1;
                assert!(!same_contents(&f, &other).unwrap());
                assert!(!same_contents(&f, &data[..n - 1]).unwrap());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vectors_from_spec() {
        // hashing.md §2 and §4.
        assert_eq!(hash_bytes(b""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(hash_bytes(b"hello"), "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f");
        let px = [0xff, 0, 0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            pixel_fingerprint("RGB", 2, 2, &px).unwrap(),
            "87d89db12421fd8b1c34ec79dc05640746651c233846b776fb8ba4a2c30fbc7a"
        );
        assert_eq!(
            pixel_fingerprint("L", 1, 1, &[0x80]).unwrap(),
            "82a0e551964976b04239cd26690fc6be7ca29bb7718d7a7bbdbaa8f0d5ae7fb5"
        );
    }

    #[test]
    fn threaded_and_chunked_agree() {
        let big: Vec<u8> = (0..3 * MT_THRESHOLD + 17).map(|i| (i * 31) as u8).collect();
        let one = blake3::hash(&big).to_hex().to_string();
        assert_eq!(hash_bytes(&big), one);
        let (a, b) = big.split_at(12345);
        assert_eq!(hash_chunks(&[a, b]), one);
    }
}
