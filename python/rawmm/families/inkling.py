"""Inkling (thinkingmachines/Inkling): transformers 5.24's `InklingImageProcessor`, torchvision
only. The image at its own size (or pre-scaled by `rescale_image_frac` with torch's uint8
Lanczos-3), cut into `p`×`p` tiles, `ceil(h/p)` rows of `w//p + 1`, each tile padded with −1.0
before normalising and stored twice: rows of `(2, p, p, 3)`, one placeholder per tile. The
Rust side is `rust/core/src/families/inkling.rs`. Inkling has no video processor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._config import check_rest
from .._presets import COMMON, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, RESCALE
from ..errors import LayoutError, show
from ._base import Family, Tokenizer, three_floats

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout

# (<|content_image|>, <|unused_200054|>): `InklingConfig`'s image_bos_token_id and
# image_token_id defaults (transformers 5.24 configuration_inkling.py).
INKLING_IDS = (200005, 200054)
_LANCZOS = 1  # PIL.Image.Resampling.LANCZOS
# `InklingImageProcessor`'s class defaults (transformers 5.24; thinkingmachines/Inkling's own
# config could not be read here): 40-pixel tiles, no pre-scale (cap 2048 when one is set), CLIP
# normalisation. A checkpoint's own config: `Layout.from_preprocessor_config`.
INKLING_IMAGE = {
    "patch_size": 40,
    "rescale_image_frac": None,
    "rescale_image_max_upscaled_long_edge": 2048,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
    **COMMON,
    "resample": "lanczos",
    "backend": "torchvision",
}
_PRESCALE = ("rescale_image_frac", "rescale_image_max_upscaled_long_edge")


class Inkling(Family):
    name = "inkling"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {"inkling": (INKLING_IMAGE, {})}
    model_types: ClassVar[dict[str, str]] = {"inkling_mm_model": "inkling"}
    processor_types: ClassVar[dict[str, str]] = {"InklingImageProcessor": "inkling"}
    default_backend = "torchvision"
    backends = ("torchvision",)
    resample = "lanczos"
    resize_switch = False
    grid_key = "image_grid_thw"
    model_input_names = ("pixel_values", "num_patches")
    channels_last = True

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
        size = cfg.get("size")
        if size is not None:
            if (
                not isinstance(size, Mapping)
                or set(size) != {"height", "width"}
                or size["height"] != size["width"]
            ):
                raise LayoutError(
                    f"{where}: inkling size must be a square {{height, width}}, got {show(size)}"
                )
            knobs["patch_size"] = size["height"]
        for key in (*_PRESCALE, "image_mean", "image_std"):
            if key in cfg and (cfg[key] is not None or key in _PRESCALE):
                knobs[key] = cfg[key]
        if cfg.get("rescale_factor") not in (None, RESCALE):
            raise LayoutError(f"{where}: rescale_factor must be 1/255, got {cfg['rescale_factor']!r}")
        resample = cfg.get("resample")
        if resample is not None and (resample != _LANCZOS or isinstance(resample, bool)):
            raise LayoutError(f"{where}: resample must be 1 (LANCZOS), got {resample!r}")
        check_rest(cfg, {"size", *_PRESCALE, "image_mean", "image_std", "rescale_factor", "resample"}, where)
        return knobs, dict(preset_video)

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """Tiles of the largest image any layout accepts (2^24 a side), pre-scale included."""
        p = int(knobs["patch_size"])
        side = 1 << 24
        return (-(-side // p)) * (side // p + 1)

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        raise LayoutError("inkling has no video processor")

    def placeholder_text(self, model: str, n: int) -> str:
        return "<|content_image|>" + "<|unused_200054|>" * n

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        begin, image = INKLING_IDS
        return [begin, *([image] * n)]

    def image_pad_token_id(self, model: str) -> int:
        return INKLING_IDS[1]

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        return grid[0] * grid[1] * grid[2]

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return {"image_grid_thw": [list(image_layout.grid_thw)]}

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        if set(payload) != {"image_grid_thw"}:
            raise LayoutError(f"inkling payload keys must be ['image_grid_thw'], got {sorted(payload)}")
        return payload["image_grid_thw"]

    def check_normalize(self, knobs: Mapping[str, Any]) -> None:
        raise LayoutError("inkling tiles are padded with -1.0 before normalising: there are no uint8 rows")

    def call_knobs(self, kw: Mapping[str, Any]) -> dict[str, Any] | None:
        size, cap, frac = (
            kw.get("size"),
            kw.get("rescale_image_max_upscaled_long_edge"),
            kw.get("rescale_image_frac"),
        )
        p = getattr(size, "height", None)
        mean, std = three_floats(kw.get("image_mean")), three_floats(kw.get("image_std"))
        if kw.get("do_normalize") is not True or mean is None or std is None:
            return None
        if not (
            isinstance(p, int) and not isinstance(p, bool) and p > 0 and getattr(size, "width", None) == p
        ):
            return None
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            return None
        if frac is not None and (isinstance(frac, bool) or not isinstance(frac, int | float) or not frac > 0):
            return None
        return {
            "patch_size": p,
            "rescale_image_frac": None if frac is None else float(frac),
            "rescale_image_max_upscaled_long_edge": cap,
            "image_mean": mean,
            "image_std": std,
        }

    def hf_outputs(self, layout: Layout, pixel_values: Any, grids: np.ndarray) -> dict[str, Any]:
        """`InklingImageProcessor`'s keys: `pixel_values` (tiles, 2, p, p, 3) and
        `num_patches`."""
        grids = np.asarray(grids, dtype=np.int64).reshape(-1, 3)
        return {"pixel_values": pixel_values, "num_patches": grids[:, 1] * grids[:, 2]}

    def rendered_grid(self, item: Mapping[str, Any]) -> tuple[int, int, int] | None:
        # Renderers ship only the tiles, whose count does not give the grid's two sides.
        return None


INKLING = Inkling()
