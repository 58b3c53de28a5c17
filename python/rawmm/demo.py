"""The README's main job: the raw-ref round trip on the bundled sample images.

For each image and model family (Qwen: both image backends): store the bytes, describe them
(header and hash only), build the `mmraw:v2` ref, parse it back and materialize `pixel_values`;
print grid, tokens, the time of each stage and, where the reference is installed (transformers;
torch and torchvision for the torchvision backend), whether the result is bit-identical to it on
the same decoded image.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import adapter_for
from .layout import Layout
from .pixels import decode
from .refs import RawMMRef
from .store import AssetStore

PRESETS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "kimi_k25"]


def layouts() -> list[tuple[str, Layout]]:
    """(label, layout) per preset; Qwen presets once per image backend, the default first."""
    out = []
    for name in PRESETS:
        layout = Layout.preset(name)
        if layout.family == "qwen_vl":
            out += [(f"{name}/tv", layout), (f"{name}/pil", layout.replace(backend="pil"))]
        else:
            out.append((name, layout))
    return out


def sample_paths() -> list[Path]:
    folder = resources.files("rawmm") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith((".png", ".jpg")))


def reference(layout: Layout) -> Any:
    """transformers' processor of the layout's backend configured like it, or None when it is
    not installed (the torchvision one needs torch and torchvision)."""
    if layout.family != "qwen_vl":
        return None
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    cls: Any
    try:
        if layout.knobs["backend"] == "torchvision":
            import torchvision  # noqa: F401
            from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as cls
        else:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
                Qwen2VLImageProcessorPil as cls,
            )
    except ImportError:
        return None
    k = layout.knobs
    keys = (
        "patch_size",
        "merge_size",
        "temporal_patch_size",
        "min_pixels",
        "max_pixels",
        "image_mean",
        "image_std",
    )
    return cls(**{key: k[key] for key in keys})


def run(print_: Any = print) -> list[dict[str, Any]]:
    store = AssetStore(tempfile.mkdtemp(prefix="rawmm-demo-"), run_id="run_demo")
    print_(f"asset store: {store.images_dir}\n")
    cols = ("image", "model", "size", "grid_thw", "tokens", "describe", "ref", "materialize", "parity")
    line = "{:<14} {:<15} {:>9} {:>13} {:>6} {:>10} {:>8} {:>12}  {}"
    print_(line.format(*cols))
    print_("-" * 104)
    rows = []
    for path in sample_paths():
        for name, layout in layouts():
            adapter = adapter_for(layout)
            t0 = time.perf_counter()
            d = adapter.describe(
                path,
                store=AssetStore(
                    store.images_dir,
                    images_subdir="",
                    allowed_roots=[path.parent, store.images_dir],
                    run_id="demo",
                ),
            )
            t1 = time.perf_counter()
            text = adapter.ref(d).to_string()
            ref = RawMMRef.parse(text)
            t2 = time.perf_counter()
            out = adapter.materialize(ref, store=store)
            t3 = time.perf_counter()
            parity = "-" if layout.family != "qwen_vl" else "no reference installed"
            ref_proc = reference(layout)
            if ref_proc is not None:
                # the presets apply EXIF and composite alpha: give the reference that image
                want = ref_proc(images=[decode(path.read_bytes(), exif=True)], return_tensors="np")
                same = np.array_equal(want["pixel_values"].view(np.uint32), out.pixel_values.view(np.uint32))
                parity = (
                    "bit-exact"
                    if same and np.array_equal(want["image_grid_thw"], out.grid_thw)
                    else "DIFFERS"
                )
            row = {
                "image": path.name,
                "model": name,
                "grid": list(d.grid_thw),
                "tokens": d.num_tokens,
                "ref": text,
                "parity": parity,
            }
            rows.append(row)
            print_(
                line.format(
                    path.name,
                    name,
                    f"{d.width}x{d.height}",
                    str(list(d.grid_thw)),
                    d.num_tokens,
                    f"{(t1 - t0) * 1e3:.2f} ms",
                    f"{(t2 - t1) * 1e6:.0f} us",
                    f"{(t3 - t2) * 1e3:.1f} ms",
                    parity,
                )
            )
    example = str(rows[0]["ref"])
    print_(f"\nexample ref ({len(example)} characters instead of a float32 tensor):\n{example}")
    return rows


def bench(print_: Any = print, repeat: int = 7) -> None:
    """A short speed check on the bundled images; `make bench` has the full tables."""

    def med(fn: Any) -> float:
        fn()
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    store = AssetStore(tempfile.mkdtemp(prefix="rawmm-bench-"), run_id="bench")
    for path in sample_paths():
        s = AssetStore(
            store.images_dir, images_subdir="", allowed_roots=[path.parent, store.images_dir], run_id="b"
        )
        for name, layout in layouts():
            if not name.startswith(("qwen2_5_vl", "qwen3_vl/")):
                continue
            adapter = adapter_for(layout)
            t_desc = med(lambda: adapter.describe(path, store=s))  # noqa: B023
            im = decode(path.read_bytes())  # both sides get the same decoded image
            t_pix = med(lambda: layout.pixel_values(im))  # noqa: B023
            ref = reference(layout)
            msg = f"{path.name:<14} {name:<15} describe {t_desc * 1e3:7.3f} ms"
            msg += f"   pixel_values {t_pix * 1e3:7.2f} ms"
            if ref is not None:
                t_ref = med(lambda: ref(images=[im], return_tensors="np"))  # noqa: B023
                msg += f"   reference {t_ref * 1e3:7.2f} ms ({t_ref / t_pix:.1f}x)"
            print_(msg)


if __name__ == "__main__":
    run()
