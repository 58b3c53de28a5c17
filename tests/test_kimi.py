"""Kimi K2.5 pixel_values against an independent reference built from the spec with Pillow
and numpy (Moonshot's processor is not installable here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from images import make_image, seeds
from rawmm import Layout
from rawmm.hf import ImageProcessor

P, M, LIMIT, SIDE = 14, 2, 16384, 512


def kimi_reference(im: Image.Image, limit: int = LIMIT) -> tuple[np.ndarray, list[int]]:
    """layout.md §6 and pixels.md §5, transcribed: navit resize, zero pad, normalise, raster."""
    w, h = im.size
    nw, nh = max(1.0, w // P), max(1.0, h // P)
    s = min(1.0, math.sqrt(limit / (nw * nh)), SIDE * P / w, SIDE * P / h)
    rw, rh = min(max(1, int(w * s)), SIDE * P), min(max(1, int(h * s)), SIDE * P)
    if (rw, rh) != (w, h):
        im = im.resize((rw, rh), Image.Resampling.BICUBIC)
    f = M * P
    pw, ph = rw + (f - rw % f) % f, rh + (f - rh % f) % f
    arr = np.zeros((ph, pw, 3), np.uint8)
    arr[:rh, :rw] = np.asarray(im)
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    y = (x - np.float32(0.5)) / np.float32(0.5)
    gh, gw = ph // P, pw // P
    patches = y.reshape(gh, P, gw, P, 3).transpose(0, 2, 4, 1, 3).reshape(gh * gw, 3, P, P)
    return patches, [1, gh, gw]


def composite(im: Image.Image) -> Image.Image:
    """transformers' PIL-path rule (the preset's `composite_white`)."""
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return im.convert("RGB")


@settings(max_examples=60)
@given(
    w=st.integers(1, 1500),
    h=st.integers(1, 1500),
    mode=st.sampled_from(["RGB", "RGBA", "L", "P+tRNS", "LA"]),
    seed=seeds,
)
@example(w=10, h=10, mode="RGB", seed=0)  # padded to 28×28, −1.0 padding
@example(w=1024, h=1024, mode="RGB", seed=1)
@example(w=8000, h=100, mode="RGB", seed=2)  # per-side limit 7168
@example(w=4000, h=3000, mode="RGB", seed=3)  # downscaled by the patch budget
@example(w=1, h=1, mode="L", seed=4)
def test_kimi_bit_identical(w: int, h: int, mode: str, seed: int) -> None:
    layout = Layout.preset("kimi_k25")
    im = make_image(mode, w, h, "noise", seed)
    want, grid = kimi_reference(composite(im))
    out = layout.pixel_values(im)
    assert out.pixel_values.shape == want.shape and out.pixel_values.dtype == np.float32
    assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
    assert out.grid_thw.tolist() == [grid]
    assert out.num_tokens == [grid[1] * grid[2] // 4]
    # Moonshot's own processor drops alpha: alpha_policy="drop" and the drop-in processor
    dropped, _ = kimi_reference(im.convert("RGB"))
    assert np.array_equal(layout.replace(alpha_policy="drop").pixel_values(im).pixel_values, dropped)
    hf = ImageProcessor(layout)(images=[im], return_tensors="np")
    assert set(hf) == {"pixel_values", "grid_thws"} and np.array_equal(hf["pixel_values"], dropped)


def test_kimi_padding_is_minus_one_and_batches_concatenate() -> None:
    layout = Layout.preset("kimi_k25")
    ims = [make_image("RGB", 10, 10, "flat", 0), make_image("RGB", 300, 47, "noise", 1)]
    out = layout.pixel_values(ims)
    first = out.pixel_values[:4]
    assert (first[3] == -1.0).all()  # bottom-right patch of a 10×10 image padded to 28×28
    parts = [kimi_reference(im)[0] for im in ims]
    assert np.array_equal(out.pixel_values, np.concatenate(parts))
    assert out.grid_thw.tolist() == [[1, 2, 2], [1, 4, 22]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kimi_dtypes(dtype: str) -> None:
    out = Layout.preset("kimi_k25").pixel_values(make_image("RGB", 64, 64, "noise", 3), dtype=dtype)
    assert out.pixel_values.dtype == (np.float32 if dtype == "float32" else np.uint16)
    assert out.pixel_values.shape == (36, 3, 14, 14)
