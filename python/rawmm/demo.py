"""The README's main job: layouts and pixel_values for the bundled sample images, per family,
with a bit-exact parity column against transformers when it is installed."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .layout import Layout
from .pixels import decode

PRESETS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "kimi_k25"]


def sample_paths() -> list[Path]:
    folder = resources.files("rawmm") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith((".png", ".jpg")))


def _reference(layout: Layout) -> Any:
    """transformers' PIL processor configured like `layout`, or None without transformers."""
    if layout.family != "qwen_vl":
        return None
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    except ImportError:
        return None
    k = layout.knobs
    return Qwen2VLImageProcessorPil(
        **{key: k[key] for key in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels")},
        max_pixels=k["max_pixels"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


def run(print_: Any = print) -> list[dict[str, Any]]:
    rows = []
    cols = ("image", "model", "oriented", "resized", "grid_thw", "tokens", "pixel_values", "ms")
    header = "{:<14} {:<11} {:>9} {:>10} {:>14} {:>6} {:>16} {:>6}  parity".format(*cols)
    print_(header)
    print_("-" * len(header))
    for path in sample_paths():
        data = path.read_bytes()
        for name in PRESETS:
            layout = Layout.preset(name)
            t0 = time.perf_counter()
            out = layout.pixel_values(data)
            ms = (time.perf_counter() - t0) * 1000
            im = decode(data)  # the same decoded image the reference gets (EXIF applied)
            lay = layout.image(im.width, im.height)
            parity = "-"
            ref = _reference(layout)
            if ref is not None:
                # the preset composites alpha onto white, as transformers' PIL-object path does
                want = ref(images=[im], return_tensors="np")
                same = np.array_equal(want["pixel_values"].view(np.uint32), out.pixel_values.view(np.uint32))
                parity = (
                    "bit-exact"
                    if same and np.array_equal(want["image_grid_thw"], out.grid_thw)
                    else "DIFFERS"
                )
            row = {
                "image": path.name,
                "model": name,
                "oriented": f"{im.width}x{im.height}",
                "resized": f"{lay.resized_width}x{lay.resized_height}",
                "grid_thw": str(list(lay.grid_thw)),
                "tokens": lay.num_tokens,
                "shape": "x".join(map(str, out.pixel_values.shape)),
                "ms": ms,
                "parity": parity,
            }
            rows.append(row)
            print_(
                f"{path.name:<14} {name:<11} {row['oriented']:>9} {row['resized']:>10} "
                f"{row['grid_thw']:>14} {lay.num_tokens:>6} {row['shape']:>16} {ms:>6.1f}  {parity}"
            )
    return rows


if __name__ == "__main__":
    run()
