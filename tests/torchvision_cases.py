"""Deterministic torchvision-backend cases whose reference outputs are pinned as digests in
golden/torchvision_digests.json, so a test run without torch still checks rawmm's torchvision
path. `python tests/torchvision_cases.py` regenerates the file from the live reference
(transformers 5.24.0 with torch 2.15.0 and torchvision 0.29.2: the `torch` extra)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from images import content, make_image

DIGESTS = Path(__file__).parent / "golden" / "torchvision_digests.json"

# (preset, width, height, mode, content, seed, overrides)
IMAGE_CASES: list[tuple[str, int, int, str, str, int, dict[str, Any]]] = [
    ("qwen2_5_vl", 1024, 1024, "RGB", "noise", 1, {}),
    ("qwen2_5_vl", 720, 477, "RGB", "gradient", 2, {}),
    ("qwen2_5_vl", 333, 517, "RGBA", "noise", 3, {}),
    ("qwen2_5_vl", 1036, 1036, "RGB", "blocks", 4, {}),
    ("qwen2_5_vl", 1, 1, "L", "flat", 5, {}),
    ("qwen2_5_vl", 1, 200, "LA", "noise", 6, {}),
    ("qwen2_5_vl", 200, 1, "P+tRNS", "noise", 7, {}),
    ("qwen2_5_vl", 2100, 11, "RGB", "noise", 8, {}),
    ("qwen2_5_vl", 640, 480, "RGB", "noise", 9, {"min_pixels": 3136, "max_pixels": 23136}),
    ("qwen2_5_vl", 9, 13, "CMYK", "noise", 10, {"min_pixels": 190_000, "max_pixels": 190_010}),
    ("qwen2_vl", 1280, 720, "RGB", "blocks", 11, {}),
    ("qwen2_vl", 57, 400, "PA", "gradient", 12, {}),
    ("qwen3_vl", 1024, 1024, "RGB", "noise", 13, {}),
    ("qwen3_vl", 2048, 1536, "RGB", "gradient", 14, {}),
    ("qwen3_vl", 123, 77, "I;16", "noise", 15, {}),
    ("qwen3_vl", 300, 299, "1", "blocks", 16, {}),
    (
        "qwen3_vl",
        350,
        260,
        "RGB",
        "noise",
        17,
        {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.7, 0.013, 3.0]},
    ),
    ("qwen3_5", 1920, 1080, "RGB", "blocks", 18, {}),
    ("qwen3_5", 4000, 20, "RGB", "noise", 19, {}),
    ("qwen3_5", 77, 900, "F", "gradient", 20, {}),
]
# (preset, frames, width, height, seed)
VIDEO_CASES = [("qwen2_5_vl", 5, 320, 180, 1), ("qwen3_vl", 6, 200, 150, 2), ("qwen2_vl", 2, 64, 48, 3)]
VIDEO_KNOBS = {"min_pixels": 1, "max_pixels": 120_000, "fps": None, "min_frames": 1}


def digest(values: np.ndarray, grid: Any) -> str:
    h = hashlib.sha256(np.ascontiguousarray(values).tobytes())
    h.update(json.dumps(np.asarray(grid).tolist()).encode())
    return h.hexdigest()


def case_id(case: tuple[Any, ...]) -> str:
    return json.dumps(case, sort_keys=True)


def generate() -> dict[str, str]:
    """Digests of the live reference's outputs."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    from rawmm import Layout
    from test_video_pixels import hf_video_processor  # type: ignore[import-not-found]

    out = {}
    for case in IMAGE_CASES:
        name, w, h, mode, kind, seed, over = case
        k = Layout.preset(name, **over).knobs
        keys = ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels")
        ref = Qwen2VLImageProcessor(**{x: k[x] for x in (*keys, "image_mean", "image_std")})
        r = ref(images=[make_image(mode, w, h, kind, seed)], return_tensors="np")
        out[case_id(case)] = digest(r["pixel_values"], r["image_grid_thw"])
    for vcase in VIDEO_CASES:
        name, n, w, h, seed = vcase
        layout = Layout.preset(name, video=VIDEO_KNOBS)
        frames = [content("noise", w, h, 3, seed + i) for i in range(n)]
        v = layout.video(n, w, h, fps=2.0)
        r = hf_video_processor(layout)(
            videos=[np.stack([frames[i] for i in v.frame_indices])],
            return_tensors="np",
            input_data_format="channels_last",
        )
        out[case_id(vcase)] = digest(r["pixel_values_videos"], r["video_grid_thw"])
    return out


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    digests = generate()
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(digests)} digests to {DIGESTS}")
