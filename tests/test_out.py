"""`out=`: pixels written into the caller's array (issue 12), bit-identical to a fresh result."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from PIL import Image

from images import encode, make_image
from rawmm import AssetStore, Layout, LayoutError, Materializer, adapter_for


@pytest.mark.parametrize("preset", ["qwen2_5_vl", "kimi_k25"])
def test_pixel_values_into_a_given_array(preset: str) -> None:
    layout = Layout.preset(preset)
    images = [make_image("RGB", 70 + 31 * i, 50 + 17 * i, "noise", i) for i in range(3)]
    fresh = layout.pixel_values(images)
    buf = np.full(fresh.pixel_values.shape, np.nan, np.float32)
    got = layout.pixel_values(images, out=buf)
    assert got.pixel_values is buf
    assert np.array_equal(buf, fresh.pixel_values) and np.array_equal(got.grid_thw, fresh.grid_thw)
    bf = layout.pixel_values(images, dtype="bfloat16")
    for target in (
        np.zeros(bf.pixel_values.shape, np.uint16),
        np.zeros(bf.pixel_values.shape, ml_dtypes.bfloat16),
    ):
        assert layout.pixel_values(images, dtype="bfloat16", out=target).pixel_values is target
        assert np.array_equal(target.view(np.uint16), bf.pixel_values.view(np.uint16))
    shape = fresh.pixel_values.shape
    for bad in (
        np.zeros((shape[0] + 1, *shape[1:]), np.float32),
        np.zeros(shape, np.float64),
        np.zeros((shape[0], *shape[1:], 2), np.float32)[..., 0],  # not contiguous
        np.zeros(shape, np.float32).T.copy().T,
        [0.0],
    ):
        with pytest.raises(LayoutError):
            layout.pixel_values(images, out=bad)  # type: ignore[arg-type]
    frozen = np.zeros(shape, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(LayoutError, match="writable"):
        layout.pixel_values(images, out=frozen)


@pytest.mark.parametrize("preset", ["qwen2_5_vl", "kimi_k25"])
def test_materialize_and_materializer_into_one_array(preset: str, tmp_path: Path) -> None:
    layout = Layout.preset(preset)
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path / "run", run_id="r")
    data = [encode(make_image("RGB", 60 + 23 * i, 40 + 29 * i, "noise", i), "PNG") for i in range(4)]
    refs = [adapter.ref(adapter.describe(d, store=store)).to_string() for d in data]
    expected = [layout.pixel_values(d).pixel_values for d in data]
    one = np.empty_like(expected[0])
    assert adapter.materialize(refs[0], store=store, out=one).pixel_values is one
    assert np.array_equal(one, expected[0])
    batch = [refs[0], refs[1], refs[0], refs[2], refs[3]]  # a duplicate joins the first
    want = np.concatenate([expected[0], expected[1], expected[0], expected[2], expected[3]])
    for cache_bytes in (0, 1 << 30):
        with Materializer(adapter, store, processor_id="p", cache_bytes=cache_bytes, threads=2) as m:
            fresh = m.materialize(batch)
            assert np.array_equal(fresh.pixel_values, want)
            buf = np.full_like(want, np.nan)
            again = m.materialize(batch, out=buf)  # cache hits (when on) are copied in
            assert again.pixel_values is buf and np.array_equal(buf, want)
            buf[:] = 0  # the caller reuses its buffer: the cache kept its own copy
            assert np.array_equal(m.materialize(batch).pixel_values, want)
            with pytest.raises(LayoutError):
                m.materialize(batch, out=np.empty((1, *want.shape[1:]), np.float32))


def test_materializer_into_one_array_per_ref(tmp_path: Path) -> None:
    layout = Layout.preset("qwen2_5_vl")
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path / "store", run_id="t")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in [(70, 50), (33, 90), (70, 50)]]
    descriptors = [adapter.describe(encode(Image.fromarray(im)), store=store) for im in images]
    refs = [adapter.ref(d).to_string() for d in descriptors]
    want = [layout.pixel_values(im).pixel_values for im in images]
    for cache in (0, 1 << 30):
        with Materializer(adapter, store, processor_id="t", cache_bytes=cache, threads=2) as m:
            for _ in range(2):  # the second round hits the cache when it is on
                outs = [np.full(w.shape, np.nan, np.float32) for w in want]
                got = m.materialize(refs, out=outs)
                assert got.pixel_values is outs
                assert all(np.array_equal(o, w) for o, w in zip(outs, want, strict=True))
            with pytest.raises(LayoutError):
                m.materialize(refs, out=outs[:2])
            with pytest.raises(LayoutError):
                m.materialize(refs, out=[outs[1], outs[0], outs[2]])  # shapes follow the refs
            with pytest.raises(LayoutError):
                m.materialize(refs, out=[outs[0], outs[1].tolist(), outs[2]])
            with pytest.raises(LayoutError):
                m.materialize(refs, out="batch")


def test_materializer_reuses_a_batch_buffer_only_once_nothing_refers_to_it(tmp_path: Path) -> None:
    layout = Layout.preset("qwen2_5_vl")
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path / "store", run_id="t")
    rng = np.random.default_rng(5)
    images = [
        rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),
        rng.integers(0, 256, (80, 30, 3), dtype=np.uint8),
    ]
    refs = [
        adapter.ref(adapter.describe(encode(Image.fromarray(im)), store=store)).to_string() for im in images
    ]
    want = np.concatenate([layout.pixel_values(im).pixel_values for im in images])
    address = lambda a: a.__array_interface__["data"][0]  # noqa: E731
    with Materializer(adapter, store, processor_id="t", cache_bytes=0, threads=2) as m:
        first = m.materialize(refs).pixel_values
        kept = first[3:]  # a view keeps the batch's memory in use
        where = address(first)
        del first
        second = m.materialize(refs).pixel_values
        assert address(second) != where and np.array_equal(kept, want[3:])
        del kept
        third = m.materialize(refs).pixel_values  # the first batch's memory, free again
        assert address(third) == where and np.array_equal(third, want)
        assert np.array_equal(second, want)
        torch = pytest.importorskip("torch")
        held = torch.from_numpy(third)
        del third
        fourth = m.materialize(refs).pixel_values
        assert address(fourth) != where and np.array_equal(held.numpy(), want)
