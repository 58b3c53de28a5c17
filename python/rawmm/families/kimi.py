"""Kimi K2.5: Moonshot's processor (Pillow-based; transformers 5.24's port reads the same
config), navit resize, raster patches padded to whole merge blocks, videos in chunks
(layout.md §6, §8; pixels.md §5). The Rust side is `rust/core/src/families/kimi.rs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .._config import check_rest, common_pixel_keys
from .._presets import COMMON
from ..errors import LayoutError, show
from ._base import Family, Tokenizer

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout

KIMI_VIDEO = {
    "in_patch_limit_each_frame": 4096,
    "in_patch_limit_video": None,
    "sample_fps": 2.0,
    "max_num_frames_each_video": None,
    "temporal_merge_kernel_size": 4,
    "timestamp_mode": "hh:mm:ss.fff",
}
KIMI_IDS = {"begin": 163602, "content": 163603, "pad": 163605, "end": 163604}

_IMAGE = ("patch_size", "in_patch_limit", "patch_limit_on_one_side", "fixed_output_tokens")
_VIDEO = (
    "in_patch_limit_each_frame",
    "in_patch_limit_video",
    "sample_fps",
    "max_num_frames_each_video",
    "temporal_merge_kernel_size",
    "timestamp_mode",
)


class KimiK25(Family):
    name = "kimi_k25"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "kimi_k25": (
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
    model_types: ClassVar[dict[str, str]] = {"kimi_k25": "kimi_k25"}
    has_backend = False
    no_backend_reason = "its reference is Moonshot's processor, which uses Pillow"
    vllm_modality = "vision_chunk"
    feature_modality = "vision_chunk"
    grid_key = "grid_thws"
    model_input_names = ("pixel_values", "grid_thws")

    def check_video(self, video: Mapping[str, Any]) -> None:
        if video["in_patch_limit_video"] is not None or video["max_num_frames_each_video"] is not None:
            raise LayoutError("in_patch_limit_video and max_num_frames_each_video are not supported in v1")
        if video["timestamp_mode"] != "hh:mm:ss.fff":
            raise LayoutError(f"timestamp_mode must be 'hh:mm:ss.fff', got {video['timestamp_mode']!r}")

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if backend not in (None, "pil"):
            raise LayoutError("kimi_k25 has no torchvision backend: it follows Moonshot's processor (Pillow)")
        knobs, video = dict(preset), dict(preset_video)
        mpc = cfg.get("media_proc_cfg")
        if mpc is not None:
            if not isinstance(mpc, Mapping):
                raise LayoutError("media_proc_cfg must be an object")
            where = "media_proc_cfg"
            for key, value in mpc.items():
                if key in _IMAGE or key in ("image_mean", "image_std", "merge_kernel_size"):
                    if value is not None or key == "fixed_output_tokens":
                        knobs[key] = value
                elif key in _VIDEO:
                    video[key] = value
                elif value is not None:
                    raise LayoutError(f"{where}: unsupported key {key!r}={value!r}")
        # The transformers 5.24 port's converted form.
        where = "preprocessor_config"
        size = cfg.get("size")
        if size is not None:
            if not isinstance(size, Mapping) or set(size) != {"max_height", "max_width"}:
                raise LayoutError(f"{where}: kimi size must be {{max_height, max_width}}, got {size!r}")
            if size["max_height"] != size["max_width"]:
                raise LayoutError(f"{where}: size max_height and max_width must be equal, got {size!r}")
            _agree(knobs, "patch_limit_on_one_side", size["max_height"], mpc, where)
        if cfg.get("max_patches") is not None:
            _agree(knobs, "in_patch_limit", cfg["max_patches"], mpc, where)
        if cfg.get("merge_size") is not None:
            _agree(knobs, "merge_kernel_size", cfg["merge_size"], mpc, where)
        for key in ("patch_size", "image_mean", "image_std"):
            if cfg.get(key) is not None:
                _agree(knobs, key, cfg[key], mpc, where)
        common_pixel_keys(cfg, knobs, where)
        handled = {
            "media_proc_cfg",
            "size",
            "max_patches",
            "merge_size",
            "patch_size",
            "image_mean",
            "image_std",
            "rescale_factor",
            "resample",
        }
        check_rest(cfg, handled, where)
        return knobs, video

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """A side never exceeds the side limit padded to f; floor(w/p) > w/(2p) keeps the
        unpadded area within 4·in_patch_limit patches, and padding (or a side clamped up to one
        pixel) adds at most f to each side."""
        m = knobs["merge_kernel_size"]
        side: int = -(-knobs["patch_limit_on_one_side"] // m) * m  # in patches, padded to the merge
        area: int = 4 * knobs["in_patch_limit"] + 2 * m * side + m * m
        return min(side * side, area)

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        return core.kimi_video(
            n,
            w,
            h,
            fps,
            in_patch_limit_each_frame=video["in_patch_limit_each_frame"],
            sample_fps=video["sample_fps"],
            temporal_merge_kernel_size=video["temporal_merge_kernel_size"],
        )

    def placeholder_text(self, model: str, n: int) -> str:
        return f"<|media_begin|>image<|media_content|>{'<|media_pad|>' * n}<|media_end|>"

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        """Needs `tokenizer` for the plain word "image"."""
        if tokenizer is None:
            raise LayoutError("kimi_k25 placeholder ids need a tokenizer to encode the word 'image'")
        word = list(tokenizer.encode("image", add_special_tokens=False))
        k = KIMI_IDS
        return [k["begin"], *word, k["content"], *([k["pad"]] * n), k["end"]]

    def image_pad_token_id(self, model: str) -> int:
        return KIMI_IDS["pad"]

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        return 1  # one <|media_pad|> before expansion; vLLM expands it

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return {"grid_thws": [list(image_layout.grid_thw)], "num_media_tokens": image_layout.num_tokens}

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        if not {"grid_thws"} <= set(payload) <= {"grid_thws", "num_media_tokens"}:
            raise LayoutError(
                f"kimi_k25 payload keys must be grid_thws [, num_media_tokens], got {sorted(payload)}"
            )
        if vllm_modality is not None and vllm_modality != "vision_chunk":
            raise LayoutError("kimi_k25 items travel under vllm_modality 'vision_chunk'")
        n = payload.get("num_media_tokens")
        if n is not None and (type(n) is not int or n < 1):
            raise LayoutError(f"num_media_tokens must be a positive int, got {show(n)}")
        return payload["grid_thws"]


def _agree(knobs: dict[str, Any], key: str, value: Any, mpc: Mapping[str, Any] | None, where: str) -> None:
    """A converted-form key must agree with media_proc_cfg when both are present."""
    theirs = None if mpc is None else mpc.get(key)

    def norm(v: Any) -> Any:
        return v[0] if isinstance(v, list | tuple) and len(v) == 2 and v[0] == v[1] else v

    if theirs is not None and norm(theirs) != norm(value):
        raise LayoutError(f"{where}: {key}={value!r} contradicts media_proc_cfg {theirs!r}")
    knobs[key] = value


KIMI_K25 = KimiK25()
