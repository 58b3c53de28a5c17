"""pixel_values speed against transformers' processor of each backend, measured in the same run.

    make bench            (or: python benches/bench_pixels.py)

For a 1024x1024 and a 2048x1536 photo and a 1280x720 screenshot, the hub Qwen2.5-VL / Qwen3-VL
configs and both image backends, it prints the median time of the reference (transformers 5.24
`Qwen2VLImageProcessor` with torch 2.15 / torchvision 0.29, or `Qwen2VLImageProcessorPil` with
Pillow 13) and of rawmm at equal threads (torch.set_num_threads(1) against threads=1; all cores
against all cores), PIL image in, float32 out, as ratios; rawmm's torchvision time over its own
PIL time; rawmm against the floor any producer of a fresh array pays (allocating and filling a
float32 array of the output's size); and the peak memory a call adds beyond its output (fresh
process, VmHWM). Each function is timed in 3 rounds of back-to-back runs, the functions taking
turns, so all see the same stretch of a drifting shared machine.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import rawmm
from _common import interleaved_medians, photo, run_peak_script, screenshot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import qwen_reference

IMAGES = [("photo", 1024, 1024), ("photo", 2048, 1536), ("screenshot", 1280, 720)]
MODELS = ["qwen2_5_vl", "qwen3_vl"]
BACKENDS = ["torchvision", "pil"]
REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "5"))

PEAK_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from _common import peak_added, photo, screenshot
import rawmm

kind, w, h, model, backend = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
im = (photo if kind == "photo" else screenshot)(w, h)
layout = rawmm.Layout.preset(model, backend=backend)
layout.pixel_values(photo(64, 64))  # load everything the call needs
added, out = peak_added(lambda: layout.pixel_values(im, threads=1))
print(json.dumps({"added": added, "output": out.pixel_values.nbytes, "decoded": w * h * 3}))
"""


def peak_memory(kind: str, w: int, h: int, model: str, backend: str) -> dict[str, int]:
    return run_peak_script(PEAK_SCRIPT, kind, str(w), str(h), model, backend)


def with_torch_threads(n: int, fn: object) -> object:
    """`fn` run with torch limited to `n` threads (the PIL reference ignores it)."""
    import torch

    def run() -> object:
        torch.set_num_threads(n)
        return fn()  # type: ignore[operator]

    return run


def main() -> None:
    cores = os.cpu_count() or 1
    print(f"pixel_values, medians of 3 rounds of {REPEAT} runs taking turns; all threads = {cores} cores\n")
    head = (
        "| image | model | backend | reference 1t ms | rawmm 1t ms | ratio | reference all ms "
        "| rawmm all ms | ratio | tv/pil (rawmm 1t) | floor ms | rawmm all/floor "
        "| extra peak MB (output, decoded) | bit-exact |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for kind, w, h in IMAGES:
        im = (photo if kind == "photo" else screenshot)(w, h)
        for model in MODELS:
            t: dict[str, dict[str, float]] = {}
            exact: dict[str, bool] = {}
            for backend in BACKENDS:
                layout = rawmm.Layout.preset(model, backend=backend)
                ref = qwen_reference(layout)
                want = ref(images=[im], return_tensors="np")
                got = layout.pixel_values(im)
                exact[backend] = np.array_equal(
                    want["pixel_values"].view(np.uint32), got.pixel_values.view(np.uint32)
                )
                shape = got.pixel_values.shape
                t[backend] = interleaved_medians(
                    {
                        "ref1": with_torch_threads(1, lambda: ref(images=[im], return_tensors="np")),  # noqa: B023
                        "one": lambda: layout.pixel_values(im, threads=1),  # noqa: B023
                        "refall": with_torch_threads(cores, lambda: ref(images=[im], return_tensors="np")),  # noqa: B023
                        "all": lambda: layout.pixel_values(im),  # noqa: B023
                        "floor": lambda: np.full(shape, 1.0, dtype=np.float32),  # noqa: B023
                    },
                    REPEAT,
                )
            for backend in BACKENDS:
                m = t[backend]
                mem = peak_memory(kind, w, h, model, backend)
                extra = max(0, mem["added"] - mem["output"])
                tv_pil = t["torchvision"]["one"] / t["pil"]["one"]
                print(
                    f"| {w}x{h} {kind} | {model} | {backend} | {m['ref1'] * 1e3:.1f} | {m['one'] * 1e3:.1f} "
                    f"| {m['ref1'] / m['one']:.1f}x | {m['refall'] * 1e3:.1f} | {m['all'] * 1e3:.1f} "
                    f"| {m['refall'] / m['all']:.1f}x | {tv_pil:.2f} | {m['floor'] * 1e3:.1f} "
                    f"| {m['all'] / m['floor']:.2f}x "
                    f"| {extra / 2**20:.1f} ({mem['output'] / 2**20:.1f}, {mem['decoded'] / 2**20:.1f}) "
                    f"| {'yes' if exact[backend] else 'NO'} |"
                )


if __name__ == "__main__":
    main()
