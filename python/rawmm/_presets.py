"""Presets and knob tables: the hub values of every model (layout.md §1), the knob names and
types (hashing.md §5.3) and the placeholder token ids (layout.md §5). The one home of this
data: `layout.py` and `_config.py` import it, and it imports nothing of rawmm's."""

from __future__ import annotations

from typing import Any

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
RESCALE = 1 / 255

COMMON = {
    "rescale_factor": RESCALE,
    "resample": "bicubic",
    "resize_compat": "pillow13",
    "exif_policy": "apply",
    "alpha_policy": "composite_white",
}
QWEN2_VIDEO = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "do_sample_frames": False,
    "fps": None,
    "min_frames": 4,
    "max_frames": 768,
}
QWEN3_VIDEO = {
    "min_pixels": 4096,
    "max_pixels": 25165824,
    "do_sample_frames": True,
    "fps": 2.0,
    "min_frames": 4,
    "max_frames": 768,
    "cap_pixels_per_frame": False,
    "video_wrapper": "triple",
}
KIMI_VIDEO = {
    "in_patch_limit_each_frame": 4096,
    "in_patch_limit_video": None,
    "sample_fps": 2.0,
    "max_num_frames_each_video": None,
    "temporal_merge_kernel_size": 4,
    "timestamp_mode": "hh:mm:ss.fff",
}


#: Qwen image backends (api.md, Backends): which transformers image processor the pixels equal.
#: "torchvision" is what `AutoImageProcessor` returns wherever torch is installed (vLLM, SGLang,
#: trainers); "pil" is `Qwen2VLImageProcessorPil`. Kimi K2.5 has no such knob: it follows
#: Moonshot's processor, which works on Pillow images.
BACKENDS = ("torchvision", "pil")
#: A Qwen knob set without "backend" means "pil": every layout written before the knob existed
#: was PIL-exact, and a "pil" fingerprint is the one it had then (hashing.md §5.5).
LEGACY_BACKEND = "pil"


def qwen_knobs(patch: int, mean: list[float], std: list[float], lo: int, hi: int) -> dict[str, Any]:
    return {
        "patch_size": patch,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": lo,
        "max_pixels": hi,
        "image_mean": mean,
        "image_std": std,
        **COMMON,
        "backend": "torchvision",
    }


# Values of the models' published preprocessor_config.json (layout.md §1).
PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "qwen2_vl": ("qwen_vl", qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 3136, 12845056), QWEN2_VIDEO),
    "qwen2_5_vl": ("qwen_vl", qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 3136, 12845056), QWEN2_VIDEO),
    "qwen3_vl": ("qwen_vl", qwen_knobs(16, [0.5] * 3, [0.5] * 3, 65536, 16777216), QWEN3_VIDEO),
    "qwen3_5": ("qwen_vl", qwen_knobs(16, [0.5] * 3, [0.5] * 3, 65536, 16777216), QWEN3_VIDEO),
    "kimi_k25": (
        "kimi_k25",
        {
            "patch_size": 14,
            "merge_kernel_size": 2,
            "in_patch_limit": 16384,
            "patch_limit_on_one_side": 512,
            "fixed_output_tokens": None,
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
            **COMMON,
        },
        KIMI_VIDEO,
    ),
}

MODEL_TYPES = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "qwen3_5": "qwen3_5",
    "qwen3_5_moe": "qwen3_5",
    "kimi_k25": "kimi_k25",
}

VIDEO_STYLE = {"qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2_5", "qwen3_vl": "qwen3", "qwen3_5": "qwen3"}

# (start, pad, end, video pad) token ids (layout.md §5).
QWEN_IDS = (151652, 151655, 151653, 151656)
TOKEN_IDS = {
    "qwen2_vl": QWEN_IDS,
    "qwen2_5_vl": QWEN_IDS,
    "qwen3_vl": QWEN_IDS,
    "qwen3_5": (248053, 248056, 248054, 248057),
}
KIMI_IDS = {"begin": 163602, "content": 163603, "pad": 163605, "end": 163604}

INT_KNOBS = {
    "patch_size",
    "merge_size",
    "temporal_patch_size",
    "min_pixels",
    "max_pixels",
    "merge_kernel_size",
    "in_patch_limit",
    "patch_limit_on_one_side",
}
FLOAT3_KNOBS = {"image_mean", "image_std"}
STR_KNOBS = {"resample", "resize_compat", "exif_policy", "alpha_policy", "backend"}
