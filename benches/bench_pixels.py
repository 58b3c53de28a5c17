"""pixel_values speed against the reference processor, measured in the same run.

    make bench            (or: python benches/bench_pixels.py)

For 1024x1024 and 2048x1536 photos and the hub Qwen2.5-VL / Qwen3-VL configs it prints the
median time of transformers 5.24 `Qwen2VLImageProcessorPil` (Pillow 13) and of rawmm on one
thread and on all threads, as ratios; rawmm against the floor any producer of a fresh array
pays (allocating and filling a float32 array of the output's size); and the peak memory a
call adds beyond its output (fresh process, ru_maxrss). Each function is timed in 3 rounds
of back-to-back runs, the functions taking turns, so all see the same stretch of a drifting
shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import rawmm
from _common import interleaved_medians, photo

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import qwen_reference

SIZES = [(1024, 1024), (2048, 1536)]
MODELS = ["qwen2_5_vl", "qwen3_vl"]
REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "5"))

PEAK_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from _common import photo
import rawmm

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

w, h, model = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
im = photo(w, h)
layout = rawmm.Layout.preset(model)
layout.pixel_values(photo(64, 64))  # load everything the call needs
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS:")
out = layout.pixel_values(im, threads=1)
added = status("VmHWM:") - before
print(json.dumps({"added": added, "output": out.pixel_values.nbytes, "decoded": w * h * 3}))
"""


def peak_memory(w: int, h: int, model: str) -> dict[str, int]:
    here = os.path.dirname(os.path.abspath(__file__))
    # Fixed glibc thresholds: every buffer >= 64 KiB is its own mapping, returned on free, so
    # the peak RSS counts rawmm's buffers instead of reusing memory freed earlier.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, here, str(w), str(h), model],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    cores = os.cpu_count() or 1
    print(f"pixel_values, medians of 3 rounds of {REPEAT} runs taking turns; all threads = {cores} cores\n")
    head = (
        "| image | model | reference ms | rawmm 1 thread ms | ratio | rawmm all threads ms | ratio "
        "| floor ms | rawmm/floor | extra peak MB (output MB, decoded MB) | bit-exact |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for w, h in SIZES:
        im = photo(w, h)
        for model in MODELS:
            layout = rawmm.Layout.preset(model)
            ref = qwen_reference(layout)
            want = ref(images=[im], return_tensors="np")
            got = layout.pixel_values(im)
            exact = np.array_equal(want["pixel_values"].view(np.uint32), got.pixel_values.view(np.uint32))
            shape = got.pixel_values.shape
            t = interleaved_medians(
                {
                    "ref": lambda: ref(images=[im], return_tensors="np"),  # noqa: B023
                    "one": lambda: layout.pixel_values(im, threads=1),  # noqa: B023
                    "all": lambda: layout.pixel_values(im),  # noqa: B023
                    "floor": lambda: np.full(shape, 1.0, dtype=np.float32),  # noqa: B023
                },
                REPEAT,
            )
            t_ref, t_one, t_all, t_floor = t["ref"], t["one"], t["all"], t["floor"]
            mem = peak_memory(w, h, model)
            extra = max(0, mem["added"] - mem["output"])
            print(
                f"| {w}x{h} | {model} | {t_ref * 1e3:.1f} | {t_one * 1e3:.1f} | {t_ref / t_one:.1f}x "
                f"| {t_all * 1e3:.1f} | {t_ref / t_all:.1f}x | {t_floor * 1e3:.1f} | {t_all / t_floor:.2f}x "
                f"| {extra / 2**20:.1f} ({mem['output'] / 2**20:.1f}, {mem['decoded'] / 2**20:.1f}) "
                f"| {'yes' if exact else 'NO'} |"
            )


if __name__ == "__main__":
    main()
