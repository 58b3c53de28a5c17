"""Raw-ref speed against the paths users take today, measured in the same run.

    make bench            (or: python benches/bench_refs.py)

1. describe per image (1024x1024 JPEG and PNG) against (a) renderers 0.1.12's path (decode,
   pixel hash, reference processor) and (b) a straightforward Python describe (Pillow header,
   hashlib.sha256 of the bytes, transformers' smart_resize).
2. fingerprint throughput on 1 MiB .. 64 MiB buffers against the blake3 PyPI package
   (its default single thread, and max_threads=AUTO).
3. Materializer throughput for a batch of 64 mixed images against the reference processor
   (sequential and on a thread pool of all cores).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import numpy as np
from PIL import Image
from renderers.qwen3_vl import _image_hash, _load_pil_image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

import rawmm
from _common import median_s, photo
from rawmm.adapters import Materializer, adapter_for
from rawmm.hashing import fingerprint_bytes
from rawmm.store import AssetStore

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import qwen_reference

REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "9"))


def python_describe(path: Path, k: dict) -> tuple[str, int]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
    f = k["patch_size"] * k["merge_size"]
    rh, rw = smart_resize(h, w, factor=f, min_pixels=k["min_pixels"], max_pixels=k["max_pixels"])
    return digest, (rh // k["patch_size"]) * (rw // k["patch_size"]) // 4


def bench_describe(tmp: Path) -> None:
    print("## describe, per image (Qwen3-VL preset)\n")
    print("| file | rawmm describe | (a) renderers path | ratio | (b) Python describe | ratio |")
    print("|---|---|---|---|---|---|")
    layout = rawmm.Layout.preset("qwen3_vl")
    adapter = adapter_for(layout)
    proc = qwen_reference(layout)
    store = AssetStore(tmp / "run", allowed_roots=[tmp], run_id="bench")
    im = photo(1024, 1024)
    for name, fmt in (("photo.jpg", "JPEG"), ("photo.png", "PNG")):
        path = tmp / name
        im.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        part = {"type": "image", "image": str(path)}

        def renderers_path(part=part) -> None:  # type: ignore[no-untyped-def]
            pil = _load_pil_image(part)
            _image_hash(pil)
            proc(images=[pil], return_tensors="np")

        t_raw = median_s(lambda path=path: adapter.describe(path, store=store), REPEAT * 20)
        t_a = median_s(renderers_path, max(3, REPEAT // 2))
        t_b = median_s(lambda path=path: python_describe(path, layout.knobs), REPEAT * 20)
        size = path.stat().st_size / 1e6
        print(
            f"| 1024x1024 {fmt} ({size:.2f} MB) | {t_raw * 1e3:.3f} ms "
            f"| {t_a * 1e3:.1f} ms | {t_a / t_raw:.0f}x "
            f"| {t_b * 1e3:.3f} ms | {t_b / t_raw:.1f}x |"
        )


def bench_fingerprint() -> None:
    print("\n## fingerprint throughput (GB/s)\n")
    print("| size | rawmm | blake3-py (1 thread) | ratio | blake3-py AUTO | ratio |")
    print("|---|---|---|---|---|---|")
    for mib in (1, 4, 16, 64):
        data = np.random.default_rng(mib).integers(0, 256, mib << 20, dtype=np.uint8).tobytes()
        n = max(30, 400 // mib)  # short calls: many repeats, interleaved, against VM noise
        t_raw = median_s(lambda data=data: fingerprint_bytes(data), n)
        t_one = median_s(lambda data=data: blake3.blake3(data).hexdigest(), n)
        t_auto = median_s(
            lambda data=data: blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest(), n
        )
        gb = len(data) / 1e9
        print(
            f"| {mib} MiB | {gb / t_raw:.2f} | {gb / t_one:.2f} | {t_one / t_raw:.2f}x "
            f"| {gb / t_auto:.2f} | {t_auto / t_raw:.2f}x |"
        )


def bench_materializer(tmp: Path) -> None:
    print("\n## Materializer, 64 mixed images (Qwen2.5-VL preset)\n")
    layout = rawmm.Layout.preset("qwen2_5_vl")
    adapter = adapter_for(layout)
    store = AssetStore(tmp / "run2", allowed_roots=[tmp], run_id="bench")
    rng = np.random.default_rng(0)
    refs, encoded = [], []
    for i in range(64):
        w, h = int(rng.integers(200, 1400)), int(rng.integers(200, 1400))
        im = photo(w, h, seed=i)
        fmt = "JPEG" if i % 2 else "PNG"
        buf = io.BytesIO()
        im.save(buf, fmt)
        d = adapter.describe(buf.getvalue(), store=store)
        refs.append(adapter.ref(d).to_string())
        encoded.append(buf.getvalue())
    proc = qwen_reference(layout)
    cores = os.cpu_count() or 1

    def materialize() -> None:
        with Materializer(adapter, store, processor_id="bench", cache_bytes=0, threads=cores) as m:
            m.materialize(refs)

    def reference_one(data: bytes) -> None:
        # what a server does without rawmm: decode the request's bytes, run the processor
        proc(images=[Image.open(io.BytesIO(data)).convert("RGB")], return_tensors="np")

    def reference_seq() -> None:
        for data in encoded:
            reference_one(data)

    def reference_pool() -> None:
        with ThreadPoolExecutor(cores) as ex:
            list(ex.map(reference_one, encoded))

    t_raw = median_s(materialize, 3)
    t_seq = median_s(reference_seq, 1, warmup=0)
    t_pool = median_s(reference_pool, 1, warmup=0)
    best = min(t_seq, t_pool)
    print(
        "| rawmm Materializer (read, verify, decode, pixels) | reference (decode, processor), sequential "
        "| reference, thread pool | ratio |"
    )
    print("|---|---|---|---|")
    print(
        f"| {64 / t_raw:.1f} img/s ({t_raw * 1e3:.0f} ms) | {64 / t_seq:.1f} img/s | {64 / t_pool:.1f} img/s "
        f"| {best / t_raw:.1f}x |"
    )
    print(f"\n(all {cores} cores; rawmm's cache is off, so every image is computed)")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_describe(tmp)
        bench_fingerprint()
        bench_materializer(tmp)


if __name__ == "__main__":
    main()
