"""NemotronH Omni (Nemotron 3.5 Omni): transformers 5.24's
`NemotronH_Omni_Reasoning_V3ImageProcessor`, torchvision only. A patch grid near the image's
own, scaled into `[min_num_patches, budget]` and rounded to multiples of the pixel-shuffle merge
(`round(1 / downsample_ratio)`); the image resized in float32 with torch's float bicubic (its
overshoot kept), normalised in float, cut into raster `(3, p, p)` patches. The Rust side is
`rust/core/src/families/nemotron.rs`. Video layouts are not supported yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._config import check_rest, common_pixel_keys
from .._presets import COMMON, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..errors import LayoutError
from ._base import Family, Tokenizer, positive_ints, three_floats

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout

# `NemotronH_Omni_Reasoning_V3ImageProcessor`'s class defaults.
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
# The processor's own placeholder strings; their ids are the tokenizer's (the config has none).
_TOKENS = ("<img>", "<image>", "</img>")


class NemotronHOmni(Family):
    name = "nemotron_h_omni"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "nemotron_h_omni": (NEMOTRON_IMAGE, {})
    }
    model_types: ClassVar[dict[str, str]] = {"nemotron_h_omni": "nemotron_h_omni"}
    processor_types: ClassVar[dict[str, str]] = {
        "NemotronH_Omni_Reasoning_V3ImageProcessor": "nemotron_h_omni"
    }
    default_backend = "torchvision"
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
        if backend not in (None, "torchvision"):
            raise LayoutError("nemotron_h_omni has only a torchvision backend in transformers 5.24")
        knobs = dict(preset)
        # Released checkpoints name mean and std `norm_mean` / `norm_std` (the processor reads
        # them when `image_mean` / `image_std` are absent).
        for new, old in (("image_mean", "norm_mean"), ("image_std", "norm_std")):
            value = cfg[new] if cfg.get(new) is not None else cfg.get(old)
            if value is not None:
                knobs[new] = value
        for key in (*_INTS, "downsample_ratio"):
            if cfg.get(key) is not None:
                knobs[key] = cfg[key]
        common_pixel_keys(cfg, knobs, where)
        handled = {*_INTS, "downsample_ratio", "image_mean", "image_std", "norm_mean", "norm_std"}
        check_rest(cfg, {*handled, "_downsample_factor", "rescale_factor", "resample"}, where)
        return knobs, dict(preset_video)

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """The grid rounding can add a merge row and column beyond the budget at most."""
        m = round(1 / float(knobs["downsample_ratio"]))
        budget = max(int(knobs["max_num_patches"]), int(knobs["min_num_patches"]))
        return budget + 2 * m * (int(np.sqrt(budget)) + m) + m * m

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        raise LayoutError(f"{model} video layouts are not supported yet")

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


def _one_id(tokenizer: Tokenizer, text: str) -> int:
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if len(ids) != 1:
        raise LayoutError(f"the tokenizer encodes {text!r} as {ids}, not one token")
    return int(ids[0])


NEMOTRON_H_OMNI = NemotronHOmni()
