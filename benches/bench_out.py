"""Output memory and the uint8 wire format (issue 12): `pixel_values` of a 1024x1024 photo,
Qwen2.5-VL preset, one thread.

    python benches/bench_out.py

Medians of 15 interleaved rounds:
- a fresh array each call, back to back: glibc hands back the 25 MB just freed;
- a fresh array each call while the previous two batches stay alive (a trainer holds a batch
  until its step ends, and its other tensors come and go): new memory each call, whose pages the
  kernel must fault in and zero;
- `out=` into two reused arrays, taking turns, under the same pattern.

Then the wire format: `dtype="uint8"` against float32 (fresh arrays, back to back), and
`layout.normalize` (uint8 → float32, into a reused array) against the floor of writing the
float32 array (`np.full` of its shape).
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
    held: list[np.ndarray] = []
    bufs = [buf, buf.copy()]
    turn = [0]

    def fresh() -> None:
        layout.pixel_values(image, threads=1)

    def fresh_held() -> None:
        held.append(layout.pixel_values(image, threads=1).pixel_values)
        other = np.ones(4 << 20, np.float32)  # the step's other tensors
        del other
        if len(held) > 2:
            held.pop(0)

    def into_held() -> None:
        turn[0] ^= 1
        layout.pixel_values(image, threads=1, out=bufs[turn[0]])
        other = np.ones(4 << 20, np.float32)
        del other

    def other_only() -> None:
        other = np.ones(4 << 20, np.float32)
        del other

    fns = {"fresh": fresh, "held": fresh_held, "into": into_held, "other": other_only}
    t = interleaved_medians(fns, repeat=3, rounds=15)
    other = t["other"]
    print("| pixel_values, 1024x1024 photo, 1 thread | ms |")
    print("|---|---|")
    print(f"| fresh array, back to back | {t['fresh'] * 1e3:.2f} |")
    print(f"| fresh array, earlier batches held | {(t['held'] - other) * 1e3:.2f} |")
    print(f"| out= into reused arrays, same pattern | {(t['into'] - other) * 1e3:.2f} |")
    print(f"\n(the step's other allocation alone, {other * 1e3:.2f} ms, is subtracted)")

    raw = layout.pixel_values(image, threads=1, dtype="uint8").pixel_values
    into = np.empty(raw.shape, np.float32)
    fns = {
        "f32": lambda: layout.pixel_values(image, threads=1),
        "u8": lambda: layout.pixel_values(image, threads=1, dtype="uint8"),
        "norm": lambda: layout.normalize(raw, out=into, threads=1),
        "floor": lambda: np.full(raw.shape, 1.0, dtype=np.float32),
    }
    t = interleaved_medians(fns, repeat=5, rounds=9)
    print("\n| wire format, 1 thread | ms | ratio |")
    print("|---|---|---|")
    print(f"| pixel_values float32 | {t['f32'] * 1e3:.2f} | 1.00x |")
    print(f"| pixel_values uint8 | {t['u8'] * 1e3:.2f} | {t['f32'] / t['u8']:.2f}x faster |")
    print(f"| normalize uint8 → float32 | {t['norm'] * 1e3:.2f} | {t['norm'] / t['floor']:.2f}x the floor |")
    print(f"| floor: writing the float32 array | {t['floor'] * 1e3:.2f} | |")


if __name__ == "__main__":
    main()
