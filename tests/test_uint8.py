"""The uint8 wire format (issue 12): the resized bytes in patch order, and the normalize that
turns them into the layout's float32 `pixel_values`, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import BACKENDS, qwen_reference, require_torch
from images import make_image
from rawmm import Layout, LayoutError


@pytest.mark.parametrize("preset", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "kimi_k25"])
@pytest.mark.parametrize("backend", BACKENDS)
@given(w=st.integers(1, 700), h=st.integers(1, 700), seed=st.integers(0, 2**16))
def test_uint8_then_normalize_equals_float32(preset: str, backend: str, w: int, h: int, seed: int) -> None:
    layout = Layout.preset(preset)
    if layout.family == "kimi_k25":
        if backend != "pil":
            return
    else:
        layout = layout.replace(backend=backend)
    if max(w, h) / min(w, h) > 200:
        return
    images = [make_image("RGB", w, h, "noise", seed), make_image("RGBA", h, w, "gradient", seed + 1)]
    raw = layout.pixel_values(images, dtype="uint8")
    ref = layout.pixel_values(images)
    assert raw.pixel_values.dtype == np.uint8 and raw.pixel_values.shape == ref.pixel_values.shape
    assert np.array_equal(raw.grid_thw, ref.grid_thw)
    assert np.array_equal(layout.normalize(raw.pixel_values), ref.pixel_values)
    buf = np.zeros_like(raw.pixel_values)
    assert layout.pixel_values(images, dtype="uint8", out=buf).pixel_values is buf
    assert np.array_equal(buf, raw.pixel_values)


@pytest.mark.parametrize("preset", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_uint8_equals_the_processor_without_rescale_and_normalize(preset: str) -> None:
    """What vLLM's multimodal processor emits for Qwen-VL with `mm_device_do_normalize`:
    transformers' torchvision backend with do_rescale=False, do_normalize=False."""
    require_torch()
    layout = Layout.preset(preset)
    proc = qwen_reference(layout)
    for w, h in ((123, 157), (1000, 700), (30, 20)):
        im = make_image("RGB", w, h, "noise", w)
        ref = proc(images=[im], do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
        got = layout.pixel_values(im, dtype="uint8").pixel_values
        assert np.array_equal(got.astype(np.float32), ref)


def test_normalize_on_torch_tensors_and_errors() -> None:
    require_torch()
    import torch

    layout = Layout.preset("qwen2_5_vl")
    raw = layout.pixel_values(make_image("RGB", 300, 200, "noise", 3), dtype="uint8").pixel_values
    want = layout.normalize(raw)
    got = layout.normalize(torch.from_numpy(raw))
    assert got.dtype == torch.float32 and np.array_equal(got.numpy(), want)
    out = torch.empty(raw.shape, dtype=torch.float32)
    assert layout.normalize(torch.from_numpy(raw), out=out) is out and np.array_equal(out.numpy(), want)
    with pytest.raises(LayoutError):
        layout.normalize(raw.astype(np.float32))
    with pytest.raises(LayoutError):
        layout.normalize(raw[:, :-1])
    with pytest.raises(ValueError, match="videos"):
        layout.video_pixel_values([make_image("RGB", 64, 64)] * 2, dtype="uint8")
    for values in (raw, torch.from_numpy(raw)):
        with pytest.raises(ValueError, match="arithmetic"):
            layout.normalize(values, arithmetic="torch")
