"""NemotronH Omni (Nemotron 3.5 Omni): transformers 5.24's
`NemotronH_Omni_Reasoning_V3ImageProcessor`, torchvision only. A patch grid near the image's
own, scaled into `[min_num_patches, budget]` and rounded to multiples of the pixel-shuffle merge
(`round(1 / downsample_ratio)`); the image resized in float32 with torch's float bicubic (its
overshoot kept), normalised in float, cut into raster `(3, p, p)` patches. Videos follow
`NemotronH_Omni_Reasoning_V3VideoProcessor`: whole frames resized to one aspect-preserving tile
near `video_target_num_patches`, normalised as `(x / 255 − mean) / std`, stacked two by two into
tubelets. The Rust side is `rust/core/src/families/nemotron.rs`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._config import check_rest, common_pixel_keys, overlay
from .._presets import COMMON, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..errors import LayoutError
from ._base import Family, Tokenizer, positive_ints, three_floats

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout, VideoLayout

# `NemotronH_Omni_Reasoning_V3ImageProcessor`'s class defaults (transformers 5.24; the
# nvidia/NVIDIA-Nemotron-3.5 configs could not be read here). A checkpoint's own config:
# `Layout.from_preprocessor_config`.
NEMOTRON_IMAGE = {
    "patch_size": 16,
    "downsample_ratio": 0.5,
    "min_num_patches": 1024,
    "max_num_patches": 13312,
    "max_model_len": 16384,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
    **COMMON,
    "backend": "torchvision",
}
_INTS = ("patch_size", "min_num_patches", "max_num_patches", "max_model_len")
# `NemotronH_Omni_Reasoning_V3VideoProcessor`'s class defaults; its `norm_mean` / `norm_std`
# default to None (a checkpoint's config sets them): the image processor's CLIP values here.
# Frames are not sampled unless asked (`do_sample_frames`, with `num_frames` or `fps`).
NEMOTRON_VIDEO = {
    "patch_size": 16,
    "downsample_ratio": 0.5,
    "video_target_num_patches": 1024,
    "video_maintain_aspect_ratio": True,
    "temporal_patch_size": 2,
    "norm_mean": OPENAI_CLIP_MEAN,
    "norm_std": OPENAI_CLIP_STD,
    "do_sample_frames": False,
    "num_frames": None,
    "fps": None,
}
_VIDEO_READ = tuple(NEMOTRON_VIDEO)
# The processor's own placeholder strings; their ids are the tokenizer's (the config has none).
_TOKENS = ("<img>", "<image>", "</img>")


class NemotronHOmni(Family):
    name = "nemotron_h_omni"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "nemotron_h_omni": (NEMOTRON_IMAGE, NEMOTRON_VIDEO)
    }
    model_types: ClassVar[dict[str, str]] = {"nemotron_h_omni": "nemotron_h_omni"}
    processor_types: ClassVar[dict[str, str]] = {
        "NemotronH_Omni_Reasoning_V3ImageProcessor": "nemotron_h_omni"
    }
    default_backend = "torchvision"
    backends = ("torchvision",)
    resize_switch = False
    grid_key = "image_grid_hw"
    model_input_names = ("pixel_values", "image_grid_hw")

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        where = "preprocessor_config"
        knobs = dict(preset)
        # Released checkpoints name mean and std `norm_mean` / `norm_std` (the processor reads
        # them when `image_mean` / `image_std` are absent).
        for new, old in (("image_mean", "norm_mean"), ("image_std", "norm_std")):
            value = cfg[new] if cfg.get(new) is not None else cfg.get(old)
            if value is not None:
                knobs[new] = value
        overlay(knobs, cfg, (*_INTS, "downsample_ratio"))
        common_pixel_keys(cfg, knobs, where)
        handled = {*_INTS, "downsample_ratio", "image_mean", "image_std", "norm_mean", "norm_std"}
        check_rest(cfg, {*handled, "_downsample_factor", "rescale_factor", "resample"}, where)
        video = dict(preset_video)
        if video_cfg is not None and video_cfg is not cfg:
            overlay(video, video_cfg, _VIDEO_READ)
            # Its `_preprocess` reads none of these (it divides by 255 and uses norm_mean/norm_std).
            ignored = {
                "return_metadata",
                "video_metadata",
                "device",
                "size",
                "rescale_factor",
                "do_rescale",
                "do_normalize",
                "do_resize",
                "resample",
                "image_mean",
                "image_std",
            }
            check_rest(
                {k: v for k, v in video_cfg.items() if k not in ignored}, set(_VIDEO_READ), "video config"
            )
        return knobs, video

    def check_video(self, video: Mapping[str, Any]) -> None:
        for key in ("norm_mean", "norm_std"):
            v = video[key]
            if not (isinstance(v, list | tuple) and len(v) == 3 and all(type(x) in (int, float) for x in v)):
                raise LayoutError(f"video {key} must be three numbers, got {v!r}")
        t, n = video["temporal_patch_size"], video["num_frames"]
        if type(t) is not int or t < 1 or (n is not None and (type(n) is not int or n < 1)):
            raise LayoutError("video temporal_patch_size and num_frames must be positive ints")

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """The grid rounding can add a merge row and column beyond the budget at most."""
        m = round(1 / float(knobs["downsample_ratio"]))
        budget = max(int(knobs["max_num_patches"]), int(knobs["min_num_patches"]))
        return budget + 2 * m * (int(np.sqrt(budget)) + m) + m * m

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        """The video processor's frames (all of them, or sampled as transformers' default
        sampler does), its tile and `NemotronH_Omni_Reasoning_V3Processor`'s prompt: one
        `<img>…</img>` per tubelet, labelled with its frames' times."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LayoutError(f"num_frames must be a positive int, got {n!r}")
        indices, sampled = list(range(n)), False
        if video["do_sample_frames"]:
            want, rate = video["num_frames"], video["fps"]
            if want is not None and rate is not None:
                raise LayoutError("video num_frames and fps are mutually exclusive")
            if want is None and rate is not None:
                want = max(1, int(n / fps * rate))
            if want is not None:
                if want > n:
                    raise LayoutError(f"the video has {n} frames, fewer than num_frames={want}")
                indices, sampled = [i * n // want for i in range(want)], True
        p, merge = int(video["patch_size"]), round(1 / float(video["downsample_ratio"]))
        wp, hp = target_patches(video, merge, h, w)
        t = int(video["temporal_patch_size"])
        tubelets, k = -(-len(indices) // t), hp * wp // (merge * merge)
        return {
            "frame_indices": indices,
            "resized_width": wp * p,
            "resized_height": hp * p,
            "grid_thw": (tubelets, hp, wp),
            "chunks": None,
            "num_tokens": tubelets * k,
            "placeholder_text": video_prompt(
                indices, sampled, fps, tubelets, t, "<img>" + "<image>" * k + "</img>"
            ),
            "second_per_grid_ts": None,
        }

    def video_values(self, layout: Layout, values: np.ndarray, video: VideoLayout) -> np.ndarray:
        """The processor's `pixel_values_videos` `(1, tubelets, t·3, H, W)`: the core's resized
        float frames normalised as `(x / 255 − mean) / std` in float32, the last frame repeated
        to whole tubelets."""
        return pack_tubelets(values, layout.video_knobs, (video.resized_height, video.resized_width))

    def placeholder_text(self, model: str, n: int) -> str:
        begin, image, end = _TOKENS
        return begin + image * n + end

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        """Needs `tokenizer`: the ids of `<img>`, `<image>` and `</img>` are its own."""
        if tokenizer is None:
            raise LayoutError("nemotron_h_omni placeholder ids come from its tokenizer: pass tokenizer=")
        begin, image, end = (_one_id(tokenizer, t) for t in _TOKENS)
        return [begin, *([image] * n), end]

    def image_pad_token_id(self, model: str) -> int:
        raise LayoutError(
            "nemotron_h_omni's <image> id is its tokenizer's: use placeholder_token_ids(tokenizer=)"
        )

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        m = round(1 / float(layout.knobs["downsample_ratio"]))
        return grid[0] * grid[1] * grid[2] // (m * m)

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return {"image_grid_thw": [list(image_layout.grid_thw)]}

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        if set(payload) != {"image_grid_thw"}:
            raise LayoutError(
                f"nemotron_h_omni payload keys must be ['image_grid_thw'], got {sorted(payload)}"
            )
        return payload["image_grid_thw"]

    def check_normalize(self, knobs: Mapping[str, Any]) -> None:
        raise LayoutError("nemotron_h_omni resizes in float: there are no uint8 rows")

    def call_knobs(self, kw: Mapping[str, Any]) -> dict[str, Any] | None:
        ints = positive_ints(kw, *_INTS)
        mean, std, ratio = (
            three_floats(kw.get("image_mean")),
            three_floats(kw.get("image_std")),
            kw.get("downsample_ratio"),
        )
        if kw.get("do_normalize") is not True or ints is None or mean is None or std is None:
            return None
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio > 0:
            return None
        return {**ints, "downsample_ratio": float(ratio), "image_mean": mean, "image_std": std}

    def hf_outputs(self, layout: Layout, pixel_values: Any, grids: np.ndarray) -> dict[str, Any]:
        """The processor's keys: `pixel_values` and `image_grid_hw` (images, 2)."""
        grids = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
        return {"pixel_values": pixel_values, "image_grid_hw": np.ascontiguousarray(grids[:, 1:])}

    def grid_outputs(self, layout: Layout, grids: np.ndarray) -> dict[str, Any]:
        """Also the keys renderers 0.1.12's `Nemotron35Renderer` reads from NVIDIA's processor
        (remote code, not available here): `num_tokens` per image (the count transformers'
        `NemotronH_Omni_Reasoning_V3Processor` expands `<image>` to), `imgs_sizes` (the resized
        `(height, width)`) and `num_patches` (patches per image)."""
        out = super().grid_outputs(layout, grids)
        g = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
        p, m = int(layout.knobs["patch_size"]), round(1 / float(layout.knobs["downsample_ratio"]))
        out["num_tokens"] = g[:, 1] * g[:, 2] // (m * m)
        out["num_patches"] = g[:, 1] * g[:, 2]
        out["imgs_sizes"] = g[:, 1:] * p
        return out

    def rendered_grid(self, item: Mapping[str, Any]) -> tuple[int, int, int] | None:
        grid = item.get("image_grid_hw")
        if grid is None:
            return None
        h, w = (int(v) for v in np.asarray(grid).reshape(-1)[:2])
        return (1, h, w)


def target_patches(video: Mapping[str, Any], merge: int, height: int, width: int) -> tuple[int, int]:
    """`NemotronH_Omni_Reasoning_V3VideoProcessor._compute_target_patches`: `(w_patches,
    h_patches)`."""
    target = int(video["video_target_num_patches"])
    if video["video_maintain_aspect_ratio"]:
        aspect = width / max(height, 1)
        ph = max(round(math.sqrt(target / aspect)), 1)
        pw = max(round(math.sqrt(target * aspect)), 1)
        if merge > 1:
            rh, rw = ph % merge, pw % merge
            ph_up, pw_up = ph + (merge - rh if rh else 0), pw + (merge - rw if rw else 0)
            if ph_up * pw_up <= target:
                ph, pw = ph_up, pw_up
            else:
                ph, pw = max(merge, ph - rh), max(merge, pw - rw)
        return pw, ph
    side = max(merge, (int(math.sqrt(target)) // merge) * merge)
    return side, side


def video_prompt(indices: list[int], sampled: bool, fps: float, tubelets: int, t: int, group: str) -> str:
    """`NemotronH_Omni_Reasoning_V3Processor.replace_video_token` (`video_temporal_patch_dim` =
    `t`): each tubelet labelled "Frame i sampled at s seconds and frame i+1 …: "."""
    n, labels = len(indices), []
    step_ms = int(1000.0 / fps)
    for g in range(tubelets):
        parts = []
        for offset in range(t):
            i = g * t + offset
            if i >= n:
                break
            ts = indices[i] * step_ms / 1000.0 if sampled else i / fps
            parts.append(f"{'Frame' if offset == 0 else 'frame'} {i + 1} sampled at {ts:.2f} seconds")
        labels.append(" and ".join(parts) + ": ")
    return "\n".join(label + group for label in labels)


def pack_tubelets(values: np.ndarray, video: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
    """Resized float frames (any shape holding `(frames, 3, h, w)`, `size` = `(h, w)`) →
    `(1, tubelets, t·3, h, w)`."""
    if values.dtype != np.float32:
        raise LayoutError("nemotron_h_omni videos are float32")
    t = int(video["temporal_patch_size"])
    h, w = size
    frames = values.reshape(-1, 3, h, w)
    mean = np.asarray(video["norm_mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(video["norm_std"], np.float32).reshape(1, 3, 1, 1)
    frames = (frames / np.float32(255.0) - mean) / std
    pad = -len(frames) % t
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    return np.ascontiguousarray(frames.reshape(1, -1, t * 3, h, w))


def _one_id(tokenizer: Tokenizer, text: str) -> int:
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if len(ids) != 1:
        raise LayoutError(f"the tokenizer encodes {text!r} as {ids}, not one token")
    return int(ids[0])


NEMOTRON_H_OMNI = NemotronHOmni()
