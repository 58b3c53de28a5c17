"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5: `Qwen2VLImageProcessor` (torchvision) and
`Qwen2VLImageProcessorPil`, their video processors (layout.md §4, §7; pixels.md §3, §4). The
Rust side is `rust/core/src/families/qwen.rs`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .._config import check_rest, common_pixel_keys, fold_size, overlay
from .._presets import COMMON, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..errors import LayoutError
from ._base import Family, Tokenizer, positive_ints, three_floats

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout


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
VIDEO_STYLE = {"qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2_5", "qwen3_vl": "qwen3", "qwen3_5": "qwen3"}
# (start, pad, end, video pad) token ids (layout.md §5).
QWEN_IDS = (151652, 151655, 151653, 151656)
TOKEN_IDS = {
    "qwen2_vl": QWEN_IDS,
    "qwen2_5_vl": QWEN_IDS,
    "qwen3_vl": QWEN_IDS,
    "qwen3_5": (248053, 248056, 248054, 248057),
}

_DIRECT = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
_VIDEO_READ = ("do_sample_frames", "fps", "min_frames", "max_frames", "cap_pixels_per_frame")
# Video configs repeat image keys and name their sampler; these cannot change the video layout.
VIDEO_IGNORED = {
    "image_mean",
    "image_std",
    "patch_size",
    "temporal_patch_size",
    "merge_size",
    "rescale_factor",
    "resample",
    "num_frames",
    "return_metadata",
    "video_metadata",
    "max_video_tokens",
    "device",
    "input_data_format",
    "return_tensors",
    "do_pad",
    # transformers' video processors run torchvision only; the image layout holds the backend.
    "backend",
}


class QwenVL(Family):
    name = "qwen_vl"
    # Values of the models' published preprocessor_config.json (layout.md §1).
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "qwen2_vl": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 3136, 12845056), QWEN2_VIDEO),
        "qwen2_5_vl": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 3136, 12845056), QWEN2_VIDEO),
        "qwen3_vl": (qwen_knobs(16, [0.5] * 3, [0.5] * 3, 65536, 16777216), QWEN3_VIDEO),
        "qwen3_5": (qwen_knobs(16, [0.5] * 3, [0.5] * 3, 65536, 16777216), QWEN3_VIDEO),
    }
    model_types: ClassVar[dict[str, str]] = {
        "qwen2_vl": "qwen2_vl",
        "qwen2_5_vl": "qwen2_5_vl",
        "qwen3_vl": "qwen3_vl",
        "qwen3_vl_moe": "qwen3_vl",
        "qwen3_5": "qwen3_5",
        "qwen3_5_moe": "qwen3_5",
    }
    grid_key = "image_grid_thw"

    def check_video(self, video: Mapping[str, Any]) -> None:
        if "video_wrapper" in video and video["video_wrapper"] not in ("triple", "keep_outer"):
            raise LayoutError(
                f"video_wrapper must be 'triple' or 'keep_outer', got {video['video_wrapper']!r}"
            )

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        knobs = read_image_config(cfg, preset, backend)
        video = dict(preset_video) if video_cfg is None else _read_video(video_cfg, preset_video)
        return knobs, video

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """Rescaling down keeps h̄·w̄ ≤ max_pixels except where a side is clamped up to f (at
        most f·√(200·max_pixels) more, the aspect ratio being ≤ 200); rescaling up ceils each
        side, adding at most f·(h·β + w·β) + f² to min_pixels."""
        p, m = int(knobs["patch_size"]), int(knobs["merge_size"])
        f = p * m
        a = max(int(knobs["max_pixels"]), int(knobs["min_pixels"]))
        area = a + 2 * f * (math.isqrt(200 * a) + 1) + f * f
        return area // (p * p)

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        return core.qwen_video(
            n,
            w,
            h,
            fps,
            style=VIDEO_STYLE[model],
            min_pixels=video["min_pixels"],
            max_pixels=video["max_pixels"],
            do_sample_frames=video["do_sample_frames"],
            sample_fps=video["fps"],
            min_frames=video["min_frames"],
            max_frames=video["max_frames"],
            cap_pixels_per_frame=video.get("cap_pixels_per_frame", False),
            replace_triple=video.get("video_wrapper", "triple") == "triple",
        )

    def placeholder_text(self, model: str, n: int) -> str:
        return f"<|vision_start|>{'<|image_pad|>' * n}<|vision_end|>"

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        start, pad, end, _ = TOKEN_IDS[model]
        return [start, *([pad] * n), end]

    def image_pad_token_id(self, model: str) -> int:
        return TOKEN_IDS[model][1]

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        m: int = layout.knobs["merge_size"]
        return grid[0] * grid[1] * grid[2] // (m * m)

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return {"image_grid_thw": [list(image_layout.grid_thw)]}

    def call_knobs(self, kw: Mapping[str, Any]) -> dict[str, Any] | None:
        size, mean, std = (
            kw.get("size"),
            three_floats(kw.get("image_mean")),
            three_floats(kw.get("image_std")),
        )
        ints = positive_ints(kw, "patch_size", "merge_size", "temporal_patch_size")
        bounds = positive_ints(
            {
                "min_pixels": getattr(size, "shortest_edge", None),
                "max_pixels": getattr(size, "longest_edge", None),
            },
            "min_pixels",
            "max_pixels",
        )
        if ints is None or bounds is None or mean is None or std is None:
            return None
        return {**ints, **bounds, "image_mean": mean, "image_std": std}

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        if set(payload) != {"image_grid_thw"}:
            raise LayoutError(f"{self.name} payload keys must be ['image_grid_thw'], got {sorted(payload)}")
        return payload["image_grid_thw"]


def read_image_config(
    cfg: Mapping[str, Any], preset: Mapping[str, Any], backend: str | None
) -> dict[str, Any]:
    """The image knobs of a `smart_resize` family's config: `size` (or top-level min/max
    pixels), patch, merge and temporal sizes, mean and std, over the preset's values."""
    where = "preprocessor_config"
    knobs = dict(preset)
    bounds = (preset["min_pixels"], preset["max_pixels"])
    knobs["min_pixels"], knobs["max_pixels"] = fold_size(cfg, bounds, where)
    overlay(knobs, cfg, _DIRECT)
    common_pixel_keys(cfg, knobs, where)
    check_rest(cfg, {"size", "min_pixels", "max_pixels", *_DIRECT, "rescale_factor", "resample"}, where)
    if backend is not None:
        knobs["backend"] = backend
    return knobs


def _read_video(cfg: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    where = "video config"
    video = dict(preset)
    video["min_pixels"], video["max_pixels"] = fold_size(
        cfg, (preset["min_pixels"], preset["max_pixels"]), where
    )
    for key in _VIDEO_READ:
        if key in cfg and (key in preset) and (cfg[key] is not None or key == "fps"):
            video[key] = cfg[key]
    check_rest(cfg, {"size", "min_pixels", "max_pixels", *_VIDEO_READ, *VIDEO_IGNORED}, where)
    return video


QWEN_VL = QwenVL()
