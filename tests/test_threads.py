"""The GIL is released around image-sized Rust work."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rawmm import Layout, resize_bicubic


def progress_while(work) -> float:  # type: ignore[no-untyped-def]
    """Runs `work` in a thread while this thread spins; returns the fraction of the time this
    thread kept running. Stalls over 20 ms count as lost: if the Rust work held the GIL, this
    thread would be blocked for nearly the whole run (a fraction near 0)."""
    done = threading.Event()
    spent: list[float] = []

    def run() -> None:
        t0 = time.perf_counter()
        work()
        spent.append(time.perf_counter() - t0)
        done.set()

    t = threading.Thread(target=run)
    last = time.perf_counter()
    stalled = 0.0
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        if now - last > 0.02:
            stalled += now - last
        last = now
    t.join()
    return 1 - stalled / spent[0]


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_pixel_values_releases_the_gil(backend: str) -> None:
    layout = Layout.preset("qwen2_5_vl", backend=backend)
    img = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    layout.pixel_values(img, threads=1)  # warm up
    assert progress_while(lambda: [layout.pixel_values(img, threads=1) for _ in range(4)]) > 0.5


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_resize_releases_the_gil(backend: str) -> None:
    img = np.random.default_rng(1).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)

    def work() -> None:
        for _ in range(4):
            resize_bicubic(img, 2100, 1900, threads=1, backend=backend)

    assert progress_while(work) > 0.5


def test_two_threads_pack_concurrently() -> None:
    """Two Python threads packing at once are not serialised: each call's stall-free window
    overlaps the other's (checked through overlapping intervals, not wall-clock speedups)."""
    layout = Layout.preset("qwen3_vl")
    img = np.random.default_rng(2).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    spans: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(4):
            t0 = time.perf_counter()
            layout.pixel_values(img, threads=1)
            spans[i].append((t0, time.perf_counter()))

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    overlap = sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in spans[0] for b0, b1 in spans[1])
    busy = sum(b - a for a, b in spans[0])
    assert overlap > 0.5 * busy, (overlap, busy)


def test_fingerprint_releases_the_gil() -> None:
    from rawmm.hashing import fingerprint_bytes

    data = np.random.default_rng(3).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    assert progress_while(lambda: [fingerprint_bytes(data) for _ in range(8)]) > 0.5


def test_png_decode_releases_the_gil() -> None:
    import io

    from PIL import Image

    from rawmm import _core

    buf = io.BytesIO()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    data = buf.getvalue()
    assert _core.decode_png(data, "RGB") is not None

    def work() -> None:
        for _ in range(6):
            _core.decode_png(data, "RGB")

    assert progress_while(work) > 0.5

    # Rows streamed into the resize and packed (`png_pixel_values`), likewise.
    layout = Layout.preset("qwen2_5_vl")
    assert layout._core.png_pixel_values(data, "RGB", threads=1) is not None
    streamed = lambda: [layout._core.png_pixel_values(data, "RGB", threads=1) for _ in range(4)]  # noqa: E731
    assert progress_while(streamed) > 0.5


@pytest.mark.parametrize("progressive", [True, False])
def test_jpeg_decode_releases_the_gil(progressive: bool) -> None:
    """libjpeg-turbo runs with the GIL released: opening (which decodes a progressive file
    whole), whole decodes (a baseline file this large by two decompressors at once) and rows
    streamed into the resize, on one thread and on several."""
    import io

    from PIL import Image

    from rawmm import _core

    buf = io.BytesIO()
    rng = np.random.default_rng(4)
    im = Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    im.save(buf, "JPEG", progressive=progressive)
    data = buf.getvalue()
    assert _core.decode_jpeg(data, (1600, 1200), "RGB") is not None
    assert progress_while(lambda: [_core.decode_jpeg(data, (1600, 1200), "RGB") for _ in range(6)]) > 0.5
    layout = Layout.preset("qwen2_5_vl")
    for threads in (1, None):
        stream = lambda t=threads: layout._core.jpeg_pixel_values(data, (1600, 1200), "RGB", threads=t)  # noqa: E731
        assert stream() is not None
        assert progress_while(lambda s=stream: [s() for _ in range(4)]) > 0.5
