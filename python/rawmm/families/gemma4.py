"""Gemma 4: `Gemma4ImageProcessor` (torchvision) and `Gemma4ImageProcessorPil` in
transformers 5.24. An aspect-preserving resize to multiples of `pooling_kernel_size ·
patch_size` within `max_soft_tokens · k²` patches, raster patches of `(p, p, 3)`, each image
padded with zero rows (and position ids of -1) to that many patches; rescaled to [0, 1] and not
normalised by default. Videos (`Gemma4VideoProcessor`): sampled frames, each an image of the
video's own patch budget, normalised. The Rust side is `rust/core/src/families/gemma4.rs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._config import check_rest, common_pixel_keys, overlay
from .._presets import COMMON
from ..errors import LayoutError, show
from ._base import Family, positive_ints, three_floats

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout

# (<|image>, <|image|>, <image|>): `Gemma4Config`'s boi_token_id, image_token_id and
# eoi_token_id defaults (transformers 5.24 configuration_gemma4.py). The google/gemma-4-*
# configs themselves could not be read here (no hub access).
GEMMA4_IDS = (255999, 258880, 258882)
# `Gemma4ImageProcessor`'s class defaults (transformers 5.24; its tests call them the
# VARASP_SL280_K3 reference): patch 16, 280 soft tokens, pooling 3, rescale only (mean 0,
# std 1). A checkpoint's own config: `Layout.from_preprocessor_config`.
GEMMA4_IMAGE = {
    "patch_size": 16,
    "max_soft_tokens": 280,
    "pooling_kernel_size": 3,
    "image_mean": [0.0, 0.0, 0.0],
    "image_std": [1.0, 1.0, 1.0],
    "do_normalize": False,
    **COMMON,
    "backend": "torchvision",
}
_READ = ("patch_size", "max_soft_tokens", "pooling_kernel_size", "image_mean", "image_std", "do_normalize")
# `Gemma4VideoProcessor`'s class defaults: 32 frames sampled uniformly, 70 soft tokens a frame,
# and (unlike the image processor) normalised, with mean 0 and std 1.
GEMMA4_VIDEO = {
    "num_frames": 32,
    "do_sample_frames": True,
    "patch_size": 16,
    "max_soft_tokens": 70,
    "pooling_kernel_size": 3,
    "do_normalize": True,
    "image_mean": [0.0, 0.0, 0.0],
    "image_std": [1.0, 1.0, 1.0],
}
_VIDEO_READ = ("num_frames", "do_sample_frames", *_READ)
# The video token (`Gemma4Config.video_token_id`), between the image's begin and end tokens.
GEMMA4_VIDEO_ID = 258884


class Gemma4(Family):
    name = "gemma4"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "gemma4": (GEMMA4_IMAGE, GEMMA4_VIDEO)
    }
    model_types: ClassVar[dict[str, str]] = {"gemma4": "gemma4"}
    processor_types: ClassVar[dict[str, str]] = {
        "Gemma4ImageProcessor": "gemma4",
        "Gemma4ImageProcessorPil": "gemma4",
    }
    grid_key = "image_grid_thw"
    model_input_names = ("pixel_values", "image_position_ids", "num_soft_tokens_per_image")
    channels_last = True
    default_backend = "torchvision"
    wrapped = (("<|image>", "<|image|>", "<image|>"), GEMMA4_IDS)

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
        overlay(knobs, cfg, _READ)
        common_pixel_keys(cfg, knobs, where)
        # Gemma 4 sizes images from its patch budget: any `size` but None is refused here.
        check_rest(cfg, {*_READ, "rescale_factor", "resample"}, where)
        if backend is not None:
            knobs["backend"] = backend
        video = dict(preset_video)
        if video_cfg is not None and video_cfg is not cfg:
            where = "video config"
            overlay(video, video_cfg, _VIDEO_READ)
            common_pixel_keys(video_cfg, {}, where)
            ignored = {
                "rescale_factor",
                "resample",
                "fps",
                "return_metadata",
                "video_metadata",
                "device",
                "size",
            }
            check_rest({k: v for k, v in video_cfg.items() if k not in ignored}, set(_VIDEO_READ), where)
        return knobs, video

    def check_video(self, video: Mapping[str, Any]) -> None:
        for key in ("image_mean", "image_std"):
            v = video[key]
            if not (isinstance(v, list | tuple) and len(v) == 3 and all(type(x) in (int, float) for x in v)):
                raise LayoutError(f"video {key} must be three numbers, got {show(v)}")

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        return int(knobs["max_soft_tokens"]) * int(knobs["pooling_kernel_size"]) ** 2

    def image_rows(self, knobs: Mapping[str, Any], grid: tuple[int, int, int]) -> int:
        # Every image is padded to the whole budget.
        return self.max_image_rows(knobs)

    def check_normalize(self, knobs: Mapping[str, Any]) -> None:
        if knobs["do_normalize"]:
            raise LayoutError(
                "gemma4 with do_normalize: its padding rows are 0.0 after normalising, which uint8 "
                "rows alone cannot tell from black patches; normalise with image_position_ids"
            )

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        """`Gemma4VideoProcessor`: `num_frames` frames sampled uniformly (`i·n // num_frames`),
        each laid out as an image of the video's patch budget; the prompt has each frame's
        `mm:ss` timestamp and its own `<|image>…<image|>` group of video tokens."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LayoutError(f"num_frames must be a positive int, got {show(n)}")
        if not video["do_sample_frames"]:
            # transformers keeps no frame indices then, and `Gemma4Processor` cannot time them.
            raise LayoutError(
                "gemma4 video layouts need do_sample_frames: unsampled frames have no timestamps"
            )
        want = video["num_frames"]
        if want > n:
            raise LayoutError(f"the video has {n} frames, fewer than num_frames={want}")
        indices = [i * n // want for i in range(want)]
        frame = _video_core(video).image(w, h)
        k = frame.num_tokens
        group = f"<|image>{'<|video|>' * k}<image|>"
        stamps = [f"{int(i / fps // 60):02d}:{int(i / fps % 60):02d}" for i in indices]
        return {
            "frame_indices": indices,
            "resized_width": frame.resized_width,
            "resized_height": frame.resized_height,
            "grid_thw": (len(indices), frame.grid_thw[1], frame.grid_thw[2]),
            "chunks": None,
            "num_tokens": k * len(indices),
            "placeholder_text": " ".join(f"{t} {group}" for t in stamps),
            "second_per_grid_ts": None,
        }

    def video_core(self, layout: Layout) -> LayoutCore:
        return _video_core(layout.video_knobs, layout.knobs)

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        k: int = layout.knobs["pooling_kernel_size"]
        return grid[0] * grid[1] * grid[2] // (k * k)

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return {"image_grid_thw": [list(image_layout.grid_thw)], "num_soft_tokens": image_layout.num_tokens}

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        if not {"image_grid_thw"} <= set(payload) <= {"image_grid_thw", "num_soft_tokens"}:
            raise LayoutError(
                f"gemma4 payload keys must be image_grid_thw [, num_soft_tokens], got {sorted(payload)}"
            )
        n = payload.get("num_soft_tokens")
        if n is not None and (type(n) is not int or n < 1):
            raise LayoutError(f"num_soft_tokens must be a positive int, got {show(n)}")
        return payload["image_grid_thw"]

    def call_knobs(self, kw: Mapping[str, Any]) -> dict[str, Any] | None:
        ints = positive_ints(kw, "patch_size", "max_soft_tokens", "pooling_kernel_size")
        mean, std = three_floats(kw.get("image_mean")), three_floats(kw.get("image_std"))
        normalize = kw.get("do_normalize") is True
        if ints is None or (normalize and (mean is None or std is None)):
            return None
        if not normalize:  # unused: any value transformers accepted
            mean, std = mean or [0.0] * 3, std or [1.0] * 3
        return {**ints, "image_mean": mean, "image_std": std, "do_normalize": normalize}

    def hf_outputs(self, layout: Layout, pixel_values: Any, grids: np.ndarray) -> dict[str, Any]:
        """`Gemma4ImageProcessor`'s keys: `pixel_values` (images, max_patches, p·p·3),
        `image_position_ids` ((x, y) of each patch, -1 for padding) and
        `num_soft_tokens_per_image`."""
        k = layout.knobs
        rows = self.max_image_rows(k)
        grids = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
        values = pixel_values
        if isinstance(values, np.ndarray) and len(grids):
            values = values.reshape(len(grids), rows, -1)
        return {
            "pixel_values": values,
            "image_position_ids": position_ids(grids, rows),
            "num_soft_tokens_per_image": [int(h * w) // k["pooling_kernel_size"] ** 2 for _, h, w in grids],
        }

    def rendered_grid(self, item: Mapping[str, Any]) -> tuple[int, int, int]:
        """The grid a renderer's item implies: its position ids' extent."""
        pos = np.asarray(item["image_position_ids"]).reshape(-1, 2)
        real = pos[pos[:, 0] >= 0]
        return (1, int(real[:, 1].max()) + 1, int(real[:, 0].max()) + 1) if len(real) else (1, 0, 0)


def _video_core(video: Mapping[str, Any], knobs: Mapping[str, Any] | None = None) -> LayoutCore:
    """The core that lays out and packs one frame: the video processor's patch budget and
    normalisation, the image layout's other pixel knobs."""
    from .. import _core
    from .._presets import COMMON

    k = {**COMMON, "backend": "torchvision", **(knobs or {})}
    return _core.LayoutCore(
        "gemma4",
        image_mean=[float(v) for v in video["image_mean"]],
        image_std=[float(v) for v in video["image_std"]],
        rescale_factor=k["rescale_factor"],
        resize_compat=k["resize_compat"],
        exif_policy=k["exif_policy"],
        alpha_policy=k["alpha_policy"],
        backend=k["backend"],
        do_normalize=video["do_normalize"],
        patch_size=video["patch_size"],
        max_soft_tokens=video["max_soft_tokens"],
        pooling_kernel_size=video["pooling_kernel_size"],
    )


def position_ids(grids: np.ndarray, rows: int) -> np.ndarray:
    """int64 (images, rows, 2): each patch's (x, y) in raster order, then -1 rows."""
    out = np.full((len(grids), rows, 2), -1, dtype=np.int64)
    for i, (_, h, w) in enumerate(grids):
        ys, xs = np.divmod(np.arange(h * w, dtype=np.int64), w)
        out[i, : h * w, 0], out[i, : h * w, 1] = xs, ys
    return out


GEMMA4 = Gemma4()
