//! Video layout: frame sampling, temporal grouping, prompt text (layout.md §7).

use crate::error::{layout, Result};
use crate::families::kimi::navit_resize;
use crate::layout::{bounded_resize, check_ratio, check_size, rhe_pos, smart_resize, KimiGeometry, QwenGeometry};

pub const QWEN_VISION_START: &str = "<|vision_start|>";
pub const QWEN_VISION_END: &str = "<|vision_end|>";
pub const QWEN_VIDEO_PAD: &str = "<|video_pad|>";
pub const KIMI_MEDIA_BEGIN: &str = "<|media_begin|>";
pub const KIMI_MEDIA_CONTENT: &str = "<|media_content|>";
pub const KIMI_MEDIA_PAD: &str = "<|media_pad|>";
pub const KIMI_MEDIA_END: &str = "<|media_end|>";

/// Which Qwen video processor to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenVideoStyle {
    /// Qwen2-VL: per-frame image `smart_resize`, no timestamps.
    Qwen2,
    /// Qwen2.5-VL: as Qwen2-VL plus `second_per_grid_ts`.
    Qwen25,
    /// Qwen3-VL / Qwen3.5: volume-bounded `smart_resize`, per-group timestamps.
    Qwen3,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QwenVideoKnobs {
    pub style: QwenVideoStyle,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub do_sample_frames: bool,
    pub fps: Option<f64>,
    pub min_frames: u64,
    pub max_frames: u64,
    pub cap_pixels_per_frame: bool,
    /// Qwen3: replace the whole `<|vision_start|><|video_pad|><|vision_end|>` triple (true) or
    /// keep the outer wrapper as transformers 5.24 does (false).
    pub replace_triple: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KimiVideoKnobs {
    pub in_patch_limit_each_frame: u64,
    pub sample_fps: f64,
    pub temporal_merge_kernel_size: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KimiChunk {
    pub frame_indices: Vec<u64>,
    pub timestamp: String,
    pub grid_thw: [u64; 3],
    pub num_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoLayout {
    pub frame_indices: Vec<u64>,
    pub resized_width: u64,
    pub resized_height: u64,
    /// Qwen: `[gt, gh, gw]`; Kimi: None (see `chunks`).
    pub grid_thw: Option<[u64; 3]>,
    pub chunks: Vec<KimiChunk>,
    pub num_tokens: u64,
    pub placeholder_text: String,
    pub second_per_grid_ts: Option<f64>,
}

fn check_input(total: u64, width: u64, height: u64, src_fps: f64) -> Result<()> {
    if !(src_fps.is_finite() && src_fps > 0.0) {
        return layout(format!("fps must be a positive finite number, got {src_fps}"));
    }
    if total == 0 {
        return layout("a video needs at least one frame");
    }
    check_size(width, height)
}

/// `np.linspace(0, total - 1, n).round()` (ties to even; last index forced to `total - 1`).
pub fn linspace_indices(total: u64, n: u64) -> Vec<u64> {
    if n == 1 {
        return vec![0];
    }
    let step = (total - 1) as f64 / (n - 1) as f64;
    let mut idx: Vec<u64> = (0..n).map(|i| (i as f64 * step).round_ties_even() as u64).collect();
    if let Some(last) = idx.last_mut() {
        *last = total - 1;
    }
    idx
}

/// Qwen2-VL's `torch.arange(0, total, total / n).int()` on float32 (layout.md §7.1): the
/// length is `ceil(total / step)` in f64 and can exceed `n`.
fn arange_indices(total: u64, n: u64) -> Vec<u64> {
    let step = total as f64 / n as f64;
    let len = (total as f64 / step).ceil() as u64;
    (0..len).map(|i| ((i as f64 * step) as f32) as u64).collect()
}

fn qwen_sample(k: &QwenVideoKnobs, total: u64, src_fps: f64, temporal: u64) -> Result<Vec<u64>> {
    if !k.do_sample_frames {
        return Ok((0..total).collect());
    }
    match k.style {
        QwenVideoStyle::Qwen3 => {
            let n = match k.fps {
                Some(fps) => {
                    ((total as f64 / src_fps * fps).trunc() as u64).max(k.min_frames).min(k.max_frames).min(total)
                }
                None => total.max(k.min_frames).min(k.max_frames),
            };
            if n == 0 || n > total {
                return layout(format!("cannot sample {n} frames from a video of {total}"));
            }
            Ok(linspace_indices(total, n))
        }
        QwenVideoStyle::Qwen2 | QwenVideoStyle::Qwen25 => {
            let Some(fps) = k.fps else {
                return Ok((0..total).collect());
            };
            let cap = ((k.max_frames.min(total) as f64 / temporal as f64).floor() as u64 * temporal) as f64;
            let n = (total as f64 / src_fps * fps).max(k.min_frames as f64).min(cap).min(total as f64);
            let n = (n / temporal as f64).floor() as u64 * temporal;
            if n == 0 || n > total {
                return layout(format!("video can't be sampled: num_frames={n}, total_num_frames={total}"));
            }
            Ok(arange_indices(total, n))
        }
    }
}

/// Qwen video layout for `total` source frames of `width`×`height`.
pub fn qwen_video(
    g: &QwenGeometry,
    k: &QwenVideoKnobs,
    total: u64,
    width: u64,
    height: u64,
    src_fps: f64,
) -> Result<VideoLayout> {
    check_input(total, width, height, src_fps)?;
    let tp = g.temporal_patch_size;
    let factor = g.patch_size * g.merge_size;
    let idx = qwen_sample(k, total, src_fps, tp)?;
    let t = idx.len() as u64;
    let (rh, rw) = match k.style {
        QwenVideoStyle::Qwen2 | QwenVideoStyle::Qwen25 => {
            smart_resize(height, width, factor, k.min_pixels, k.max_pixels)?
        }
        QwenVideoStyle::Qwen3 => {
            if t < tp {
                return layout(format!("t:{t} must be larger than temporal_factor:{tp}"));
            }
            let mut max_px = k.max_pixels;
            if k.cap_pixels_per_frame {
                let ppf =
                    (768 * factor * factor).min(k.max_pixels / t).max((k.min_pixels as f64 * 1.05).trunc() as u64);
                max_px = ppf * t;
            }
            let (mut h, mut w) = (height, width);
            if h < factor || w < factor {
                let s = (factor as f64 / h as f64).max(factor as f64 / w as f64);
                h = (h as f64 * s).trunc() as u64;
                w = (w as f64 * s).trunc() as u64;
            }
            check_ratio(h, w)?;
            let t_bar = tp * rhe_pos(t as f64 / tp as f64);
            bounded_resize(h, w, factor, t, t_bar, k.min_pixels, max_px)
        }
    };
    let (gh, gw) = (rh / g.patch_size, rw / g.patch_size);
    let gt = t.div_ceil(tp);
    let per_group = gh * gw / (g.merge_size * g.merge_size);
    let num_tokens = gt * per_group;
    let block = |n: u64| format!("{QWEN_VISION_START}{}{QWEN_VISION_END}", QWEN_VIDEO_PAD.repeat(n as usize));
    let placeholder_text = match k.style {
        QwenVideoStyle::Qwen3 => {
            let mut padded = idx.clone();
            if padded.len() % 2 == 1 {
                padded.push(*padded.last().expect("t >= 2"));
            }
            let mut text: String = padded
                .chunks_exact(2)
                .take(gt as usize)
                .map(|p| {
                    let ts = (p[0] as f64 / src_fps + p[1] as f64 / src_fps) / 2.0;
                    format!("<{ts:.1} seconds>{}", block(per_group))
                })
                .collect();
            if !k.replace_triple {
                text = format!("{QWEN_VISION_START}{text}{QWEN_VISION_END}");
            }
            text
        }
        _ => block(num_tokens),
    };
    let second_per_grid_ts =
        (k.style == QwenVideoStyle::Qwen25).then(|| tp as f64 / (src_fps * t as f64 / total as f64));
    Ok(VideoLayout {
        frame_indices: idx,
        resized_width: rw,
        resized_height: rh,
        grid_thw: Some([gt, gh, gw]),
        chunks: Vec::new(),
        num_tokens,
        placeholder_text,
        second_per_grid_ts,
    })
}

/// Kimi's `hh:mm:ss.fff` stamp: truncated after the float operations (layout.md §7.4).
pub fn kimi_timestamp(t: f64) -> String {
    let whole = t.trunc() as u64;
    let ms = ((t % 1.0) * 1000.0).trunc() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", whole / 3600, whole / 60 % 60, whole % 60, ms)
}

/// Kimi K2.5 video chunks, following Moonshot's original processor.
pub fn kimi_video(
    g: &KimiGeometry,
    k: &KimiVideoKnobs,
    total: u64,
    width: u64,
    height: u64,
    src_fps: f64,
) -> Result<VideoLayout> {
    check_input(total, width, height, src_fps)?;
    if !(k.sample_fps.is_finite() && k.sample_fps > 0.0)
        || k.temporal_merge_kernel_size == 0
        || k.in_patch_limit_each_frame == 0
    {
        return layout("invalid kimi video knobs");
    }
    let fps_s = k.sample_fps.min(src_fps);
    let n = ((total as f64 * fps_s / src_fps).round_ties_even() as u64).max(1);
    let idx = linspace_indices(total, n);
    let (rw, rh, pw, ph) = navit_resize(
        width,
        height,
        g.patch_size,
        g.merge_kernel_size,
        k.in_patch_limit_each_frame,
        g.patch_limit_on_one_side,
    )?;
    let f = g.patch_size * g.merge_kernel_size;
    let tokens = (ph / f) * (pw / f);
    let mut text = String::new();
    let chunks: Vec<KimiChunk> = idx
        .chunks(k.temporal_merge_kernel_size as usize)
        .map(|c| {
            let timestamp = kimi_timestamp(c[0] as f64 / src_fps);
            text.push_str(&format!(
                "{timestamp}{KIMI_MEDIA_BEGIN}video{KIMI_MEDIA_CONTENT}{}{KIMI_MEDIA_END}",
                KIMI_MEDIA_PAD.repeat(tokens as usize)
            ));
            KimiChunk {
                frame_indices: c.to_vec(),
                timestamp,
                grid_thw: [c.len() as u64, ph / g.patch_size, pw / g.patch_size],
                num_tokens: tokens,
            }
        })
        .collect();
    Ok(VideoLayout {
        frame_indices: idx,
        resized_width: rw,
        resized_height: rh,
        grid_thw: None,
        num_tokens: tokens * chunks.len() as u64,
        chunks,
        placeholder_text: text,
        second_per_grid_ts: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q2() -> QwenGeometry {
        QwenGeometry { patch_size: 14, merge_size: 2, temporal_patch_size: 2, min_pixels: 3136, max_pixels: 12845056 }
    }
    fn q3() -> QwenGeometry {
        QwenGeometry { patch_size: 16, merge_size: 2, temporal_patch_size: 2, min_pixels: 65536, max_pixels: 16777216 }
    }
    fn q2v(style: QwenVideoStyle) -> QwenVideoKnobs {
        QwenVideoKnobs {
            style,
            min_pixels: 3136,
            max_pixels: 12845056,
            do_sample_frames: false,
            fps: None,
            min_frames: 4,
            max_frames: 768,
            cap_pixels_per_frame: false,
            replace_triple: true,
        }
    }
    fn q3v() -> QwenVideoKnobs {
        QwenVideoKnobs {
            style: QwenVideoStyle::Qwen3,
            min_pixels: 4096,
            max_pixels: 25165824,
            do_sample_frames: true,
            fps: Some(2.0),
            min_frames: 4,
            max_frames: 768,
            cap_pixels_per_frame: false,
            replace_triple: true,
        }
    }

    #[test]
    fn qwen2_examples() {
        let v = qwen_video(&q2(), &q2v(QwenVideoStyle::Qwen2), 16, 1920, 1080, 24.0).unwrap();
        assert_eq!(
            (v.resized_width, v.resized_height, v.grid_thw, v.num_tokens),
            (1932, 1092, Some([8, 78, 138]), 21528)
        );
        let v = qwen_video(&q2(), &q2v(QwenVideoStyle::Qwen25), 5, 640, 480, 24.0).unwrap();
        assert_eq!((v.resized_width, v.resized_height, v.grid_thw, v.num_tokens), (644, 476, Some([3, 34, 46]), 1173));
        assert_eq!(v.second_per_grid_ts, Some(2.0 / 24.0));
        let mut cls = q2v(QwenVideoStyle::Qwen2);
        (cls.min_pixels, cls.max_pixels) = (100352, 602112);
        let v = qwen_video(&q2(), &cls, 16, 1920, 1080, 24.0).unwrap();
        assert_eq!((v.resized_width, v.resized_height, v.grid_thw, v.num_tokens), (1008, 560, Some([8, 40, 72]), 5760));
    }

    #[test]
    fn qwen2_arange_can_exceed_n() {
        assert_eq!(arange_indices(15, 13).len(), 14);
    }

    #[test]
    fn qwen3_examples() {
        let k = q3v();
        // The spec's frame counts are the sampled counts: feed them with fps == sampling rate.
        let cases = [
            (16, 1920, 1080, 1664, 928, [8, 58, 104], 12064),
            (64, 1920, 1080, 832, 448, [32, 28, 52], 11648),
            (3, 640, 480, 640, 480, [2, 30, 40], 600),
            (768, 1280, 720, 224, 128, [384, 8, 14], 10752),
            (8, 20, 600, 32, 960, [4, 60, 2], 120),
        ];
        for (t, w, h, rw, rh, grid, tokens) in cases {
            let v = qwen_video(&q3(), &k, t, w, h, 2.0).unwrap();
            assert_eq!(v.frame_indices.len() as u64, t);
            assert_eq!(
                (v.resized_width, v.resized_height, v.grid_thw, v.num_tokens),
                (rw, rh, Some(grid), tokens),
                "{t} {w}x{h}"
            );
        }
        let mut one = k;
        one.do_sample_frames = false;
        assert!(qwen_video(&q3(), &one, 1, 64, 64, 2.0).is_err());
    }

    #[test]
    fn qwen3_timestamps() {
        // layout.md §7.3: indices [0, 75, 150, 224, 299] at 30 fps.
        let mut k = q3v();
        k.fps = None;
        k.do_sample_frames = true;
        k.min_frames = 5;
        k.max_frames = 5;
        let v = qwen_video(&q3(), &k, 300, 64, 96, 30.0).unwrap();
        assert_eq!(v.frame_indices, vec![0, 75, 150, 224, 299]);
        let g = v.grid_thw.unwrap();
        assert_eq!(g[0], 3);
        let per = (g[1] * g[2] / 4) as usize;
        let block = format!("<|vision_start|>{}<|vision_end|>", "<|video_pad|>".repeat(per));
        let want = format!("<1.2 seconds>{block}<6.2 seconds>{block}<10.0 seconds>{block}");
        assert_eq!(v.placeholder_text, want);
        k.replace_triple = false;
        let v = qwen_video(&q3(), &k, 300, 64, 96, 30.0).unwrap();
        assert_eq!(v.placeholder_text, format!("<|vision_start|>{want}<|vision_end|>"));
    }

    #[test]
    fn kimi_chunks() {
        let g = KimiGeometry {
            patch_size: 14,
            merge_kernel_size: 2,
            in_patch_limit: 16384,
            patch_limit_on_one_side: 512,
            fixed_output_tokens: None,
        };
        let k = KimiVideoKnobs { in_patch_limit_each_frame: 4096, sample_fps: 2.0, temporal_merge_kernel_size: 4 };
        let v = kimi_video(&g, &k, 300, 1920, 1080, 30.0).unwrap();
        assert_eq!(v.frame_indices.len(), 20);
        assert_eq!(&v.frame_indices[..5], &[0, 16, 31, 47, 63]);
        assert_eq!(*v.frame_indices.last().unwrap(), 299);
        let ts: Vec<&str> = v.chunks.iter().map(|c| c.timestamp.as_str()).collect();
        assert_eq!(ts, ["00:00:00.000", "00:00:02.100", "00:00:04.200", "00:00:06.299", "00:00:08.400"]);
        assert_eq!((v.resized_width, v.resized_height), (1196, 672));
        assert_eq!(v.chunks[0].grid_thw, [4, 48, 86]);
        assert_eq!(v.chunks[0].num_tokens, 1032);
        let v = kimi_video(&g, &k, 300, 1280, 720, 30.0).unwrap();
        assert_eq!((v.resized_width, v.resized_height, v.chunks[0].num_tokens), (1202, 676, 1075));
        assert_eq!(kimi_timestamp(2.3), "00:00:02.299");
        assert_eq!(kimi_timestamp(3661.5), "01:01:01.500");
    }
}
