"""Knob tables shared by every family: the common pixel knobs, the knob names and types
(hashing.md §5.3) and the backends. Each family's presets, video knobs and token ids live in
its module under `families/`. This module imports nothing of rawmm's."""

from __future__ import annotations

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

#: Image backends (api.md, Backends): which transformers image processor the pixels equal.
#: "torchvision" is what `AutoImageProcessor` returns wherever torch is installed (vLLM, SGLang,
#: trainers); "pil" is the `...ImageProcessorPil` class. A family without the knob
#: (`Family.has_backend`, e.g. Kimi K2.5, whose processor works on Pillow images) is Pillow's.
BACKENDS = ("torchvision", "pil")
#: A knob set without "backend" (of a family that has it) means "pil": every layout written
#: before the knob existed was PIL-exact, and a "pil" fingerprint is the one it had then
#: (hashing.md §5.5).
LEGACY_BACKEND = "pil"


INT_KNOBS = {
    "patch_size",
    "merge_size",
    "temporal_patch_size",
    "min_pixels",
    "max_pixels",
    "merge_kernel_size",
    "in_patch_limit",
    "patch_limit_on_one_side",
    "max_soft_tokens",
    "pooling_kernel_size",
    "min_num_patches",
    "max_num_patches",
    "max_model_len",
}
FLOAT_KNOBS = {"downsample_ratio"}
BOOL_KNOBS = {"do_normalize"}
#: Knobs that may be None.
OPTIONAL_INT_KNOBS = {"fixed_output_tokens", "rescale_image_max_upscaled_long_edge"}
OPTIONAL_FLOAT_KNOBS = {"rescale_image_frac"}
FLOAT3_KNOBS = {"image_mean", "image_std"}
STR_KNOBS = {"resample", "resize_compat", "exif_policy", "alpha_policy", "backend"}
