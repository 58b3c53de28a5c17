"""resize_bicubic against Pillow 13 `Image.resize(..., BICUBIC)`, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from images import content
from rawmm import ImageDecodeError, LayoutError, resize_bicubic

# Pillow resizes these modes channel by channel (RGBA/LA would be premultiplied first).
MODE = {1: "L", 3: "RGB", 4: "CMYK"}
size = st.integers(1, 700)


def pillow(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, MODE[arr.shape[2]])
    out = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC))
    return out[:, :, None] if out.ndim == 2 else out


def vertical_first(w: int, h: int, w2: int, h2: int) -> bool:
    return h - h2 > 0 and h - h2 > 2 * (w - w2)


@given(
    w=size,
    h=size,
    w2=size,
    h2=size,
    c=st.sampled_from([1, 3, 4]),
    kind=st.sampled_from(["noise", "gradient", "blocks"]),
    seed=st.integers(0, 99),
)
@example(w=1024, h=1024, w2=1036, h2=1036, c=3, kind="noise", seed=0)
@example(w=720, h=477, w2=728, h2=476, c=3, kind="gradient", seed=1)  # vertical-first fires
@example(w=333, h=517, w2=336, h2=504, c=3, kind="noise", seed=2)
@example(w=200, h=300, w2=28, h2=56, c=3, kind="noise", seed=3)
@example(w=20, h=30, w2=112, h2=168, c=1, kind="noise", seed=4)
@example(w=1, h=1, w2=1, h2=700, c=4, kind="noise", seed=5)
@example(w=700, h=1, w2=1, h2=1, c=3, kind="noise", seed=6)
@example(w=50, h=40, w2=50, h2=40, c=3, kind="noise", seed=7)  # unchanged: a copy
def test_matches_pillow13(w: int, h: int, w2: int, h2: int, c: int, kind: str, seed: int) -> None:
    arr = content(kind, w, h, c, seed)
    assert np.array_equal(resize_bicubic(arr, w2, h2), pillow(arr, w2, h2))
    assert np.array_equal(resize_bicubic(arr, w2, h2, threads=1), pillow(arr, w2, h2))


@given(w=size, h=size, w2=size, h2=size, seed=st.integers(0, 99))
def test_pillow12_order_is_horizontal_then_vertical(w: int, h: int, w2: int, h2: int, seed: int) -> None:
    """Pillow <= 12 always filtered horizontally first: two single-axis Pillow 13 resizes
    (each is one pass with a uint8 result) reproduce that order exactly."""
    arr = content("noise", w, h, 3, seed)
    im = (
        Image.fromarray(arr)
        .resize((w2, h), Image.Resampling.BICUBIC)
        .resize((w2, h2), Image.Resampling.BICUBIC)
    )
    assert np.array_equal(resize_bicubic(arr, w2, h2, resize_compat="pillow12"), np.asarray(im))


def test_the_pass_order_matters() -> None:
    """On the rule's own cases the two orders differ, and only Pillow 13's matches Pillow 13."""
    arr = content("noise", 333, 517, 3, 0)
    assert vertical_first(333, 517, 336, 504)
    new, old = resize_bicubic(arr, 336, 504), resize_bicubic(arr, 336, 504, resize_compat="pillow12")
    assert np.array_equal(new, pillow(arr, 336, 504)) and not np.array_equal(new, old)


def test_grey_2d_and_errors() -> None:
    arr = content("gradient", 30, 20, 1, 0)[:, :, 0]
    out = resize_bicubic(arr, 45, 7)
    assert out.shape == (7, 45) and np.array_equal(
        out, np.asarray(Image.fromarray(arr).resize((45, 7), Image.Resampling.BICUBIC))
    )
    with pytest.raises(ImageDecodeError):
        resize_bicubic(np.zeros((3, 3, 5), np.uint8), 4, 4)
    with pytest.raises(ImageDecodeError):
        resize_bicubic(np.zeros((3, 3), np.float32), 4, 4)
    with pytest.raises(LayoutError):
        resize_bicubic(np.zeros((3, 3, 3), np.uint8), 0, 4)
    with pytest.raises(LayoutError):
        resize_bicubic(np.zeros((3, 3, 3), np.uint8), 4, 4, resize_compat="pillow9")
