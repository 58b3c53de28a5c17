//! rawmm's torchvision-backend `pixel_values` against llm-multimodal 1.14.0's Qwen processors
//! (torchvision-exact, in Rust) on the same decoded RGB8 buffers, float32 out. Both outputs are
//! checked to be identical bytes before anything is timed.
//!
//! `BENCH_THREADS=1 cargo bench -p rawmm-bench --bench peers` (one thread each), and without
//! the variable (all cores each); `make bench-rust` runs both. llm-multimodal sizes its pool
//! once per process, hence one process per thread count.

use std::num::NonZeroUsize;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use image::{DynamicImage, RgbImage};
use llm_multimodal::vision::{PreProcessorConfig, VisionPreProcessor};
use llm_multimodal::{configure_parallelism, Parallelism};
use rawmm_core::layout::{
    AlphaPolicy, Backend, ExifPolicy, Geometry, Knobs, PixelKnobs, QwenGeometry, ResizeCompat, RESCALE_1_255,
};
use rawmm_core::pipeline::Decoded;

const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Photo-like content: smooth structure at several scales plus a little sensor noise.
fn photo(w: usize, h: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 17) as f64 - 8.0
    };
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for xx in 0..w {
            let (fx, fy) = (xx as f64, y as f64);
            for c in 0..3 {
                let v = 128.0
                    + 60.0 * ((fx / (37.0 + 11.0 * c as f64)).sin() * (fy / 53.0).cos())
                    + 35.0 * ((fx + fy) / 9.0 + c as f64).sin()
                    + noise();
                out.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Hub config values of Qwen2.5-VL (patch 14, CLIP) and Qwen3-VL (patch 16, 0.5).
fn models() -> [(&'static str, Knobs, &'static str, Box<dyn VisionPreProcessor>); 2] {
    let knobs = |patch, lo, hi, mean, std| {
        let g =
            QwenGeometry { patch_size: patch, merge_size: 2, temporal_patch_size: 2, min_pixels: lo, max_pixels: hi };
        let p = PixelKnobs {
            image_mean: mean,
            image_std: std,
            rescale_factor: RESCALE_1_255,
            resize_compat: ResizeCompat::Pillow13,
            exif_policy: ExifPolicy::Apply,
            alpha_policy: AlphaPolicy::CompositeWhite,
            backend: Backend::Torchvision,
            do_normalize: true,
        };
        Knobs::new(Geometry::Qwen(g), p).unwrap()
    };
    use llm_multimodal::vision::processors::{Qwen2VLProcessor, Qwen3VLProcessor};
    [
        (
            "qwen2_5_vl",
            knobs(14, 3136, 12845056, CLIP_MEAN, CLIP_STD),
            r#"{"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711]}"#,
            Box::new(Qwen2VLProcessor::new()),
        ),
        (
            "qwen3_vl",
            knobs(16, 65536, 16777216, [0.5; 3], [0.5; 3]),
            r#"{"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5]}"#,
            Box::new(Qwen3VLProcessor::new()),
        ),
    ]
}

fn peers(c: &mut Criterion) {
    let threads = std::env::var("BENCH_THREADS").ok().and_then(|v| v.parse::<usize>().ok());
    let all = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let n = threads.unwrap_or(all).max(1);
    configure_parallelism(if n == 1 { Parallelism::Inline } else { Parallelism::Pool(NonZeroUsize::new(n).unwrap()) })
        .expect("llm-multimodal's pool is configured once");
    let ours = if n == 1 { Some(1) } else { Some(n) };
    let mut g = c.benchmark_group(format!("qwen_torchvision_{n}t"));
    g.sample_size(15);
    for (w, h) in [(1024, 1024), (1280, 960), (2048, 1536)] {
        let rgb = photo(w, h, (w * h) as u32);
        let img = DynamicImage::ImageRgb8(RgbImage::from_raw(w as u32, h as u32, rgb.clone()).unwrap());
        let dec = [Decoded { data: &rgb, width: w, height: h, channels: 3, alpha: false }];
        for (name, knobs, config, peer) in models() {
            let config = PreProcessorConfig::from_json(config).unwrap();
            let theirs = || peer.preprocess(std::slice::from_ref(&img), &config).unwrap();
            let mine = || knobs.pixel_values::<f32>(&dec, ours).unwrap();
            let (a, b) = (mine(), theirs());
            let b = b.encoder_input.as_f32();
            let same =
                a.values.len() == b.len() && a.values.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} {w}x{h}: rawmm and llm-multimodal differ");
            g.bench_function(format!("{name}_{w}x{h}/rawmm"), |bch| bch.iter(|| black_box(mine())));
            g.bench_function(format!("{name}_{w}x{h}/llm_multimodal"), |bch| {
                bch.iter(|| black_box(theirs().encoder_input.as_f32().len()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, peers);
criterion_main!(benches);
