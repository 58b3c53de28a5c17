"""Fresh output memory against `out=` (issue 12): `pixel_values` of a 1024x1024 photo,
Qwen2.5-VL preset, one thread.

    python benches/bench_out.py

Three ways, medians of 15 rounds interleaved: back to back with a fresh array each time (glibc
hands back the 25 MB just freed), a fresh array while other work allocates between calls (what a
trainer's loop looks like: every call faults in new pages), and `out=` into one reused array
with the same work in between.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved_medians, photo
from rawmm import Layout


def main() -> None:
    layout = Layout.preset("qwen2_5_vl")
    image = np.asarray(photo(1024, 1024))
    buf = layout.pixel_values(image, threads=1).pixel_values.copy()
    keep: list[np.ndarray] = []

    def other_work() -> None:
        # Allocate and touch 64 MiB, keep it for a moment, then free it (a batch's tensors).
        keep.append(np.ones(16 << 20, np.float32))
        if len(keep) > 2:
            keep.pop(0)

    def fresh() -> None:
        layout.pixel_values(image, threads=1)

    def fresh_amid_work() -> None:
        other_work()
        layout.pixel_values(image, threads=1)

    def into_amid_work() -> None:
        other_work()
        layout.pixel_values(image, threads=1, out=buf)

    def work_only() -> None:
        other_work()

    fns = {"fresh": fresh, "amid": fresh_amid_work, "into": into_amid_work, "work": work_only}
    t = interleaved_medians(fns, repeat=3, rounds=15)
    work = t["work"]
    print("| pixel_values, 1024x1024 photo, 1 thread | ms |")
    print("|---|---|")
    print(f"| fresh array, back to back | {t['fresh'] * 1e3:.2f} |")
    print(f"| fresh array, other work between calls | {(t['amid'] - work) * 1e3:.2f} |")
    print(f"| out= one reused array, other work between calls | {(t['into'] - work) * 1e3:.2f} |")
    print(f"\n(the other work alone, {work * 1e3:.2f} ms, is subtracted)")


if __name__ == "__main__":
    main()
