"""Layouts: presets, knob validation, config reading, placeholders (layout.md, hashing.md §5).

The arithmetic lives in the Rust core (`rawmm._core.LayoutCore`); this module validates and
names the knobs, reads preprocessor configs and builds prompt text.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._config import read_config
from ._presets import (
    BACKENDS,
    BOOL_KNOBS,
    FLOAT3_KNOBS,
    FLOAT_KNOBS,
    INT_KNOBS,
    OPTIONAL_FLOAT_KNOBS,
    OPTIONAL_INT_KNOBS,
)
from .errors import LayoutError
from .families import PRESETS, Family, Tokenizer, family
from .pixels import PixelValues, _check_options, pixel_values, to_array

if TYPE_CHECKING:
    from .pixels import ImageInput

__all__ = ["ImageLayout", "Layout", "VideoLayout"]

ImageLayout = _core.ImageLayout


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _as_float(key: str, v: object) -> float:
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating):
        raise LayoutError(f"{key} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise LayoutError(f"{key} must be finite, got {v!r}")
    return f


def _check_knobs(fam: Family, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Types per hashing.md §5.2: ints stay ints (no bools or floats), floats are floats."""
    expected = set(next(iter(fam.presets.values()))[0])
    if not fam.has_backend and "backend" in knobs:
        raise LayoutError(f"{fam.name} has no backend knob: {fam.no_backend_reason}")
    if fam.has_backend and "backend" not in knobs:
        knobs = {**knobs, "backend": fam.default_backend}
    missing, unknown = expected - set(knobs), set(knobs) - expected
    if missing or unknown:
        raise LayoutError(f"{fam.name} knobs: missing {sorted(missing)}, unknown {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key, v in knobs.items():
        if key == "merge_kernel_size" and isinstance(v, list | tuple):
            if len(v) != 2 or v[0] != v[1] or not all(_is_int(x) for x in v):
                raise LayoutError(f"merge_kernel_size must be an int or a square pair, got {v!r}")
            v = v[0]
        if key in INT_KNOBS:
            if not _is_int(v):
                raise LayoutError(f"{key} must be an int, got {v!r}")
            out[key] = int(v)
        elif key in BOOL_KNOBS:
            if not isinstance(v, bool | np.bool_):
                raise LayoutError(f"{key} must be a bool, got {v!r}")
            out[key] = bool(v)
        elif key in OPTIONAL_INT_KNOBS:
            if v is not None and not _is_int(v):
                raise LayoutError(f"{key} must be an int or None, got {v!r}")
            out[key] = None if v is None else int(v)
        elif key in OPTIONAL_FLOAT_KNOBS:
            out[key] = None if v is None else _as_float(key, v)
        elif key in FLOAT3_KNOBS:
            if isinstance(v, str | bytes) or not isinstance(v, Iterable):
                raise LayoutError(f"{key} must be three numbers, got {v!r}")
            vals = [_as_float(key, x) for x in v]
            if len(vals) != 3:
                raise LayoutError(f"{key} must be three numbers, got {v!r}")
            out[key] = vals
        elif key == "rescale_factor" or key in FLOAT_KNOBS:
            out[key] = _as_float(key, v)
        else:
            if not isinstance(v, str):
                raise LayoutError(f"{key} must be a string, got {v!r}")
            if key == "resample" and v != fam.resample:
                raise LayoutError(f"resample must be {fam.resample!r} for {fam.name}, got {v!r}")
            if key == "backend" and v not in BACKENDS:
                raise LayoutError(f"backend must be one of {list(BACKENDS)}, got {v!r}")
            out[key] = v
    return out


def _check_video(model: str, video: Mapping[str, Any]) -> dict[str, Any]:
    defaults = PRESETS[model][2]
    unknown = set(video) - set(defaults)
    if unknown:
        raise LayoutError(f"unknown video knobs for {model}: {sorted(unknown)}")
    out = {**defaults, **video}
    for key, v in out.items():
        d = defaults[key]
        if isinstance(d, bool):
            if not isinstance(v, bool):
                raise LayoutError(f"video {key} must be a bool, got {v!r}")
        elif key in ("fps", "sample_fps"):
            if v is not None or key == "sample_fps":
                out[key] = _as_float(f"video {key}", v)
                if out[key] <= 0:
                    raise LayoutError(f"video {key} must be positive, got {v!r}")
        elif isinstance(d, int) or key in ("in_patch_limit_video", "max_num_frames_each_video"):
            if v is not None and not _is_int(v):
                raise LayoutError(f"video {key} must be an int, got {v!r}")
            if v is None and isinstance(d, int):
                raise LayoutError(f"video {key} must be an int, got None")
        elif isinstance(d, str) and not isinstance(v, str):
            raise LayoutError(f"video {key} must be a string, got {v!r}")
    family(PRESETS[model][0]).check_video(out)
    return out


@dataclass(frozen=True, slots=True)
class VideoLayout:
    """Layout of one video (api.md). Qwen fills `grid_thw`; Kimi fills `chunks`."""

    frame_indices: list[int]
    resized_width: int
    resized_height: int
    grid_thw: tuple[int, int, int] | None
    chunks: list[tuple[list[int], str, tuple[int, int, int], int]] | None
    num_tokens: int
    placeholder_text: str = field(repr=False)
    second_per_grid_ts: float | None


class Layout:
    """An exact image (and video) layout for one model family; immutable."""

    __slots__ = ("_core", "_family", "_knobs", "_model", "_video")

    _core: _core.LayoutCore
    _family: Family
    _knobs: dict[str, Any]
    _model: str
    _video: dict[str, Any]

    def __init__(self, model: str, *, video: Mapping[str, Any] | None = None, **knobs: Any) -> None:
        if model not in PRESETS:
            raise LayoutError(f"unknown model {model!r}; expected one of {sorted(PRESETS)}")
        fam = family(PRESETS[model][0])
        checked = _check_knobs(fam, knobs)
        core = _core.LayoutCore(fam.name, **{k: v for k, v in checked.items() if k != "resample"})
        object.__setattr__(self, "_family", fam)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_knobs", checked)
        object.__setattr__(self, "_video", _check_video(model, video or {}))
        object.__setattr__(self, "_core", core)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Layout is immutable; use layout.replace(...)")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Layout:
        """A preset with the hub values, optionally overridden (as `replace`)."""
        if name not in PRESETS:
            raise LayoutError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        _, knobs, video = PRESETS[name]
        return (
            cls(name, video=dict(video), **knobs).replace(**overrides)
            if overrides
            else cls(name, video=dict(video), **knobs)
        )

    def replace(self, **knobs: Any) -> Layout:
        """A new layout with some knobs changed; `video={...}` merges into the video knobs."""
        video = {**self._video, **(knobs.pop("video", None) or {})}
        return Layout(self._model, video=video, **{**self._knobs, **knobs})

    @classmethod
    def from_preprocessor_config(
        cls,
        config: Mapping[str, Any] | str | os.PathLike[str],
        *,
        model: str | None = None,
        backend: str | None = None,
    ) -> Layout:
        """Reads a preprocessor_config.json dict, file or folder (layout.md §3). Never downloads.

        `backend` (Qwen): like `AutoImageProcessor.from_pretrained(..., backend=)`; None gives
        "torchvision", what transformers returns wherever torch is installed, whatever class
        `image_processor_type` names (transformers 5.24 picks the class by backend, not by that
        name)."""
        name, knobs, video = read_config(config, model=model, backend=backend)
        return cls(name, video=video, **knobs)

    @property
    def model(self) -> str:
        return self._model

    @property
    def family(self) -> str:
        return self._core.family

    @property
    def fingerprint(self) -> str:
        return self._core.fingerprint

    @property
    def fingerprint_text(self) -> str:
        """The `rawmm-layout:v1:` text the fingerprint digests."""
        return self._core.fingerprint_text

    @property
    def knobs(self) -> dict[str, Any]:
        """The image knobs (hashing.md §5.3 keys)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._knobs.items()}

    @property
    def video_knobs(self) -> dict[str, Any]:
        """The video knobs (the video processor's; layout.md §7)."""
        return dict(self._video)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self._model, **self.knobs, "video": dict(self._video)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self._model, self.fingerprint, json.dumps(self._video, sort_keys=True)))

    def __repr__(self) -> str:
        return f"Layout({self._model!r}, fingerprint={self.fingerprint!r})"

    # -- geometry -------------------------------------------------------------------------

    def image(self, width: int, height: int) -> ImageLayout:
        """Layout of one image of the oriented size `width`×`height`."""
        return self._core.image(width, height)

    @property
    def max_image_rows(self) -> int:
        """An upper bound of `t*h*w` over every image grid this layout gives, so a claimed grid
        can be refused before anything is allocated for it (the exact check, the grid of the
        decoded image, comes later); each family derives its own (`Family.max_image_rows`)."""
        return self._family.max_image_rows(self._knobs)

    def image_rows(self, grid_thw: Sequence[int]) -> int:
        """`pixel_values` rows of an image of `grid_thw`: `t*h*w`, or (Gemma 4) the padded
        patch budget."""
        t, h, w = (int(v) for v in grid_thw)
        return self._family.image_rows(self._knobs, (t, h, w))

    def images(self, sizes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorised `image` for an int array [N, 2] of (width, height) → int64 [N, 6]."""
        arr = np.asarray(sizes)
        if arr.size == 0:
            return np.zeros((0, 6), dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise LayoutError(f"sizes must be an int array of shape [N, 2], got {arr.dtype} {arr.shape}")
        if arr.dtype == np.uint64 and (arr > np.iinfo(np.int64).max).any():
            raise LayoutError("sizes out of range")
        return self._core.images(np.ascontiguousarray(arr, dtype=np.int64))

    def video(self, num_frames: int, width: int, height: int, *, fps: float | None = None) -> VideoLayout:
        """Video layout; `fps` is the source frame rate (None → 24)."""
        src_fps = 24.0 if fps is None else _as_float("fps", fps)
        d = self._family.video(self._core, self._model, self._video, num_frames, width, height, src_fps)
        return VideoLayout(
            frame_indices=d["frame_indices"],
            resized_width=d["resized_width"],
            resized_height=d["resized_height"],
            grid_thw=d["grid_thw"],
            chunks=d["chunks"] or None,
            num_tokens=d["num_tokens"],
            placeholder_text=d["placeholder_text"],
            second_per_grid_ts=d["second_per_grid_ts"],
        )

    # -- prompt text ----------------------------------------------------------------------

    def placeholder_text(self, image_layout: ImageLayout, *, expanded: bool = True) -> str:
        """The whole wrapped placeholder of one image (layout.md §5)."""
        return self._family.placeholder_text(self._model, image_layout.num_tokens if expanded else 1)

    def placeholder_token_ids(
        self, image_layout: ImageLayout, *, expanded: bool = True, tokenizer: Tokenizer | None = None
    ) -> list[int]:
        """Token ids of `placeholder_text`. Kimi needs `tokenizer` for the plain word "image"."""
        n = image_layout.num_tokens if expanded else 1
        return self._family.placeholder_token_ids(self._model, n, tokenizer)

    @property
    def image_pad_token_id(self) -> int:
        """The id whose run the renderer expands to `num_tokens` (Kimi: `<|media_pad|>`)."""
        return self._family.image_pad_token_id(self._model)

    def placeholder_length(self, image_layout: ImageLayout) -> int:
        """`mm_placeholders` length (layout.md §5): `num_tokens` for Qwen, 1 for Kimi."""
        return self._family.placeholder_length(self, image_layout.grid_thw)

    # -- pixels ---------------------------------------------------------------------------

    def pixel_values(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        dtype: str = "float32",
        threads: int | None = None,
        out: np.ndarray | None = None,
    ) -> PixelValues:
        """`pixel_values` bit-identical to the reference processor (pixels.md). `out`: a
        C-contiguous writable array of exactly the result's shape and dtype (bfloat16: uint16
        or ml_dtypes.bfloat16), written in place and returned, so a trainer can reuse one
        (pinned) buffer: no fresh pages, no copy."""
        return pixel_values(self, images, dtype=dtype, threads=threads, out=out)

    def normalize(
        self, values: Any, *, out: Any = None, threads: int | None = None, arithmetic: str = "transformers"
    ) -> Any:
        """`pixel_values(..., dtype="uint8")` → float32 `pixel_values`, bit for bit.
        `arithmetic="transformers"`: what this layout's backend computes (the pipeline's own
        float32 output). `arithmetic="vllm"`: what vLLM computes inside the model from the raw
        uint8 patches its processor emits when `mm_device_do_normalize` is on (its
        `FusedMMInputNorm` as run on CPU: `v · (1/std · rescale) + (−mean/std)` in float32).
        numpy arrays: in Rust, GIL released. torch tensors on any device (the result stays
        there): a lookup in the per-channel table of all 256 byte values, computed on the CPU,
        so no device rounds anything differently. `out`: a float32 destination of the same
        kind and shape."""
        if arithmetic not in ("transformers", "vllm"):
            raise ValueError(f"arithmetic must be 'transformers' or 'vllm', got {arithmetic!r}")
        self._family.check_normalize(self._knobs)
        if not type(values).__module__.startswith("torch"):
            arr = np.asarray(values)
            if arr.dtype != np.uint8:
                raise LayoutError(f"values must be uint8, got {arr.dtype}")
            return self._core.normalize(arr, out=out, threads=threads, arithmetic=arithmetic)
        import torch

        if values.dtype != torch.uint8:
            raise LayoutError(f"values must be uint8, got {values.dtype}")
        lut = torch.from_numpy(self._core.normalize_table(arithmetic)).to(values.device)
        res = torch.empty(values.shape, dtype=torch.float32, device=values.device) if out is None else out
        row, shape = tuple(self._core.row_shape), tuple(values.shape)
        if shape[1:] != row or tuple(res.shape) != shape or not res.is_contiguous():
            raise LayoutError(
                f"values and a contiguous out have shape [N, {', '.join(map(str, row))}], got {shape}"
            )
        # Rows hold three channel planes one after the other, or (Gemma 4) interleaved channels.
        if self._family.channels_last:
            src, dst = values.reshape(shape[0], -1, 3), res.view(shape[0], -1, 3)
            for c in range(3):
                dst[..., c] = lut[c][src[..., c].long()]
            return res
        planes, out_planes = values.reshape(shape[0], 3, -1), res.view(shape[0], 3, -1)
        for c in range(3):
            out_planes[:, c] = lut[c][planes[:, c].long()]
        return res

    def video_pixel_values(
        self,
        frames: Sequence[ImageInput],
        *,
        fps: float | None = None,
        dtype: str = "float32",
        threads: int | None = None,
    ) -> PixelValues:
        """`pixel_values` of a video: `frames` are all of its decoded frames (one size), `fps`
        the source rate. Frames are sampled and sized by `video(...)`, each resized with
        Pillow-exact BICUBIC and normalised like an image (pixels.md §6), then packed: Qwen in
        temporal groups (an odd count repeats the last frame), Kimi frame after frame."""
        _check_options(dtype, threads)
        if dtype == "uint8":
            raise ValueError("videos are produced as float32 or bfloat16")
        k = self._knobs
        arrays = [
            to_array(f, exif=k["exif_policy"] == "apply", composite=k["alpha_policy"] == "composite_white")
            for f in frames
        ]
        if not arrays:
            raise LayoutError("a video needs at least one frame")
        first = arrays[0]
        w, h = (first.shape[1], first.shape[0]) if isinstance(first, np.ndarray) else (first[2], first[3])
        v = self.video(len(arrays), w, h, fps=fps)
        sampled = [arrays[i] for i in v.frame_indices]
        if v.chunks is not None:  # Kimi: every chunk shares the frame size
            _, _, (_, gh, gw), _ = v.chunks[0]
            padded = (gw * k["patch_size"], gh * k["patch_size"])
            grid = np.array([c[2] for c in v.chunks], dtype=np.int64)
            tokens = [c[3] for c in v.chunks]
        else:
            assert v.grid_thw is not None
            padded = (v.resized_width, v.resized_height)
            grid = np.array([v.grid_thw], dtype=np.int64)
            tokens = [v.num_tokens]
        values = self._family.video_core(self).frames_pixel_values(
            sampled,
            (v.resized_width, v.resized_height),
            padded,
            bfloat16=dtype == "bfloat16",
            threads=threads,
        )
        values = self._family.video_values(self, values, v)
        return PixelValues(pixel_values=values, grid_thw=grid, num_tokens=tokens)
