"""From encoded bytes to `pixel_values` (issue 12), against Pillow and transformers in the same run.

    python benches/bench_decode.py

Qwen2.5-VL hub preset, both references pinned (transformers 5.24 `Qwen2VLImageProcessor` with
torch 2.15 / torchvision 0.29, `Qwen2VLImageProcessorPil` with Pillow 13). Medians of rounds in
which the contenders take turns (`_common.interleaved_medians`).

1. PNG and JPEG decode alone: Pillow's `open` + `load` (and then `np.asarray`) against rawmm's
   decode (`pixels.decode_array`: Pillow reads the header, the Rust core decodes: the `png`
   crate, libjpeg-turbo), for screenshots and photos; pixels compared. rawmm on one thread, and
   on all cores (two libjpeg decompressors share a large JPEG; Pillow's decode has no threads).
2. `adapter.materialize(ref)` on one thread (read from a local store, BLAKE3 verify, rows
   decoded and streamed into the resize) against Pillow decode + each HF backend (torch
   limited to one thread); materialize over its own parts (decode + `pixel_values` of the
   decoded array); and the bound on the ratio that the work no producer avoids sets: the
   reference over (this decode + the resize alone + writing a fresh float32 array of the
   output's size).
   Then one JPEG on all cores against the reference on all cores (torch's threads).
3. Peak memory of one large PNG with rows streamed into the resize against decoding it whole.
4. A batch of 48 mixed refs (JPEG photos, PNG screenshots, 300..1600 px) on all cores: the
   Materializer (pixel cache off) against Pillow decode + HF torchvision at equal threads, and
   Pillow decode + HF PIL on a thread pool of that size. The Materializer four ways: kept,
   each batch dropped before the next; kept, the two previous batches held; a new Materializer
   per batch, the previous batch held (buffers come from the process-wide pool either way); and
   kept with `dtype="uint8"` (its ratio is to the float32 kept row).
"""

from __future__ import annotations

import collections
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import interleaved_medians, photo, run_peak_script, screenshot
from conftest import qwen_reference
from rawmm import AssetStore, Layout, Materializer, adapter_for, pixels, resize_bicubic

REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "5"))


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def pillow_decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def decode_section() -> None:
    print("## Decode alone\n")
    print(
        "Pillow: `open` + `load` (its image, RGB held as RGBX); + array: then `np.asarray`, the (H, W, C)\n"
        "array rawmm's decode returns.\n"
    )
    print(
        "| image | MB | Pillow ms | Pillow + array ms | rawmm 1 thread ms | ratio | ratio to + array "
        "| rawmm all cores ms | ratio | same pixels |\n" + "|---" * 10 + "|"
    )
    for name, im, fmt in [
        ("1280x720 PNG screenshot", screenshot(1280, 720), "PNG"),
        ("1920x1080 PNG screenshot", screenshot(1920, 1080), "PNG"),
        ("1024x1024 PNG photo", photo(1024, 1024), "PNG"),
        ("2048x1536 PNG photo", photo(2048, 1536), "PNG"),
        ("1024x1024 JPEG photo", photo(1024, 1024), "JPEG"),
        ("2048x1536 JPEG photo", photo(2048, 1536), "JPEG"),
        ("1280x720 JPEG screenshot", screenshot(1280, 720), "JPEG"),
    ]:
        data = encode(im, fmt)
        ours = pixels.decode_array(data, exif=True, composite=True)
        assert isinstance(ours, np.ndarray), "the Rust decoder declined"
        same = np.array_equal(ours, np.asarray(pillow_decode(data)))
        t = interleaved_medians(
            {
                "pillow": lambda data=data: pillow_decode(data),
                "array": lambda data=data: np.asarray(pillow_decode(data)),
                "rawmm": lambda data=data: pixels.decode_array(data, exif=True, composite=True, threads=1),
                "rawmm all": lambda data=data: pixels.decode_array(data, exif=True, composite=True),
            },
            REPEAT * 2,
        )
        print(
            f"| {name} | {len(data) / 1e6:.2f} | {t['pillow'] * 1e3:.1f} | {t['array'] * 1e3:.1f} "
            f"| {t['rawmm'] * 1e3:.1f} | {t['pillow'] / t['rawmm']:.2f}x | {t['array'] / t['rawmm']:.2f}x "
            f"| {t['rawmm all'] * 1e3:.1f} | {t['pillow'] / t['rawmm all']:.2f}x "
            f"| {'yes' if same else 'NO'} |"
        )


def materialize_section(store: AssetStore) -> None:
    import torch

    torch.set_num_threads(1)
    layouts = {b: Layout.preset("qwen2_5_vl", backend=b) for b in ("torchvision", "pil")}
    refs_hf = {b: qwen_reference(layout) for b, layout in layouts.items()}
    print("\n## materialize(ref), one thread\n")
    print(
        "| image | Pillow + HF tv ms | Pillow + HF PIL ms | rawmm tv ms | vs tv | rawmm PIL ms | vs PIL "
        "| rawmm tv / (decode + pixel_values) | bound vs tv | bit-exact |\n" + "|---" * 10 + "|"
    )
    for name, data in [
        ("1280x720 PNG screenshot", encode(screenshot(1280, 720), "PNG")),
        ("1920x1080 PNG screenshot", encode(screenshot(1920, 1080), "PNG")),
        ("1024x1024 JPEG photo", encode(photo(1024, 1024), "JPEG")),
        ("2048x1536 JPEG photo", encode(photo(2048, 1536), "JPEG")),
    ]:
        fns = {}
        exact = True
        for b, layout in layouts.items():
            adapter = adapter_for(layout)
            ref = adapter.ref(adapter.describe(data, store=store))
            want = refs_hf[b](images=[pillow_decode(data)], return_tensors="np")["pixel_values"]
            got = adapter.materialize(ref, store=store, threads=1).pixel_values
            exact &= np.array_equal(want.view(np.uint32), got.view(np.uint32))
            hf = refs_hf[b]
            fns[f"ref {b}"] = lambda hf=hf, data=data: hf(images=[pillow_decode(data)], return_tensors="np")
            fns[f"rawmm {b}"] = lambda a=adapter, r=ref: a.materialize(r, store=store, threads=1)
        decoded = pixels.decode_array(data, exif=True, composite=True, threads=1)
        tv = layouts["torchvision"]
        fns["decode"] = lambda data=data: pixels.decode_array(data, exif=True, composite=True, threads=1)
        fns["pixel_values"] = lambda d=decoded, tv=tv: pixels.core_pixel_values(tv, [d], threads=1)
        # What no producer of these pixels avoids: this decode, the resize alone, and writing a
        # fresh float32 array of the output's size. The reference over their sum bounds the ratio.
        rgb = np.asarray(pillow_decode(data).convert("RGB"))
        lay = tv.image(rgb.shape[1], rgb.shape[0])
        size = (lay.resized_width, lay.resized_height)
        fns["resize"] = lambda rgb=rgb, size=size: resize_bicubic(
            rgb, *size, threads=1, backend="torchvision"
        )
        fns["floor"] = lambda n=got.size: np.full(n, 1.0, np.float32)
        t = interleaved_medians(fns, REPEAT)
        parts = t["decode"] + t["pixel_values"]
        bound = t["ref torchvision"] / (t["decode"] + t["resize"] + t["floor"])
        print(
            f"| {name} | {t['ref torchvision'] * 1e3:.1f} | {t['ref pil'] * 1e3:.1f} "
            f"| {t['rawmm torchvision'] * 1e3:.1f} | {t['ref torchvision'] / t['rawmm torchvision']:.2f}x "
            f"| {t['rawmm pil'] * 1e3:.1f} | {t['ref pil'] / t['rawmm pil']:.2f}x "
            f"| {t['rawmm torchvision'] / parts:.2f} | {bound:.2f}x | {'yes' if exact else 'NO'} |"
        )


def materialize_all_cores_section(store: AssetStore) -> None:
    """One JPEG on all cores: two libjpeg decompressors share the decode, then the resize and
    pack run in bands; the reference runs torch on all cores."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    layout = Layout.preset("qwen2_5_vl", backend="torchvision")
    hf, adapter = qwen_reference(layout), adapter_for(layout)
    print(f"\n## materialize(ref), all {os.cpu_count()} cores, one JPEG\n")
    print(
        "| image | Pillow + HF tv ms | rawmm ms | ratio | rawmm one thread ms | bit-exact |\n"
        + "|---" * 6
        + "|"
    )
    for name, data in [
        ("1024x1024 JPEG photo", encode(photo(1024, 1024), "JPEG")),
        ("2048x1536 JPEG photo", encode(photo(2048, 1536), "JPEG")),
    ]:
        ref = adapter.ref(adapter.describe(data, store=store))
        want = hf(images=[pillow_decode(data)], return_tensors="np")["pixel_values"]
        got = adapter.materialize(ref, store=store).pixel_values
        exact = np.array_equal(want.view(np.uint32), got.view(np.uint32))
        t = interleaved_medians(
            {
                "ref": lambda data=data: hf(images=[pillow_decode(data)], return_tensors="np"),
                "all": lambda ref=ref: adapter.materialize(ref, store=store),
                "one": lambda ref=ref: adapter.materialize(ref, store=store, threads=1),
            },
            REPEAT,
        )
        print(
            f"| {name} | {t['ref'] * 1e3:.1f} | {t['all'] * 1e3:.1f} | {t['ref'] / t['all']:.2f}x "
            f"| {t['one'] * 1e3:.1f} | {'yes' if exact else 'NO'} |"
        )
    torch.set_num_threads(1)


PEAK_SCRIPT = r"""
import io, json, sys
sys.path.insert(0, sys.argv[1])
from _common import peak_added, screenshot
from rawmm import Layout, pixels
layout = Layout.preset("qwen2_5_vl").replace(max_pixels=1003520)
buf = io.BytesIO()
screenshot(3840, 2160).save(buf, "PNG")
data = buf.getvalue()
def run():
    if sys.argv[2] == "stream":
        return pixels.stream_pixel_values(layout, data, threads=1)
    return pixels.core_pixel_values(layout, [pixels.decode_array(data, exif=True, composite=True)], threads=1)
run()  # load everything the call needs
added, out = peak_added(run)
print(json.dumps({"added": added, "output": out.pixel_values.nbytes}))
"""


def memory_section() -> None:
    """Peak memory of one 3840x2160 PNG screenshot to pixel_values at Qwen2.5-VL with the
    common RL budget max_pixels=1003520 (a 4.6x downscale), streamed rows against decoding
    whole, each in a fresh process."""
    peaks = {how: run_peak_script(PEAK_SCRIPT, how) for how in ("stream", "whole")}
    print("\n## Peak memory beyond the output: 3840x2160 PNG, max_pixels=1003520, one thread\n")
    print("| decode | extra peak MB | output MB |\n|---|---|---|")
    labels = {"whole": "decode whole, then pixel_values", "stream": "rows streamed into the resize"}
    for how, label in labels.items():
        p = peaks[how]
        print(f"| {label} | {(p['added'] - p['output']) / 2**20:.1f} | {p['output'] / 2**20:.1f} |")


def mixed_batch() -> list[bytes]:
    rng = np.random.default_rng(12)
    out = []
    for i in range(48):
        w, h = int(rng.integers(300, 1600)), int(rng.integers(300, 1600))
        out.append(encode(photo(w, h, seed=i), "JPEG") if i % 2 else encode(screenshot(w, h, seed=i), "PNG"))
    return out


def materializer_section(store: AssetStore) -> None:
    import torch

    cores = os.cpu_count() or 1
    data = mixed_batch()
    layouts = {b: Layout.preset("qwen2_5_vl", backend=b) for b in ("torchvision", "pil")}
    refs_hf = {b: qwen_reference(layout) for b, layout in layouts.items()}
    fns = {}
    for b, layout in layouts.items():
        adapter = adapter_for(layout)
        refs = [adapter.ref(adapter.describe(d, store=store)).to_string() for d in data]
        m = Materializer(adapter, store, processor_id="bench", cache_bytes=0, threads=cores)
        fns[f"rawmm {b}"] = lambda m=m, refs=refs: m.materialize(refs)
        # The two previous batches still held: their buffers are not free.
        held: collections.deque[object] = collections.deque(maxlen=2)
        fns[f"held {b}"] = lambda m=m, refs=refs, held=held: held.append(m.materialize(refs))
        # A Materializer built for each batch (the README's `with` example), the previous
        # batch still held by the trainer.
        last: collections.deque[object] = collections.deque(maxlen=1)

        def per_batch(
            adapter: object = adapter, refs: list[str] = refs, last: collections.deque = last
        ) -> None:
            with Materializer(adapter, store, processor_id="bench", cache_bytes=0, threads=cores) as fresh:
                last.append(fresh.materialize(refs))

        fns[f"per-batch {b}"] = per_batch
        fns[f"uint8 {b}"] = lambda m=m, refs=refs: m.materialize(refs, dtype="uint8")

    def tv_loop() -> None:
        torch.set_num_threads(cores)
        for d in data:
            refs_hf["torchvision"](images=[pillow_decode(d)], return_tensors="np")

    pool = ThreadPoolExecutor(cores)

    def pil_pool() -> None:
        list(pool.map(lambda d: refs_hf["pil"](images=[pillow_decode(d)], return_tensors="np"), data))

    fns["ref torchvision"] = tv_loop
    fns["ref pil"] = pil_pool
    t = interleaved_medians(fns, max(1, REPEAT // 2))
    n = len(data)
    print(f"\n## Materializer, {n} mixed refs, {cores} threads (pixel cache off)\n")
    print(
        "| backend | reference img/s | kept | ratio | kept, 2 earlier batches held | ratio "
        "| a Materializer per batch, previous held | ratio | uint8, kept | vs float32 |\n" + "|---" * 10 + "|"
    )
    names = {"torchvision": "Pillow + HF tv, torch threads", "pil": "Pillow + HF PIL, thread pool"}
    for b, ref_name in names.items():
        ref, ours, held = t[f"ref {b}"], t[f"rawmm {b}"], t[f"held {b}"]
        per, u8 = t[f"per-batch {b}"], t[f"uint8 {b}"]
        print(
            f"| {b} ({ref_name}) | {n / ref:.1f} | {n / ours:.1f} | {ref / ours:.2f}x "
            f"| {n / held:.1f} | {ref / held:.2f}x | {n / per:.1f} | {ref / per:.2f}x "
            f"| {n / u8:.1f} | {ours / u8:.2f}x |"
        )
    pool.shutdown()


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rawmm-bench-decode-") as tmp:
        store = AssetStore(Path(tmp) / "store", run_id="bench")
        decode_section()
        materialize_section(store)
        materialize_all_cores_section(store)
        materializer_section(store)
    memory_section()
    print(f"\n({os.cpu_count()} cores, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
