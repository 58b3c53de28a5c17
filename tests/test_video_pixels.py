"""Video pixel_values (pixels.md §4, §6). torchvision backend: bit-identical to transformers'
own Qwen2-VL / Qwen3-VL video processors (which run torchvision only). PIL backend: Pillow-exact
per-frame resize, image normalisation, and transformers' video patch order (its permute,
replayed with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import require_torch
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


def hf_video_processor(layout: Layout) -> object:
    """transformers 5.24's video processor of the layout's model, configured like it."""
    require_torch()
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    k, v = layout.knobs, layout.to_dict()["video"]
    cls = Qwen3VLVideoProcessor if layout.model in ("qwen3_vl", "qwen3_5") else Qwen2VLVideoProcessor
    return cls(
        size={"shortest_edge": v["min_pixels"], "longest_edge": v["max_pixels"]},
        patch_size=k["patch_size"],
        merge_size=k["merge_size"],
        temporal_patch_size=k["temporal_patch_size"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
        do_sample_frames=False,
        cap_pixels_per_frame=False,
    )


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@settings(max_examples=25)
@given(
    n=st.integers(1, 9),
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    kind=st.sampled_from(["noise", "gradient", "blocks"]),
    lo=st.sampled_from([1, 4096, 100_000]),
    seed=st.integers(0, 99),
)
@example(n=3, w=1, h=200, kind="noise", lo=1, seed=0)  # 1-pixel side, ratio 200, odd count
@example(n=2, w=224, h=224, kind="noise", lo=1, seed=1)  # aligned: no resize
@example(n=4, w=12, h=9, kind="gradient", lo=100_000, seed=2)  # strong upscale
def test_qwen_video_torchvision_equals_transformers(
    name: str, n: int, w: int, h: int, kind: str, lo: int, seed: int
) -> None:
    """The frames rawmm samples, given to transformers' video processor unsampled: identical
    `pixel_values_videos` (float32 bits) and `video_grid_thw`, for odd and even counts."""
    layout = Layout.preset(
        name, video={"min_pixels": lo, "max_pixels": max(lo, 150_000), "fps": None, "min_frames": 1}
    )
    if (name == "qwen3_vl" and n < 2) or max(w, h) / min(w, h) > 200:
        return
    frames = [content(kind, w, h, 3, seed + i) for i in range(n)]
    v = layout.video(n, w, h, fps=2.0)
    # channels_last: tiny frames like (1, 1, 3) are otherwise ambiguous to transformers
    ref = hf_video_processor(layout)(
        videos=[np.stack([frames[i] for i in v.frame_indices])],
        return_tensors="np",
        input_data_format="channels_last",
    )
    out = layout.video_pixel_values(frames, fps=2.0)
    assert out.grid_thw.tolist() == ref["video_grid_thw"].tolist()
    want = ref["pixel_values_videos"]
    assert want.dtype == np.float32 and out.pixel_values.shape == want.shape
    assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
    bf = layout.video_pixel_values(frames, fps=2.0, dtype="bfloat16").pixel_values
    import torch

    assert np.array_equal(
        bf.view(np.int16), torch.from_numpy(want).to(torch.bfloat16).view(torch.int16).numpy()
    )


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
@settings(max_examples=12)
@given(n=st.integers(1, 9), w=st.integers(16, 300), h=st.integers(16, 300), seed=st.integers(0, 99))
def test_qwen_video_pil_backend_bit_identical(name: str, n: int, w: int, h: int, seed: int) -> None:
    layout = Layout.preset(
        name,
        backend="pil",
        video={"min_pixels": 1, "max_pixels": 60_000, "fps": None, "min_frames": 1},
    )
    if (name == "qwen3_vl" and n < 2) or max(w, h) / min(w, h) > 200:
        return
    frames = [content("noise", w, h, 3, seed + i) for i in range(n)]
    want, grid = qwen_video_reference(layout, frames, fps=2.0)
    out = layout.video_pixel_values(frames, fps=2.0)
    assert out.grid_thw.tolist() == [grid]
    assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
    assert out.num_tokens == [grid[0] * grid[1] * grid[2] // 4]


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_two_identical_frames_equal_the_image(backend: str) -> None:
    layout = Layout.preset("qwen2_5_vl", backend=backend, video={"min_pixels": 3136, "max_pixels": 12845056})
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
