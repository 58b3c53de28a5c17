"""Issue 17 §3: the same typed answer on every path, and claims checked before allocating.

- A palette PNG whose tRNS holds more than 256 alphas: Pillow opens and loads it, but
  transformers' `convert_to_rgb` (`convert("RGBA")`) refuses it with a plain ValueError, so no
  reference processor has pixels for it. rawmm answers `ImageDecodeError` on every path,
  describe included (it reads the chunk with the header).
- A ref's claimed grid is bounded by what the layout can produce (`Layout.max_image_rows`)
  before anything is fetched or allocated: a `[1, 2**20, 2**20]` claim used to make the
  Materializer ask numpy for 4.59 PiB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from rawmm import (
    AssetStore,
    ImageDecodeError,
    Layout,
    LayoutError,
    Materializer,
    RawMMRef,
    adapter_for,
)
from rawmm.adapters import Adapter
from rawmm.pixels import decode_array
from rawmm.store import Asset

PRESETS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "kimi_k25"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def palette_png(alphas: bytes, w: int = 30, h: int = 20, interlace: int = 0) -> bytes:
    rows = b"".join(b"\0" + bytes((7 * y + x) % 256 for x in range(w)) for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, interlace))
        + _chunk(b"PLTE", bytes(range(256)) * 3)
        + _chunk(b"tRNS", alphas)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _ref(adapter: Adapter, asset: Asset, payload: dict[str, Any]) -> RawMMRef:
    """A ref of the adapter's family to a stored asset, claiming `payload`."""
    family, fingerprint, modality = adapter.family, adapter.layout.fingerprint, adapter.feature_modality
    return RawMMRef("r", family, fingerprint, modality, asset.mm_hash, asset.asset_id, payload)


def _hf_refuses(data: bytes) -> bool:
    from transformers import Qwen2VLImageProcessor

    try:
        Qwen2VLImageProcessor()(images=[Image.open(io.BytesIO(data))], return_tensors="np")
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("model", ["qwen2_5_vl", "kimi_k25"])
@pytest.mark.parametrize("n", [257, 300, 768])
def test_palette_with_too_many_alphas_is_an_image_decode_error(tmp_path: Path, model: str, n: int) -> None:
    data = palette_png(bytes(1 + i % 255 for i in range(n)))  # no zero byte: Pillow keeps them all
    assert _hf_refuses(data)  # the reference has no pixels for it either
    layout = Layout.preset(model)
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path)
    ok = adapter.describe(palette_png(b"\x80" * 10), store=store)  # a ref of the right shape
    asset = store.put(data)
    ref = _ref(adapter, asset, ok.payload)
    for call in (
        lambda: adapter.describe(data, store=store),
        lambda: adapter.materialize(ref, store=store),
        lambda: Materializer(adapter, store, processor_id="p").materialize([ref.to_string()]),
        lambda: layout.pixel_values(data),
        lambda: layout.pixel_values(Image.open(io.BytesIO(data))),
        lambda: decode_array(data, exif=True, composite=True),
    ):
        with pytest.raises(ImageDecodeError, match="palette"):
            call()


def test_palette_with_256_alphas_still_decodes() -> None:
    data = palette_png(bytes(1 + i % 255 for i in range(256)))
    assert not _hf_refuses(data)
    layout = Layout.preset("qwen2_5_vl")
    want = layout.pixel_values(Image.open(io.BytesIO(data)).convert("RGBA")).pixel_values
    assert np.array_equal(layout.pixel_values(data).pixel_values, want)


@pytest.mark.parametrize("model", PRESETS)
@pytest.mark.parametrize("grid", [[1, 1 << 20, 1 << 20], [1, 1 << 20, 1], [1, 4096, 4096]])
def test_huge_claimed_grids_fail_before_allocating(tmp_path: Path, model: str, grid: list[int]) -> None:
    layout = Layout.preset(model)
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path)
    asset = store.put(palette_png(b"\x80" * 10))
    key = "grid_thws" if adapter.family == "kimi_k25" else "image_grid_thw"
    ref = _ref(adapter, asset, {key: [grid]})
    with (
        Materializer(adapter, store, processor_id="p") as m,
        pytest.raises(LayoutError, match="more patches"),
    ):
        m.materialize([ref.to_string()] * 4)
    with pytest.raises(LayoutError, match="more patches than any image"):
        adapter.materialize(ref, store=store)


_SIDES = st.integers(1, 40_000)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(PRESETS),
    w=_SIDES,
    h=_SIDES,
    scale=st.sampled_from([None, (8, 2), (14, 2), (16, 2), (28, 1), (32, 4)]),
    pixels=st.tuples(st.integers(1, 1 << 22), st.integers(1, 1 << 25)),
)
@example(model="qwen3_vl", w=1, h=200, scale=None, pixels=(1, 1))
@example(model="qwen3_vl", w=40_000, h=200, scale=None, pixels=(1, 1))
@example(model="kimi_k25", w=1, h=1, scale=None, pixels=(1, 1))
@example(model="kimi_k25", w=40_000, h=14, scale=None, pixels=(1, 1))
@example(model="qwen2_vl", w=1, h=200, scale=(32, 4), pixels=(1 << 22, 1 << 22))
def test_max_image_rows_bounds_every_grid(
    model: str, w: int, h: int, scale: tuple[int, int] | None, pixels: tuple[int, int]
) -> None:
    """No image size gives a grid over the bound, under the presets and random knobs (a bound
    that refused an honest grid would break materialize)."""
    layout = Layout.preset(model)
    if scale is not None:
        p, m = scale
        if layout.family == "kimi_k25":
            layout = layout.replace(patch_size=p, merge_kernel_size=m, in_patch_limit=pixels[0] // 64 + 1)
        else:
            lo, hi = sorted(pixels)
            layout = layout.replace(patch_size=p, merge_size=m, min_pixels=lo, max_pixels=hi)
    try:
        g = layout.image(w, h).grid_thw
    except LayoutError:
        return
    assert g[0] * g[1] * g[2] <= layout.max_image_rows
