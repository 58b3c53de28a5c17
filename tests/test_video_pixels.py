"""Video pixel_values (pixels.md §4, §6): Pillow-exact per-frame resize, image normalisation,
and transformers' own video patch order (its permute, replayed with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from images import content
from rawmm import ImageDecodeError, Layout
from test_kimi import kimi_reference


def qwen_video_reference(
    layout: Layout, frames: list[np.ndarray], fps: float
) -> tuple[np.ndarray, list[int]]:
    k = layout.knobs
    p, m, t = k["patch_size"], k["merge_size"], k["temporal_patch_size"]
    h, w = frames[0].shape[:2]
    v = layout.video(len(frames), w, h, fps=fps)
    rw, rh = v.resized_width, v.resized_height
    mean, std = np.array(k["image_mean"], np.float32), np.array(k["image_std"], np.float32)
    out = []
    for i in v.frame_indices:
        im = Image.fromarray(frames[i])
        if im.size != (rw, rh):
            im = im.resize((rw, rh), Image.Resampling.BICUBIC)
        x = (np.asarray(im).astype(np.float64) * (1 / 255)).astype(np.float32)
        out.append(((x - mean) / std).transpose(2, 0, 1))
    while len(out) % t:
        out.append(out[-1])  # odd counts repeat the last frame
    video = np.stack(out)  # (F, C, H, W)
    gt, gh, gw = len(out) // t, rh // p, rw // p
    patches = video.reshape(gt, t, 3, gh // m, m, p, gw // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # transformers' permute(0,1,4,7,5,8,3,2,6,9)
    return patches.reshape(gt * gh * gw, 3 * t * p * p), [gt, gh, gw]


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
@settings(max_examples=12)
@given(n=st.integers(1, 9), w=st.integers(16, 300), h=st.integers(16, 300), seed=st.integers(0, 99))
def test_qwen_video_bit_identical(name: str, n: int, w: int, h: int, seed: int) -> None:
    layout = Layout.preset(name, video={"min_pixels": 1, "max_pixels": 60_000, "fps": None, "min_frames": 1})
    if (name == "qwen3_vl" and n < 2) or max(w, h) / min(w, h) > 200:
        return
    frames = [content("noise", w, h, 3, seed + i) for i in range(n)]
    want, grid = qwen_video_reference(layout, frames, fps=2.0)
    out = layout.video_pixel_values(frames, fps=2.0)
    assert out.grid_thw.tolist() == [grid]
    assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
    assert out.num_tokens == [grid[0] * grid[1] * grid[2] // 4]


def test_two_identical_frames_equal_the_image() -> None:
    layout = Layout.preset("qwen2_5_vl", video={"min_pixels": 3136, "max_pixels": 12845056})
    frame = content("gradient", 200, 150, 3, 0)
    assert np.array_equal(
        layout.video_pixel_values([frame, frame]).pixel_values, layout.pixel_values(frame).pixel_values
    )


def test_kimi_video_frames_follow_each_other() -> None:
    layout = Layout.preset("kimi_k25")
    frames = [content("noise", 320, 180, 3, i) for i in range(30)]
    out = layout.video_pixel_values(frames, fps=10)
    v = layout.video(30, 320, 180, fps=10)
    assert v.chunks is not None and out.grid_thw.tolist() == [list(c[2]) for c in v.chunks]
    parts = [kimi_reference(Image.fromarray(frames[i]), limit=4096)[0] for i in v.frame_indices]
    assert np.array_equal(out.pixel_values, np.concatenate(parts))
    assert out.num_tokens == [c[3] for c in v.chunks]


def test_video_errors() -> None:
    layout = Layout.preset("qwen2_vl")
    with pytest.raises(ImageDecodeError):
        layout.video_pixel_values([np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)])
    from rawmm import LayoutError

    with pytest.raises(LayoutError):
        layout.video_pixel_values([])
