//! Criterion benches of the hand-written kernels (no Python): `cargo bench -p rawmm-core`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rawmm_core::layout::{
    AlphaPolicy, Backend, ExifPolicy, Geometry, Knobs, PixelKnobs, QwenGeometry, Resample, ResizeCompat, RESCALE_1_255,
};
use rawmm_core::pipeline::Decoded;
use rawmm_core::resample::resize_bicubic;

const P13: Resample = Resample::Pillow(ResizeCompat::Pillow13);

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn qwen25() -> Knobs {
    let g =
        QwenGeometry { patch_size: 14, merge_size: 2, temporal_patch_size: 2, min_pixels: 3136, max_pixels: 12845056 };
    let p = PixelKnobs {
        image_mean: [0.48145466, 0.4578275, 0.40821073],
        image_std: [0.26862954, 0.26130258, 0.27577711],
        rescale_factor: RESCALE_1_255,
        resize_compat: ResizeCompat::Pillow13,
        exif_policy: ExifPolicy::Apply,
        alpha_policy: AlphaPolicy::CompositeWhite,
        backend: Backend::Pil,
        do_normalize: true,
    };
    Knobs::new(Geometry::Qwen(g), p).unwrap()
}

fn kernels(c: &mut Criterion) {
    let img = noise(1024 * 1024 * 3);
    let mut g = c.benchmark_group("1024x1024");
    g.sample_size(20);
    g.bench_function("resize_h_only_1036", |b| {
        b.iter(|| resize_bicubic(black_box(&img), 3, (1024, 1024), (1036, 1024), P13, false))
    });
    g.bench_function("resize_v_only_1036", |b| {
        b.iter(|| resize_bicubic(black_box(&img), 3, (1024, 1024), (1024, 1036), P13, false))
    });
    g.bench_function("resize_h_only_1036_torch", |b| {
        b.iter(|| resize_bicubic(black_box(&img), 3, (1024, 1024), (1036, 1024), Resample::Torch, false))
    });
    g.bench_function("resize_1036", |b| {
        b.iter(|| resize_bicubic(black_box(&img), 3, (1024, 1024), (1036, 1036), P13, false))
    });
    let k = qwen25();
    let dec = [Decoded { data: &img, width: 1024, height: 1024, channels: 3, alpha: false }];
    g.bench_function("pixel_values_qwen25_1t", |b| b.iter(|| k.pixel_values::<f32>(black_box(&dec), Some(1)).unwrap()));
    g.bench_function("pixel_values_qwen25_all", |b| b.iter(|| k.pixel_values::<f32>(black_box(&dec), None).unwrap()));
    let aligned = noise(1036 * 1036 * 3);
    let dec = [Decoded { data: &aligned, width: 1036, height: 1036, channels: 3, alpha: false }];
    g.bench_function("pack_only_qwen25_1t", |b| b.iter(|| k.pixel_values::<f32>(black_box(&dec), Some(1)).unwrap()));
    {
        use rawmm_core::pack::{pack_image, Job, Norm, Packing};
        let lut = Norm::<f32>::new([0.5; 3], [0.5; 3], 1.0 / 255.0, Backend::Pil);
        let tv = Norm::<f32>::new([0.5; 3], [0.5; 3], 1.0 / 255.0, Backend::Torchvision);
        let packing = Packing::Qwen { patch: 14, merge: 2, temporal: 2 };
        let mut out = vec![std::mem::MaybeUninit::new(0f32); packing.len(1036, 1036)];
        let job =
            Job { rgb: &aligned, channels: 3, width: 1036, height: 1036, resized_width: 1036, resized_height: 1036 };
        g.bench_function("pack_into_reused_1t", |b| {
            b.iter(|| pack_image(&job, packing, &lut, P13, black_box(&mut out), false))
        });
        let rgbx = noise(1024 * 1024 * 4);
        let packing = Packing::Qwen { patch: 16, merge: 2, temporal: 2 };
        let mut out16 = vec![std::mem::MaybeUninit::new(0f32); packing.len(1024, 1024)];
        let job = Job { rgb: &rgbx, channels: 4, width: 1024, height: 1024, resized_width: 1024, resized_height: 1024 };
        g.bench_function("pack_rgbx_qwen3_reused_1t", |b| {
            b.iter(|| pack_image(&job, packing, &lut, P13, black_box(&mut out16), false))
        });
        g.bench_function("pack_rgbx_qwen3_reused_1t_torchvision", |b| {
            b.iter(|| pack_image(&job, packing, &tv, Resample::Torch, black_box(&mut out16), false))
        });
        g.bench_function("fill_reused_25mb", |b| b.iter(|| black_box(&mut out).fill(std::mem::MaybeUninit::new(1.0))));
    }
    g.bench_function("floor_alloc_fill_25mb", |b| {
        b.iter(|| {
            let mut v = vec![0f32; 5476 * 1176];
            v.fill(1.0);
            black_box(v)
        })
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
