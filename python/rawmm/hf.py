"""Drop-in replacement for the Hugging Face image processor object (api.md)."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from .errors import LayoutError
from .families import family
from .layout import Layout
from .pixels import ImageInput, _as_list, core_pixel_values, decode, to_array

if TYPE_CHECKING:
    from ._hf_pil import Qwen2VLImageProcessorPil
    from ._hf_processors import register

    # The same interfaces; the real classes need torch, so they are made on first access.
    Qwen2VLImageProcessor = Qwen2VLImageProcessorPil
    Qwen2VLVideoProcessor = Qwen2VLImageProcessorPil
    Qwen3VLVideoProcessor = Qwen2VLImageProcessorPil
    Glm4vImageProcessor = Qwen2VLImageProcessorPil
    Glm4vImageProcessorPil = Qwen2VLImageProcessorPil
    Glm46VImageProcessor = Qwen2VLImageProcessorPil
    Glm46VImageProcessorPil = Qwen2VLImageProcessorPil
    Glm4vVideoProcessor = Qwen2VLImageProcessorPil
    Glm46VVideoProcessor = Qwen2VLImageProcessorPil
    Gemma4ImageProcessor = Qwen2VLImageProcessorPil
    Gemma4ImageProcessorPil = Qwen2VLImageProcessorPil
    Gemma4VideoProcessor = Qwen2VLImageProcessorPil
    InklingImageProcessor = Qwen2VLImageProcessorPil
    NemotronH_Omni_Reasoning_V3ImageProcessor = Qwen2VLImageProcessorPil
    NemotronH_Omni_Reasoning_V3VideoProcessor = Qwen2VLImageProcessorPil

__all__ = [
    "Gemma4ImageProcessor",
    "Gemma4ImageProcessorPil",
    "Gemma4VideoProcessor",
    "Glm4vImageProcessor",
    "Glm4vImageProcessorPil",
    "Glm4vVideoProcessor",
    "Glm46VImageProcessor",
    "Glm46VImageProcessorPil",
    "Glm46VVideoProcessor",
    "ImageProcessor",
    "InklingImageProcessor",
    "KimiK25ImageProcessor",
    "KimiK25Processor",
    "NemotronH_Omni_Reasoning_V3ImageProcessor",
    "NemotronH_Omni_Reasoning_V3VideoProcessor",
    "Qwen2VLImageProcessor",
    "Qwen2VLImageProcessorPil",
    "Qwen2VLVideoProcessor",
    "Qwen3VLVideoProcessor",
    "register",
]

#: Defined in `rawmm._hf_processors`, which imports transformers: loaded on first access.
_LAZY = {
    "Gemma4ImageProcessor",
    "Gemma4ImageProcessorPil",
    "Gemma4VideoProcessor",
    "Glm4vImageProcessor",
    "Glm4vImageProcessorPil",
    "Glm46VImageProcessor",
    "Glm46VImageProcessorPil",
    "Glm46VVideoProcessor",
    "Glm4vVideoProcessor",
    "InklingImageProcessor",
    "NemotronH_Omni_Reasoning_V3ImageProcessor",
    "NemotronH_Omni_Reasoning_V3VideoProcessor",
    "Qwen2VLImageProcessor",
    "Qwen2VLImageProcessorPil",
    "Qwen2VLVideoProcessor",
    "Qwen3VLVideoProcessor",
    "register",
}


def __getattr__(name: str) -> Any:
    if name == "Qwen2VLImageProcessorPil":
        from ._hf_pil import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil
    if name in _LAZY:
        from . import _hf_processors

        return getattr(_hf_processors, name)
    raise AttributeError(f"module 'rawmm.hf' has no attribute {name!r}")


_OWN_KNOBS = {
    "downsample_ratio",
    "min_num_patches",
    "max_num_patches",
    "max_model_len",
    "max_soft_tokens",
    "pooling_kernel_size",
    "do_normalize",
    "rescale_image_frac",
    "rescale_image_max_upscaled_long_edge",
}


class ImageProcessor:
    """Returns the same dict as the transformers processor of the layout's backend
    (`Qwen2VLImageProcessor` for "torchvision", `Qwen2VLImageProcessorPil` for "pil") or
    Moonshot's Kimi-K2.5 processor given the same input. Like the reference, it decides EXIF
    and alpha per input type, whatever the layout's policies say: Qwen strings (paths) get EXIF
    applied and alpha dropped, Qwen PIL/ndarray inputs no EXIF and alpha composited (the
    torchvision backend blends RGBA arrays in float32, as transformers does, and decodes paths
    with torchvision.io when it is installed); Kimi never applies EXIF and always drops alpha."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        k = layout.knobs
        self.patch_size: int = k["patch_size"]
        self.image_mean: list[float] = list(k["image_mean"])
        self.image_std: list[float] = list(k["image_std"])
        self.rescale_factor: float = k["rescale_factor"]
        self.resample = 3  # PIL.Image.BICUBIC
        self.model_input_names = list(family(layout.family).model_input_names)
        if layout.family == "kimi_k25":
            self.merge_kernel_size: int = k["merge_kernel_size"]
        elif "merge_size" in k:
            self.merge_size: int = k["merge_size"]
            self.temporal_patch_size: int = k["temporal_patch_size"]
            self.min_pixels: int = k["min_pixels"]
            self.max_pixels: int = k["max_pixels"]
            self.size = {"shortest_edge": k["min_pixels"], "longest_edge": k["max_pixels"]}
        else:  # the family's own knobs, named as its processor names them
            for name in _OWN_KNOBS & set(k):
                setattr(self, name, k[name])

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, backend: str | None = None, **_: Any
    ) -> ImageProcessor:
        """Reads `preprocessor_config.json` from a local folder; never downloads. `backend` as in
        `AutoImageProcessor.from_pretrained` (None: "torchvision", what transformers picks
        wherever torch is installed)."""
        return cls(Layout.from_preprocessor_config(path, backend=backend))

    def __repr__(self) -> str:
        return f"rawmm.hf.ImageProcessor({self.layout!r})"

    def __call__(self, images: ImageInput | Sequence[ImageInput], **kwargs: Any) -> dict[str, Any]:
        return self.preprocess(images, **kwargs)

    def preprocess(
        self,
        images: ImageInput | Sequence[ImageInput],
        return_tensors: str | None = None,
        threads: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if return_tensors not in (None, "np"):
            raise ValueError(f"rawmm.hf.ImageProcessor returns numpy arrays only, got {return_tensors!r}")
        unsupported = {k for k, v in kwargs.items() if v is not None}
        if unsupported:
            raise ValueError(f"per-call overrides are not supported: {sorted(unsupported)}; build a Layout")
        kimi = self.layout.family == "kimi_k25"
        torchvision = not kimi and self.layout.knobs["backend"] == "torchvision"
        arrays: list[tuple[Any, bool]] = []
        for image in _as_list(images):
            if torchvision and isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4:
                arrays.append((_torchvision_rgba_blend(image), True))
                continue
            if torchvision and isinstance(image, str | os.PathLike) and _have_torchvision():
                arrays.append((_torchvision_decode(image), False))
                continue
            if kimi:
                exif, composite = False, False
            elif isinstance(image, str | os.PathLike):
                exif, composite = True, False
            elif isinstance(image, Image.Image | np.ndarray):
                exif, composite = False, True
            else:  # encoded bytes: treated like a file the reference would open by path
                exif, composite = True, False
            arrays.append((to_array(image, exif=exif, composite=composite), composite))
        return self._run(arrays, threads)

    def _run(self, arrays: list[tuple[Any, bool]], threads: int | None) -> dict[str, Any]:
        values, grid = self._pixels(arrays, threads)
        return family(self.layout.family).hf_outputs(self.layout, values, grid)

    def _pixels(self, arrays: list[tuple[Any, bool]], threads: int | None) -> tuple[np.ndarray, np.ndarray]:
        policies = {c for _, c in arrays}
        if len(policies) != 1:
            # One core call per alpha rule keeps every image's own rule, re-joined in order.
            parts = [self._pixels([item], threads) for item in arrays]
            return np.concatenate([v for v, _ in parts]), np.concatenate([g for _, g in parts])
        policy = "composite_white" if policies.pop() else "drop"
        out = core_pixel_values(
            self.layout.replace(alpha_policy=policy), [a for a, _ in arrays], threads=threads
        )
        return out.pixel_values, out.grid_thw


def _torchvision_rgba_blend(arr: np.ndarray) -> np.ndarray:
    """transformers' torchvision-backend blend of an RGBA array onto white, op for op in
    float32: `to_dtype(float32, scale=True)` (times f32(1/255)), `rgb·a + (1 − a)`, then
    `to_dtype(uint8, scale=True)` (times f32(255.999), truncated)."""
    if arr.dtype != np.uint8:
        return arr  # the core refuses it with its own typed error
    x = arr.astype(np.float32) * np.float32(1.0 / 255)
    rgb, a = x[..., :3], x[..., 3:]
    blended = rgb * a + (np.float32(1) - a)
    out: np.ndarray = (blended * np.float32(255.0 + 1.0 - 1e-3)).astype(np.uint8)
    return out


def _torchvision_decode(path: str | os.PathLike[str]) -> np.ndarray:
    """What transformers' torchvision backend loads for a path: torchvision.io's decoder, RGB,
    EXIF orientation applied (`load_image_as_tensor`)."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    with open(os.fspath(path), "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    chw = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


@functools.cache
def _have_torchvision() -> bool:
    """Whether the torchvision backend's own decoder is installed (found, not imported: torch
    takes seconds to import)."""
    return importlib.util.find_spec("torchvision") is not None


class KimiK25ImageProcessor:
    """The image-processor interface of Moonshot's Kimi K2.5 processor that renderers 0.1.12's
    `KimiK25Renderer` calls: `preprocess(list of {"type": "image", "image": ...} media dicts,
    return_tensors=)` giving `pixel_values` and `grid_thws`, and `media_tokens_calculator(media)`,
    bit-identical to Moonshot's processor (pixels.md §5: alpha dropped, no EXIF, as it does).
    Use it as `processor.image_processor` of that renderer (`rawmm.hf.KimiK25Processor`)."""

    model_input_names: ClassVar[list[str]] = ["pixel_values", "grid_thws"]

    def __init__(self, layout: Layout | None = None) -> None:
        layout = Layout.preset("kimi_k25") if layout is None else layout
        if layout.family != "kimi_k25":
            raise LayoutError(f"KimiK25ImageProcessor needs a kimi_k25 layout, got {layout.model!r}")
        self.layout = layout
        self._proc = ImageProcessor(layout)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **_: Any) -> KimiK25ImageProcessor:
        """Reads the model folder's `preprocessor_config.json` (`media_proc_cfg` or the
        transformers port's form); never downloads."""
        return cls(Layout.from_preprocessor_config(path, model="kimi_k25"))

    def __repr__(self) -> str:
        return f"rawmm.hf.KimiK25ImageProcessor({self.layout!r})"

    @staticmethod
    def _image(media: Any) -> ImageInput:
        if isinstance(media, dict):
            if media.get("type", "image") != "image" or "image" not in media:
                raise ValueError(
                    f"expected an image media dict {{'type': 'image', 'image': ...}}, got {media!r}"
                )
            return media["image"]  # type: ignore[no-any-return]
        return media  # type: ignore[no-any-return]

    def preprocess(
        self, medias: Any, return_tensors: str | None = None, threads: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        items = medias if isinstance(medias, list | tuple) else [medias]
        out = self._proc.preprocess([self._image(m) for m in items], threads=threads, **kwargs)
        if return_tensors == "pt":
            import torch

            return {k: torch.from_numpy(v) for k, v in out.items()}
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        return out

    __call__ = preprocess

    def media_tokens_calculator(self, media: Any) -> int:
        """Tokens the model spends on one image (layout.md §6), from its size alone."""
        image = self._image(media)
        if isinstance(image, np.ndarray):
            h, w = image.shape[:2]
        else:  # Moonshot's processor sizes the image as stored: no EXIF orientation
            w, h = (image if isinstance(image, Image.Image) else decode(image, exif=False)).size
        return int(self.layout.image(w, h).num_tokens)


class KimiK25Processor:
    """The processor object `KimiK25Renderer(tokenizer, processor=...)` takes: it reads only
    `.image_processor`."""

    def __init__(self, image_processor: KimiK25ImageProcessor | None = None) -> None:
        self.image_processor = image_processor or KimiK25ImageProcessor()
