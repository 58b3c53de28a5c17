"""transformers image and video processors backed by rawmm (api.md, Drop-in replacements).

Each class IS the transformers class it replaces (a subclass), so construction, attributes,
per-call keywords, `BatchFeature` outputs, saving, loading, pickling, `ProcessorMixin` and the
Auto classes behave exactly as transformers'. Only `_preprocess`, the step after transformers
has validated the keywords and turned every input into a channels-first uint8 array, is taken
over: when the images and options are ones rawmm reproduces bit for bit (3-channel uint8
images, resize on with BICUBIC, rescale by 1/255 then normalise, or neither as vLLM asks, a
`shortest_edge` / `longest_edge` size), rawmm's core computes `pixel_values`; any other case
runs transformers' own code, so nothing is refused and nothing silently differs.

Imported lazily by `rawmm.hf`, so `import rawmm` never imports transformers.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, cast

import numpy as np
from PIL import Image
from transformers.image_processing_base import BatchFeature

from ._presets import RESCALE
from .errors import RawmmError
from .families import PRESETS, family
from .families._base import three_floats
from .layout import Layout
from .pixels import _pil_pixels, core_pixel_values

# Qwen2VLImageProcessor (and its Kwargs) and the video processors are made on first use: they
# need torch. The PIL-backend class lives in `_hf_pil`.
__all__ = ["register"]

# PIL.Image.Resampling's values of the filters rawmm reproduces.
_RESAMPLE = {"bicubic": 3, "lanczos": 1}


@functools.lru_cache(maxsize=64)
def _layout(model: str, backend: str, knobs: tuple[tuple[str, Any], ...]) -> Layout:
    # EXIF and alpha policies never act here: transformers has already decoded and converted.
    return Layout.preset(
        model, backend=backend, **{k: list(v) if isinstance(v, tuple) else v for k, v in knobs}
    )


def _is_filter(resample: Any, name: str) -> bool:
    """Whether `resample` (PIL's int or enum, or torchvision's mode) is the filter `name`."""
    value = getattr(resample, "value", resample)
    return value in (_RESAMPLE[name], name) and not isinstance(value, bool)


def fast_layout(backend: str, kw: dict[str, Any], model: str = "qwen2_5_vl") -> tuple[Layout, str] | None:
    """The rawmm layout (of `model`'s family) and output dtype for one `_preprocess` call's
    options, or None when rawmm does not reproduce them (transformers' own code runs then).
    Rescale on (and normalise, or not where the family has the knob): float32; both off (the
    torchvision backend, as vLLM calls it with `mm_device_do_normalize`): the uint8 patches."""
    rescale, normalize = kw.get("do_rescale"), kw.get("do_normalize")
    if rescale is True and isinstance(normalize, bool) and kw.get("rescale_factor") == RESCALE:
        dtype = "float32"
    elif rescale is False and normalize is False and backend == "torchvision":
        dtype = "uint8"
    else:
        return None
    fam = family(PRESETS[model][0])
    resize = kw.get("do_resize")
    if not (resize is True or (resize is None and not fam.resize_switch)):
        return None
    if not _is_filter(kw.get("resample"), fam.resample):
        return None
    knobs = fam.call_knobs(kw)
    if knobs is None or (dtype == "float32" and not normalize and "do_normalize" not in knobs):
        return None
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in knobs.items()))
    try:
        return _layout(model, backend, frozen), dtype
    except RawmmError:
        return None


def _hwc_uint8(image: Any) -> np.ndarray | None:
    """A channels-first 3-channel uint8 image (numpy, or a CPU torch tensor) as the HWC array
    the core reads (a view when the memory already is HWC), else None."""
    if type(image).__module__.startswith("torch"):
        if image.device.type != "cpu":
            return None
        image = image.numpy()
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] != 3:
        return None
    return np.ascontiguousarray(np.moveaxis(image, 0, -1))


def _is_rgb_pil(image: Any) -> bool:
    return isinstance(image, Image.Image) and image.mode == "RGB"


def _rawmm_preprocess(
    backend: str, images: list[Any], kw: dict[str, Any], model: str = "qwen2_5_vl"
) -> dict[str, Any] | None:
    fast = fast_layout(backend, kw, model)
    if fast is None:
        return None
    layout, dtype = fast
    arrays = [_pil_pixels(im) if _is_rgb_pil(im) else _hwc_uint8(im) for im in images]
    if not arrays or any(a is None for a in arrays):
        return None
    try:
        out = core_pixel_values(layout, arrays, dtype=dtype)  # type: ignore[arg-type]
    except RawmmError:
        return None  # e.g. an aspect ratio transformers reports with its own error
    return family(layout.family).hf_outputs(layout, out.pixel_values, out.grid_thw)


@functools.cache
def _torchvision_class() -> type:
    """Defined on first use (once): the parent class needs torch and torchvision."""
    import torch
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import (
        Qwen2VLImageProcessor as _HFQwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessorKwargs

    # Like transformers' backend modules, this one exposes its processor's kwargs class by name.
    globals()["Qwen2VLImageProcessorKwargs"] = Qwen2VLImageProcessorKwargs

    class Qwen2VLImageProcessor(_HFQwen2VLImageProcessor):
        """transformers' `Qwen2VLImageProcessor` (torchvision backend), its pixels computed by
        rawmm (torch-exact)."""

        def _preprocess_image_like_inputs(self, images: Any, *args: Any, **kwargs: Any) -> BatchFeature:
            # RGB PIL images (what vLLM hands over) go to the core as they are, zero-copy:
            # transformers' conversion to channels-first tensors gives the same bytes.
            if not args:
                flat = cast(list[Any], self._prepare_images_structure(images))
                if flat and all(_is_rgb_pil(im) for im in flat):
                    data = _rawmm_preprocess("torchvision", flat, kwargs)
                    if data is not None:
                        return self._batch(data, kwargs)
            return super()._preprocess_image_like_inputs(images, *args, **kwargs)

        def _preprocess(self, images: list[Any], **kwargs: Any) -> BatchFeature:  # type: ignore[override]
            data = _rawmm_preprocess("torchvision", images, kwargs)
            if data is None:
                return super()._preprocess(images, **kwargs)
            return self._batch(data, kwargs)

        @staticmethod
        def _batch(data: dict[str, Any], kwargs: dict[str, Any]) -> BatchFeature:
            # transformers returns torch tensors here; BatchFeature converts them as asked.
            tensors = {k: torch.from_numpy(v) for k, v in data.items()}
            return BatchFeature(data=tensors, tensor_type=kwargs.get("return_tensors"))

    Qwen2VLImageProcessor.__module__ = __name__
    Qwen2VLImageProcessor.__qualname__ = "Qwen2VLImageProcessor"  # pickled by name
    return Qwen2VLImageProcessor


#: The video processors rawmm subclasses: name → transformers module. GLM-V's patches are
#: Qwen2-VL's, so one subclass serves them all.
_VIDEO = {
    "Qwen2VLVideoProcessor": "qwen2_vl.video_processing_qwen2_vl",
    "Qwen3VLVideoProcessor": "qwen3_vl.video_processing_qwen3_vl",
    "Glm4vVideoProcessor": "glm4v.video_processing_glm4v",
    "Glm46VVideoProcessor": "glm46v.video_processing_glm46v",
}
#: The other families' image processors: name → (transformers module, rawmm preset, backend).
CLASSES = {
    "Glm4vImageProcessor": ("glm4v.image_processing_glm4v", "glm4v", "torchvision"),
    "Glm4vImageProcessorPil": ("glm4v.image_processing_pil_glm4v", "glm4v", "pil"),
    "Glm46VImageProcessor": ("glm46v.image_processing_glm46v", "glm46v", "torchvision"),
    "Glm46VImageProcessorPil": ("glm46v.image_processing_pil_glm46v", "glm46v", "pil"),
    "Gemma4ImageProcessor": ("gemma4.image_processing_gemma4", "gemma4", "torchvision"),
    "Gemma4ImageProcessorPil": ("gemma4.image_processing_pil_gemma4", "gemma4", "pil"),
    "InklingImageProcessor": ("inkling.image_processing_inkling", "inkling", "torchvision"),
    "NemotronH_Omni_Reasoning_V3ImageProcessor": (
        "nemotron_h_omni.image_processing_nemotron_h_omni",
        "nemotron_h_omni",
        "torchvision",
    ),
}


def __getattr__(name: str) -> Any:
    if name == "Qwen2VLImageProcessor":
        return _torchvision_class()
    if name in CLASSES:
        return _family_class(name)
    video = _video_processor(name)
    if video is not None:
        return video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _video_processor(name: str) -> type | None:
    """rawmm's video processor class named `name` (transformers' name), None where rawmm has
    none: Qwen's patches (`_VIDEO`), or a family's own outputs."""
    if name in _VIDEO:
        return _video_class(name)
    if name == "Gemma4VideoProcessor":
        return _gemma4_video_class()
    if name == "NemotronH_Omni_Reasoning_V3VideoProcessor":
        return _nemotron_video_class()
    return None


def _subclass(parent: type, name: str, doc: str, module: str = __name__, **methods: Any) -> type:
    """`parent` subclassed as `name` in `module`, which resolves it by name when pickled."""
    return type(name, (parent,), {"__module__": module, "__qualname__": name, "__doc__": doc, **methods})


@functools.cache
def _family_class(name: str) -> type:
    """rawmm's subclass of a transformers image processor of `CLASSES`: `_preprocess`
    (transformers' step after validation and conversion) runs rawmm's core whenever it
    reproduces the call, transformers' own code otherwise, as for Qwen."""
    import importlib

    path, model, backend = CLASSES[name]
    module = importlib.import_module(f"transformers.models.{path}")
    parent = getattr(module, name)
    # Like transformers' backend modules, the class's module exposes its kwargs class by name;
    # both backends name theirs alike, so the PIL classes live in `_hf_pil`, as Qwen's does.
    home = importlib.import_module("rawmm._hf_pil") if backend == "pil" else sys.modules[__name__]
    kwargs_name = name.removesuffix("Pil") + "Kwargs"
    if hasattr(module, kwargs_name):
        setattr(home, kwargs_name, getattr(module, kwargs_name))

    def _preprocess(self: Any, images: list[Any], **kwargs: Any) -> BatchFeature:
        data = _rawmm_preprocess(backend, images, kwargs, model)
        if data is None:
            return cast(BatchFeature, parent._preprocess(self, images, **kwargs))
        if backend == "torchvision":  # transformers returns torch tensors here
            import torch

            data = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}
        return BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))

    doc = f"transformers' `{name}`, its pixels computed by rawmm."
    return _subclass(parent, name, doc, home.__name__, _preprocess=_preprocess)


#: Model types whose image processor is `Qwen2VLImageProcessor` / `...Pil` in transformers 5.24.
QWEN_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
#: Other model types and their image processors' class prefix (GLM-4.5V is glm4v_moe).
MODEL_TYPE_CLASSES = {
    "glm4v": "Glm4v",
    "glm4v_moe": "Glm4v",
    "glm46v": "Glm46V",
    "gemma4": "Gemma4",
    "inkling_mm_model": "Inkling",
    "nemotron_h_omni": "NemotronH_Omni_Reasoning_V3",
}


def register() -> None:
    """Makes `AutoImageProcessor` and `AutoVideoProcessor` (and so `AutoProcessor`, vLLM,
    prime-rl, renderers) return rawmm's classes for the Qwen model types, for both image
    backends, `AutoImageProcessor` rawmm's image processors of the other families, and
    `AutoVideoProcessor` rawmm's GLM-V, Gemma 4 and NemotronH Omni video processors. Idempotent."""
    from transformers import AutoConfig, AutoImageProcessor, AutoVideoProcessor
    from transformers.utils.import_utils import is_torchvision_available

    from ._hf_pil import Qwen2VLImageProcessorPil

    classes: dict[str, type] = {"pil": Qwen2VLImageProcessorPil}
    if is_torchvision_available():
        classes["torchvision"] = _torchvision_class()
    for model_type in QWEN_MODEL_TYPES:
        config_class = type(AutoConfig.for_model(model_type))
        AutoImageProcessor.register(config_class, image_processor_classes=classes, exist_ok=True)
        if is_torchvision_available():
            video = _video_class(
                "Qwen3VLVideoProcessor" if model_type.startswith("qwen3") else "Qwen2VLVideoProcessor"
            )
            AutoVideoProcessor.register(config_class, video, exist_ok=True)
    for model_type, prefix in MODEL_TYPE_CLASSES.items():
        own = {}
        if prefix + "ImageProcessorPil" in CLASSES:
            own["pil"] = _family_class(prefix + "ImageProcessorPil")
        if is_torchvision_available():
            own["torchvision"] = _family_class(prefix + "ImageProcessor")
        config_class = type(AutoConfig.for_model(model_type))
        AutoImageProcessor.register(config_class, image_processor_classes=own, exist_ok=True)
        family_video = _video_processor(prefix + "VideoProcessor") if is_torchvision_available() else None
        if family_video is not None:
            AutoVideoProcessor.register(config_class, family_video, exist_ok=True)


@functools.cache
def _video_class(name: str) -> type:
    """rawmm's subclass of transformers' Qwen2-VL, Qwen3-VL or GLM-V video processor (torchvision
    only, like the parent): rawmm resizes, normalises and packs the frames of every video whose
    options it reproduces; the target frame size comes from the parent's own `resize`, asked on
    a `meta` tensor (shapes only, no pixels), so every sizing rule stays the parent's."""
    import importlib

    import torch

    module = importlib.import_module(f"transformers.models.{_VIDEO[name]}")
    parent = getattr(module, name)
    # Like transformers' modules, this one exposes each processor's kwargs class by name.
    for suffix in ("InitKwargs", "Kwargs"):
        if hasattr(module, name + suffix):
            globals()[name + suffix] = getattr(module, name + suffix)

    def _preprocess(self: Any, videos: list[Any], **kwargs: Any) -> Any:
        data = self._rawmm_videos(videos, kwargs)
        if data is None:
            return parent._preprocess(self, videos, **kwargs)
        return module.BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))

    def _rawmm_videos(self: Any, videos: list[Any], kw: dict[str, Any]) -> dict[str, Any] | None:
        fast = fast_layout("torchvision", kw)
        if fast is None or fast[1] != "float32" or not videos:  # uint8 video: transformers' code
            return None
        layout = fast[0]
        p, m, t = kw["patch_size"], kw["merge_size"], kw["temporal_patch_size"]
        values, grids = [], []
        for video in videos:
            frames = [_hwc_uint8(f) for f in video] if getattr(video, "ndim", 0) == 4 else [None]
            if not frames or any(f is None for f in frames):
                return None
            shape = self.resize(
                videos=torch.empty((1, *video.shape), dtype=torch.uint8, device="meta"),
                size=kw["size"],
                resample=kw["resample"],
                factor=p * m,
                temporal_factor=t,
                cap_pixels_per_frame=kw.get("cap_pixels_per_frame"),
            ).shape
            rh, rw = int(shape[-2]), int(shape[-1])
            try:
                v = layout._core.frames_pixel_values(frames, (rw, rh), (rw, rh), bfloat16=False, threads=None)
            except RawmmError:
                return None
            values.append(torch.from_numpy(v))
            grids.append([-(-len(frames) // t), rh // p, rw // p])
        return {"pixel_values_videos": torch.cat(values, dim=0), "video_grid_thw": torch.tensor(grids)}

    doc = f"transformers' `{name}`, its frames resized, normalised and packed by rawmm."
    return _subclass(parent, name, doc, _preprocess=_preprocess, _rawmm_videos=_rawmm_videos)


@functools.cache
def _gemma4_video_class() -> type:
    """rawmm's subclass of transformers' `Gemma4VideoProcessor` (torchvision): every frame of a
    video whose options rawmm reproduces is resized, normalised and packed by the core, each
    padded to the frame budget, as the parent does."""
    import torch
    from transformers.models.gemma4 import video_processing_gemma4 as module

    from .families.gemma4 import position_ids

    parent = module.Gemma4VideoProcessor
    globals()["Gemma4VideoProcessorKwargs"] = module.Gemma4VideoProcessorKwargs

    def _preprocess(self: Any, videos: list[Any], **kwargs: Any) -> Any:
        data = _rawmm_gemma4_videos(videos, kwargs)
        if data is None:
            return parent._preprocess(self, videos, **kwargs)
        return BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))

    def _rawmm_gemma4_videos(videos: list[Any], kw: dict[str, Any]) -> dict[str, Any] | None:
        fast = fast_layout("torchvision", kw, "gemma4")
        if fast is None or fast[1] != "float32" or not videos:
            return None
        layout = fast[0]
        rows = layout.max_image_rows
        values, positions, frames_per_video, tokens = [], [], [], []
        for video in videos:
            frames = [_hwc_uint8(f) for f in video] if getattr(video, "ndim", 0) == 4 else [None]
            if not frames or any(f is None for f in frames):
                return None
            h, w = frames[0].shape[:2]  # type: ignore[union-attr]
            try:
                lay = layout.image(w, h)
                v = layout._core.frames_pixel_values(
                    frames,
                    (lay.resized_width, lay.resized_height),
                    (lay.resized_width, lay.resized_height),
                    bfloat16=False,
                    threads=None,
                )
            except RawmmError:
                return None
            n = len(frames)
            values.append(torch.from_numpy(v.reshape(n, rows, -1)))
            positions.append(torch.from_numpy(position_ids(np.array([lay.grid_thw] * n), rows)))
            frames_per_video.append(n)
            tokens.append(lay.num_tokens)
        return {
            "pixel_values_videos": torch.cat(values, dim=0),
            "video_position_ids": torch.cat(positions, dim=0),
            "num_frames_per_video": frames_per_video,
            "num_soft_tokens_per_video": tokens,
        }

    doc = "transformers' `Gemma4VideoProcessor`, its frames packed by rawmm."
    return _subclass(parent, "Gemma4VideoProcessor", doc, _preprocess=_preprocess)


@functools.cache
def _nemotron_video_class() -> type:
    """rawmm's subclass of transformers' `NemotronH_Omni_Reasoning_V3VideoProcessor`: frames
    resized in float by the core at the tile the parent's own `_compute_target_patches` picks,
    normalised and stacked into tubelets as the parent does (`families.nemotron.pack_tubelets`)."""
    import torch
    from transformers.models.nemotron_h_omni import video_processing_nemotron_h_omni as module

    from .families.nemotron import pack_tubelets

    parent = module.NemotronH_Omni_Reasoning_V3VideoProcessor
    globals()["NemotronH_Omni_Reasoning_V3VideoProcessorInitKwargs"] = (
        module.NemotronH_Omni_Reasoning_V3VideoProcessorInitKwargs
    )

    def _preprocess(self: Any, videos: list[Any], temporal_patch_size: Any = None, **kwargs: Any) -> Any:
        data = _rawmm_videos(self, videos, temporal_patch_size or self.temporal_patch_size)
        if data is None:
            return parent._preprocess(self, videos, temporal_patch_size=temporal_patch_size, **kwargs)
        return BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))

    def _rawmm_videos(self: Any, videos: list[Any], t: Any) -> dict[str, Any] | None:
        mean, std = three_floats(self.norm_mean), three_floats(self.norm_std)
        if (
            mean is None
            or std is None
            or not isinstance(t, int)
            or isinstance(t, bool)
            or t < 1
            or not videos
        ):
            return None
        knobs = {"temporal_patch_size": t, "norm_mean": mean, "norm_std": std}
        core = Layout.preset("nemotron_h_omni")._core
        values, counts = [], []
        for video in videos:
            frames = [_hwc_uint8(f) for f in video] if getattr(video, "ndim", 0) == 4 else [None]
            if not frames or any(f is None for f in frames):
                return None
            h, w = frames[0].shape[:2]  # type: ignore[union-attr]
            wp, hp = self._compute_target_patches(h, w)
            size = (wp * self.patch_size, hp * self.patch_size)
            try:
                raw = core.frames_pixel_values(frames, size, size, bfloat16=False, threads=None)
            except RawmmError:
                return None
            values.append(pack_tubelets(raw, knobs, (size[1], size[0]))[0])
            counts.append(len(frames))
        if len({v.shape for v in values}) > 1:
            return None  # the parent raises its own error for that
        return {"pixel_values_videos": torch.from_numpy(np.stack(values)), "num_frames": counts}

    doc = "transformers' NemotronH Omni video processor, its frames packed by rawmm."
    return _subclass(parent, "NemotronH_Omni_Reasoning_V3VideoProcessor", doc, _preprocess=_preprocess)
