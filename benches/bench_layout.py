"""Layout speed from Python against transformers' Python `smart_resize`, in the same run.

make bench            (or: python benches/bench_layout.py)
"""

from __future__ import annotations

import numpy as np
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

import rawmm
from _common import median_s

N = 1_000_000


def main() -> None:
    layout = rawmm.Layout.preset("qwen2_5_vl")
    k = layout.knobs
    f = k["patch_size"] * k["merge_size"]

    def ref_one() -> None:
        smart_resize(1080, 1920, factor=f, min_pixels=k["min_pixels"], max_pixels=k["max_pixels"])

    loops = 20_000
    t_ref = median_s(lambda: [ref_one() for _ in range(loops)], 5) / loops
    t_one = median_s(lambda: [layout.image(1920, 1080) for _ in range(loops)], 5) / loops
    print(
        f"layout.image per call: rawmm {t_one * 1e9:.0f} ns, "
        f"transformers smart_resize {t_ref * 1e9:.0f} ns "
        f"({t_ref / t_one:.1f}x)"
    )

    rng = np.random.default_rng(0)
    sizes = np.stack([rng.integers(1, 8000, N), rng.integers(1, 8000, N)], axis=1)
    sizes = sizes[np.maximum(sizes[:, 0], sizes[:, 1]) / np.minimum(sizes[:, 0], sizes[:, 1]) <= 200]
    n = len(sizes)
    t_vec = median_s(lambda: layout.images(sizes), 5)
    pairs = sizes.tolist()
    t_py = median_s(
        lambda: [
            smart_resize(h, w, factor=f, min_pixels=k["min_pixels"], max_pixels=k["max_pixels"])
            for w, h in pairs
        ],
        1,
        warmup=0,
    )
    print(
        f"layout.images per size ({n} sizes): rawmm {t_vec / n * 1e9:.1f} ns, "
        f"transformers smart_resize loop {t_py / n * 1e9:.0f} ns ({t_py / t_vec:.0f}x)"
    )


if __name__ == "__main__":
    main()
