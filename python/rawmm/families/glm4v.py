"""GLM-4.1V, GLM-4.5V and GLM-4.6V: `Glm4vImageProcessor` / `Glm46VImageProcessor`
(torchvision) and their `...Pil` twins in transformers 5.24. Qwen2-VL's patches and
normalisation with GLM's own `smart_resize` (a short side scaled up to the factor first; an
image counts as `temporal_patch_size` frames against the pixel bounds). The Rust side is
`rust/core/src/families/glm4v.rs`. Videos follow `Glm4vVideoProcessor` /
`Glm46VVideoProcessor`: their frame sampling (computed here with numpy, as they compute it),
GLM's video `smart_resize` (Rust), Qwen2-VL's temporal packing, and `Glm4vProcessor`'s
timestamped frame groups."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._config import check_rest, fold_size, overlay
from .._presets import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..errors import LayoutError, show
from ._base import Family
from .qwen import VIDEO_IGNORED, QwenVL, qwen_knobs, read_image_config

if TYPE_CHECKING:
    from .._core import LayoutCore

# (begin_of_image, image, end_of_image): `Glm4vConfig` / `Glm46VConfig` image token ids.
GLM_IDS = (151339, 151343, 151340)
# preprocessor_config.json `size` of the released checkpoints: {shortest_edge, longest_edge}
# = (12544, 9633792) in zai-org/GLM-4.6V-Flash (Glm46VImageProcessor) and in
# zai-org/AutoGLM-Phone-9B (GLM-4.1V architecture, Glm4vImageProcessor).
GLM_PIXELS = (12544, 9633792)
# `Glm4vVideoProcessor`'s class defaults (size {shortest_edge: 112·112, longest_edge:
# 28·28·2·30000}, 2 frames a second for at most 300 s); `Glm46VVideoProcessor` has the same
# size and samples at its own duration-dependent rate (fps and max_duration unused).
GLM_VIDEO = {
    "min_pixels": 12544,
    "max_pixels": 47040000,
    "do_sample_frames": True,
    "fps": 2.0,
    "max_duration": 300,
}
_VIDEO_READ = ("do_sample_frames", "fps", "max_duration")
# Keys of a video config that cannot change the video layout: Qwen's, and GLM's image bound.
_VIDEO_IGNORED = {*VIDEO_IGNORED, "max_image_size"}


class Glm4v(QwenVL):
    """Qwen's payload, placeholder length and grid bound (GLM bounds `T·h̄·w̄` by the same
    pixel limits, T ≥ 1, and its short-side scale-up keeps the aspect ratio at most 200); GLM's
    own presets, tokens and configs, and no video yet."""

    name = "glm4v"
    wrapped = (("<|begin_of_image|>", "<|image|>", "<|end_of_image|>"), GLM_IDS)
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "glm4v": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, *GLM_PIXELS), GLM_VIDEO),
        "glm46v": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, *GLM_PIXELS), GLM_VIDEO),
    }
    # GLM-4.5V is `glm4v_moe` and runs `Glm4vImageProcessor`.
    model_types: ClassVar[dict[str, str]] = {"glm4v": "glm4v", "glm4v_moe": "glm4v", "glm46v": "glm46v"}
    processor_types: ClassVar[dict[str, str]] = {
        "Glm4vImageProcessor": "glm4v",
        "Glm4vImageProcessorPil": "glm4v",
        "Glm46VImageProcessor": "glm46v",
        "Glm46VImageProcessorPil": "glm46v",
    }

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        video = dict(preset_video)
        if video_cfg is not None and video_cfg is not cfg:
            where = "video config"
            video["min_pixels"], video["max_pixels"] = fold_size(
                video_cfg, (video["min_pixels"], video["max_pixels"]), where
            )
            overlay(video, video_cfg, _VIDEO_READ)
            check_rest(video_cfg, {"size", "min_pixels", "max_pixels", *_VIDEO_READ, *_VIDEO_IGNORED}, where)
        return read_image_config(cfg, preset, backend), video

    def check_video(self, video: Mapping[str, Any]) -> None:
        if video["fps"] is None:
            raise LayoutError("glm4v video fps must be a number")

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        """GLM-V's video processor and `Glm4vProcessor.replace_video_token`: frames sampled by
        the model's rule from `n` frames at `fps` (metadata without a duration), an even count;
        one `<|begin_of_image|>` group of `<|image|>` tokens per two frames, followed by its
        first frame's time (`int(t)` for GLM-4.1V/4.5V, `f"{t:.1f} seconds"` for GLM-4.6V)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LayoutError(f"num_frames must be a positive int, got {show(n)}")
        if not video["do_sample_frames"]:
            # transformers keeps no frame indices then, and `Glm4vProcessor` cannot time them.
            raise LayoutError(
                "glm4v video layouts need do_sample_frames: unsampled frames have no timestamps"
            )
        sample = _glm46v_frames if model == "glm46v" else _glm4v_frames
        indices = sample(n, fps, video)
        rh, rw, (grid_t, gh, gw), k = core.glm_video(
            len(indices), w, h, video["min_pixels"], video["max_pixels"]
        )
        # Glm4vProcessor: every other frame's time, one per group, the last repeated if short.
        stamps = [i / fps for i in indices][::2][:grid_t]
        stamps += [stamps[-1]] * (grid_t - len(stamps))
        group = f"<|begin_of_image|>{'<|image|>' * k}<|end_of_image|>"
        text = "".join(group + (f"{s:.1f} seconds" if model == "glm46v" else str(int(s))) for s in stamps)
        return {
            "frame_indices": indices,
            "resized_width": rw,
            "resized_height": rh,
            "grid_thw": (grid_t, gh, gw),
            "chunks": None,
            "num_tokens": grid_t * k,
            "placeholder_text": text,
            "second_per_grid_ts": None,
        }

    # `QwenVL` derives these per model; GLM's are fixed.
    placeholder_text = Family.placeholder_text
    placeholder_token_ids = Family.placeholder_token_ids
    image_pad_token_id = Family.image_pad_token_id


def _glm4v_frames(n: int, fps: float, video: Mapping[str, Any]) -> list[int]:
    """`Glm4vVideoProcessor.sample_frames`."""
    max_idx = n - 1
    duration = round(max_idx / fps) + 1
    req = video["fps"]
    if duration <= video["max_duration"]:
        k = max(math.floor(duration * req), 1)
        idx = [min(max_idx, math.ceil(i * fps / req)) for i in range(k)]
    else:
        samples = int(video["max_duration"] * req)
        if samples >= n:
            idx = list(range(n))
        else:
            idx = [min(max_idx, math.ceil(t * fps)) for t in np.linspace(0, duration, samples, endpoint=True)]
    return _unique_even(idx)


def _glm46v_frames(n: int, fps: float, video: Mapping[str, Any]) -> list[int]:
    """`Glm46VVideoProcessor.sample_frames` (temporal_patch_size 2): a rate that falls with
    the duration, at most 640 frames."""
    max_idx = n - 1
    duration = round(max_idx / fps) + 1
    effective = min(duration, 2400)
    rate = 3 if effective <= 30 else 1 if effective <= 300 else 0.5
    extract = min(int(effective * rate * 2), 640)
    max_second = int(duration)
    idx: list[int]
    if n < extract:
        idx = np.linspace(0, n - 1, extract, dtype=int).tolist()
    else:
        idx, current, inv = [], 0.0, 1 / (2 * rate)
        for i in range(n):
            if i * (1 / fps) >= current:
                current += inv
                idx.append(i)
                if current >= max_second:
                    break
    if len(idx) < extract:
        start, end = (0, max(n - 1, 0)) if not idx else (idx[0], idx[-1])
        idx = np.linspace(start, end, extract, dtype=int).tolist()
    elif len(idx) > extract:
        idx = np.linspace(0, n - 1, extract, dtype=int).tolist()
    return _unique_even(idx)


def _unique_even(idx: list[int]) -> list[int]:
    """First occurrences in order, the last repeated to an even count."""
    uniq = list(dict.fromkeys(int(i) for i in idx))
    if len(uniq) & 1:
        uniq.append(uniq[-1])
    return uniq


GLM4V = Glm4v()
