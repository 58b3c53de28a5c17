"""Reading preprocessor_config.json dicts, files and folders into layout knobs (layout.md §3)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._presets import BACKENDS, RESCALE
from .errors import LayoutError

# Keys that cannot change layout or pixels.
_IGNORED = {"processor_class", "_processor_class", "image_processor_type", "video_processor_type", "auto_map"}
# Switches accepted only at the value rawmm implements.
_SWITCHES: dict[str, tuple[object, ...]] = {
    "do_resize": (True,),
    "do_rescale": (True,),
    "do_normalize": (True,),
    "do_convert_rgb": (True,),
    "do_center_crop": (False,),
    "data_format": ("channels_first",),
    # Qwen and Kimi compute their own sizes, so this switch never changes their output.
    "default_to_square": (True, False),
}


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LayoutError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise LayoutError(f"{path} does not hold a JSON object")
    return data


def read_config(
    config: Mapping[str, Any] | str | os.PathLike[str], *, model: str | None, backend: str | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Returns (preset name, image knobs, video knobs). `backend`: the caller's choice, else a
    "backend" key of the config, else the preset's ("torchvision" for Qwen)."""
    # A dict or a single file describes the image processor: video knobs keep the preset's
    # values. A folder follows transformers' loading order: video_preprocessor_config.json,
    # else preprocessor_config.json.
    video_cfg: Mapping[str, Any] | None = None
    folder: Path | None = None
    if isinstance(config, Mapping):
        cfg = dict(config)
    else:
        path = Path(config)
        if path.is_dir():
            folder = path
            cfg = _load_json(path / "preprocessor_config.json")
            video_path = path / "video_preprocessor_config.json"
            video_cfg = _load_json(video_path) if video_path.is_file() else cfg
        else:
            folder = path.parent
            cfg = _load_json(path)
    # The family modules use this module's helpers, so the registry is imported here.
    from .families import FAMILIES, PRESETS

    if model is None:
        model = _model_of(cfg, folder)
    if model not in PRESETS:
        raise LayoutError(f"unknown model {model!r}; expected one of {sorted(PRESETS)}")
    name, preset, preset_video = PRESETS[model]
    # transformers 5.24 itself cannot load a config with a "backend" key (it is a read-only
    # property); rawmm reads it as the explicit choice it states.
    in_config = cfg.pop("backend", None)
    chosen = backend if backend is not None else in_config
    if chosen is not None and chosen not in BACKENDS:
        raise LayoutError(f"backend must be one of {list(BACKENDS)}, got {chosen!r}")
    fam = FAMILIES[name]
    if chosen is not None and fam.has_backend and chosen not in fam.backends:
        raise LayoutError(f"{name} has only the {' and '.join(fam.backends)} backend in transformers 5.24")
    knobs, video = fam.read_config(cfg, preset, preset_video, video_cfg, chosen)
    return model, knobs, video


def _model_of(cfg: Mapping[str, Any], folder: Path | None) -> str:
    """The preset of a config read without `model`: the folder's config.json `model_type`,
    else the preset its `image_processor_type` names (for a class that names one)."""
    from .families import MODEL_TYPES, PROCESSOR_TYPES

    path = None if folder is None else folder / "config.json"
    if path is not None and path.is_file():
        model_type = _load_json(path).get("model_type")
        if model_type not in MODEL_TYPES:
            raise LayoutError(f"config.json model_type {model_type!r} is not a supported model")
        return MODEL_TYPES[model_type]
    processor = cfg.get("image_processor_type")
    if isinstance(processor, str) and processor in PROCESSOR_TYPES:
        return PROCESSOR_TYPES[processor]
    if path is None:
        raise LayoutError(
            "model=None needs a folder with a config.json naming the model_type, or an "
            "image_processor_type naming one model"
        )
    raise LayoutError(f"model=None but there is no {path} to read model_type from")


def overlay(knobs: dict[str, Any], cfg: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Each of `keys` that `cfg` sets (not None) replaces the knob's value."""
    for key in keys:
        if cfg.get(key) is not None:
            knobs[key] = cfg[key]


def check_rest(cfg: Mapping[str, Any], handled: set[str], where: str) -> None:
    """Every key not read must be ignorable; anything that could change the output raises."""
    for key, value in cfg.items():
        if key in handled or key in _IGNORED or value is None:
            continue
        if key in _SWITCHES:
            if value not in _SWITCHES[key] or not isinstance(value, type(_SWITCHES[key][0])):
                raise LayoutError(f"{where}: {key}={value!r} is not reproducible by rawmm")
            continue
        raise LayoutError(f"{where}: unsupported key {key!r}={value!r}")


def fold_size(cfg: Mapping[str, Any], default: tuple[int, int], where: str) -> tuple[int, int]:
    """transformers folds top-level min/max_pixels into `size` and the top-level keys win
    (`smart_resize` families: Qwen's `{shortest_edge, longest_edge}`)."""
    size_cfg = cfg.get("size")
    if size_cfg is None:
        size: dict[str, Any] = {"shortest_edge": default[0], "longest_edge": default[1]}
    elif isinstance(size_cfg, Mapping):
        size = dict(size_cfg)
        extra = set(size) - {"shortest_edge", "longest_edge", "min_pixels", "max_pixels"}
        if extra:
            raise LayoutError(f"{where}: size keys {sorted(extra)} are not supported for Qwen")
    else:
        raise LayoutError(f"{where}: size must be an object, got {size_cfg!r}")
    for top, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        value = cfg.get(top)
        if value is None:
            continue
        for other in (size.get(edge), size.get(top)):
            if size_cfg is not None and other is not None and other != value:
                raise LayoutError(f"{where}: {top}={value!r} contradicts size {dict(size_cfg)!r}")
        size[edge] = value
        size.pop(top, None)
    lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    if not lo or not hi:
        raise LayoutError(
            f"{where}: size must contain non-zero 'shortest_edge' and 'longest_edge' keys, got {size!r}"
        )
    return lo, hi


def common_pixel_keys(cfg: Mapping[str, Any], knobs: dict[str, Any], where: str) -> None:
    if cfg.get("rescale_factor") is not None:
        if cfg["rescale_factor"] != RESCALE:
            raise LayoutError(f"{where}: rescale_factor must be 1/255, got {cfg['rescale_factor']!r}")
        knobs["rescale_factor"] = cfg["rescale_factor"]
    resample = cfg.get("resample")
    if resample is not None and (resample != 3 or isinstance(resample, bool)):
        raise LayoutError(f"{where}: resample must be 3 (BICUBIC), got {resample!r}")
