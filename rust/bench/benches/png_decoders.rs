//! PNG decoding: rawmm's decoder (the `png` crate with fdeflate, raw samples, checksums
//! verified) against `zune-png` on a real screenshot and a photo from tests/corpus/png, both
//! producing 8-bit RGB(A) samples. Run with `cargo bench -p rawmm-bench --bench png_decoders`.

use criterion::{criterion_group, criterion_main, Criterion};
use rawmm_core::decode::{png, PngMode, Transparency};

fn corpus(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/png/");
    std::fs::read(format!("{path}{name}")).expect("corpus file")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("png_decode");
    for (name, mode) in [("benches-lorem_ipsum_screenshot.png", PngMode::Rgba), ("benches-kodim23.png", PngMode::Rgb)] {
        let data = corpus(name);
        let ours = png(&data, mode, &Transparency::None, true).expect("rawmm decodes it");
        let mut zune = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&data));
        let theirs = zune.decode_raw().expect("zune-png decodes it");
        assert_eq!(ours.data, theirs, "{name}: the decoders disagree");
        group.bench_function(format!("rawmm png/{name}"), |b| {
            b.iter(|| png(&data, mode, &Transparency::None, true).unwrap())
        });
        group.bench_function(format!("zune-png/{name}"), |b| {
            b.iter(|| zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&data)).decode_raw().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
