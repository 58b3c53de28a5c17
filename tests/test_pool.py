"""Issue 19 §3: the Materializer's batch buffers come from one process-wide pool, bounded and
released when idle, so a Materializer built per batch reuses memory as a kept one does, and a
buffer is handed out again only once nothing refers to it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from images import encode, make_image
from rawmm import AssetStore, Layout, Materializer, RawmmError, adapter_for
from rawmm._pool import BufferPool, pool

ADAPTER = adapter_for(Layout.preset("qwen2_5_vl"))


@pytest.fixture
def refs(tmp_path: Path) -> tuple[AssetStore, list[str]]:
    store = AssetStore(tmp_path)
    blobs = [encode(make_image("RGB", 200 + 40 * i, 150, "noise", i)) for i in range(3)]
    return store, [ADAPTER.ref(ADAPTER.describe(b, store=store)).to_string() for b in blobs]


def base(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def test_a_materializer_per_batch_reuses_the_last_batchs_memory(refs: tuple[AssetStore, list[str]]) -> None:
    store, rs = refs
    pool().clear()
    with Materializer(ADAPTER, store, processor_id="p", cache_bytes=0) as m:
        first = m.materialize(rs).pixel_values
        want = first.copy()
        where = base(first)
    del first
    with Materializer(ADAPTER, store, processor_id="p", cache_bytes=0) as m:
        second = m.materialize(rs).pixel_values
    assert base(second) == where
    assert np.array_equal(second, want)


def test_memory_in_use_is_never_handed_out(refs: tuple[AssetStore, list[str]]) -> None:
    torch = pytest.importorskip("torch")
    store, rs = refs
    pool().clear()
    held = []
    with Materializer(ADAPTER, store, processor_id="p", cache_bytes=0) as m:
        a = m.materialize(rs).pixel_values
        held.append(torch.from_numpy(a[5:]))  # only a view of a view survives
        want = a.copy()
        del a
        for _ in range(3):
            with Materializer(ADAPTER, store, processor_id="p", cache_bytes=0) as other:
                b = other.materialize(rs).pixel_values
                assert not np.shares_memory(b, held[0].numpy())
                b[:] = -1  # a caller scribbling on its own batch
    assert np.array_equal(held[0].numpy(), want[5:])
    u8 = Materializer(ADAPTER, store, processor_id="p", cache_bytes=0)
    with u8:
        c = u8.materialize(rs, dtype="uint8").pixel_values
    assert c.dtype == np.uint8 and not np.shares_memory(c, held[0].numpy())


def test_bounded_by_count_and_bytes() -> None:
    p = BufferPool(max_bytes=10_000, idle_s=60, max_buffers=2)
    kept = [p.take((100,), np.float32) for _ in range(3)]  # all in use: three buffers made
    assert len(p) == 2 and p.nbytes == 800
    big = p.take((5_000,), np.float32)  # over the byte bound alone: made, never kept
    assert big.nbytes == 20_000 and p.nbytes <= 10_000
    p.take((2_000,), np.float32)  # 8,000 B: the older buffers make room
    assert p.nbytes <= 10_000
    del kept


def test_released_when_idle() -> None:
    p = BufferPool(max_bytes=1 << 20, idle_s=0.2)
    a = p.take((1000,), np.float32)
    assert len(p) == 1
    deadline = time.monotonic() + 5
    while len(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(p) == 0
    assert a.size == 1000  # the caller's array is untouched by the release
    p.take((10,), np.uint8)  # the reaper starts again with the next buffer
    assert len(p) == 1


def test_bad_settings_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("RAWMM_BUFFER_POOL_GB", "lots"), ("RAWMM_BUFFER_POOL_IDLE_S", "-1")):
        monkeypatch.setenv(var, value)
        with pytest.raises(RawmmError, match=var):
            BufferPool.from_env()
        monkeypatch.delenv(var)


def test_large_pixel_values_reuse_dropped_outputs_only() -> None:
    """`Layout.pixel_values` outputs of POOLED_BYTES or more come from the pool: a held output
    is never written again, a dropped one's memory is reused, and the values stay exact."""
    from rawmm.pixels import POOLED_BYTES

    layout = Layout.preset("qwen3_vl")
    a, b = (np.asarray(make_image("RGB", 2048, 1536, "noise", s)) for s in (1, 2))
    want_a = np.empty_like(layout.pixel_values(a, out=None).pixel_values)
    layout.pixel_values(a, out=want_a)
    assert want_a.nbytes >= POOLED_BYTES
    pool().clear()
    first = layout.pixel_values(a).pixel_values
    where = base(first)
    second = layout.pixel_values(b).pixel_values  # `first` is held: other memory
    assert not np.shares_memory(first, second)
    assert np.array_equal(first, want_a)
    del first
    third = layout.pixel_values(a).pixel_values
    assert base(third) == where and np.array_equal(third, want_a)
    small = layout.pixel_values(a[:64, :64]).pixel_values  # small outputs stay malloc's
    assert small.nbytes < POOLED_BYTES and not any(np.shares_memory(small, x) for x in (second, third))
