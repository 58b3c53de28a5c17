"""From images (PIL, arrays, encoded bytes, paths) to `pixel_values` (pixels.md).

Pillow decodes and performs the mode conversions that need its own tables (P, 1, CMYK, I;16,
F); the Rust core does everything image-sized after that with the GIL released: alpha
compositing, Pillow-exact resize, normalisation and patch packing.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from . import _core
from .errors import ImageDecodeError, LimitExceededError

if TYPE_CHECKING:
    from .layout import Layout

__all__ = ["DECODE_FORMATS", "MAX_IMAGE_PIXELS", "ImageInput", "PixelValues", "decode", "resize_bicubic"]

ImageInput = Image.Image | np.ndarray | bytes | bytearray | memoryview | str | os.PathLike[str]

#: vLLM 0.33's VLLM_MAX_IMAGE_PIXELS default and Pillow's bomb threshold (refs.md §6).
MAX_IMAGE_PIXELS = 178_956_970
#: Decode allow-list (refs.md §6 rule 8). MPO is how Pillow names multi-picture JPEGs.
DECODE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True, slots=True)
class PixelValues:
    """`pixel_values` of a batch, with one grid row and one token count per image."""

    pixel_values: np.ndarray
    grid_thw: npt.NDArray[np.int64]
    num_tokens: list[int]


def decode(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    exif: bool = True,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Decodes frame 0 of encoded bytes or a file with Pillow, checking the pixel cap on the
    header before any pixel is decoded; applies the EXIF orientation when `exif`."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), f"<{len(source)} bytes>"
    else:
        name = os.fspath(source)
        with open(name, "rb") as f:
            data = f.read()
    # The pixel cap applies to what the header claims, before Pillow decodes anything.
    try:
        _, w, h, _ = _core.read_header(data)
    except ImageDecodeError:
        w = h = 0  # Pillow gives the definitive error below
    if w * h > max_pixels:
        raise LimitExceededError(f"{name}: {w}x{h} pixels exceed the cap of {max_pixels}")
    try:
        with warnings.catch_warnings():
            # rawmm applies its own pixel cap; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            if im.format not in DECODE_FORMATS:
                raise ImageDecodeError(f"{name}: unsupported image format {im.format!r}")
            if im.width * im.height > max_pixels:
                raise LimitExceededError(
                    f"{name}: {im.width}x{im.height} pixels exceed the cap of {max_pixels}"
                )
            im.load()
            if exif:
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:
        raise LimitExceededError(f"{name}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, ImageDecodeError | LimitExceededError):
            raise
        raise ImageDecodeError(f"{name}: cannot decode image: {e}") from None
    return im


# What the core accepts: a (H, W, C) uint8 array, or a zero-copy view of a PIL image.
CoreImage = np.ndarray | tuple[Any, Any, int, int, int, bool]


def _pil_pixels(im: Image.Image) -> CoreImage:
    """Pillow's own buffer through its Arrow export (RGB is stored as RGBX, so no repacking);
    a copy via numpy when the image cannot be exported (multi-block, Pillow < 11.2)."""
    layout = {"L": (1, False), "RGB": (4, False), "RGBA": (4, True)}.get(im.mode)
    if layout is not None and hasattr(im, "__arrow_c_array__"):
        try:
            schema, array = im.__arrow_c_array__()
        except (ValueError, OSError):
            pass
        else:
            return (schema, array, im.width, im.height, *layout)
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _pil_to_array(im: Image.Image, composite: bool) -> CoreImage:
    """Pixels with 1 (L), 2 (LA), 3 or 4 (RGB(X)/RGBA) channels, following transformers'
    rule: an image has alpha if it has an `A` band or a `transparency` entry."""
    has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
    if has_alpha and composite:
        if im.mode not in ("LA", "RGBA"):  # P, PA, and L/RGB with a colour key
            im = im.convert("RGBA")
    elif im.mode not in ("L", "RGB", "LA", "RGBA"):  # LA/RGBA here drop alpha in the core
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageDecodeError(f"cannot convert mode {im.mode!r} to RGB: {e}") from None
    if im.width == 0 or im.height == 0:
        raise ImageDecodeError(f"image has no pixels: {im.width}x{im.height}")
    return _pil_pixels(im)


def _array_input(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ImageDecodeError(f"image arrays must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"image arrays must be HW or HWC with C in 1..4, got shape {arr.shape}")
    # Borrowed as is when already C-contiguous.
    return np.ascontiguousarray(arr)


def to_array(image: ImageInput, *, exif: bool, composite: bool) -> CoreImage:
    """Any supported input as pixels the core reads without copying."""
    if isinstance(image, np.ndarray):
        return _array_input(image)
    if isinstance(image, Image.Image):
        return _pil_to_array(image, composite)
    if isinstance(image, bytes | bytearray | memoryview | str | os.PathLike):
        return _pil_to_array(decode(image, exif=exif), composite)
    raise ImageDecodeError(f"unsupported image input of type {type(image).__name__}")


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, list | tuple):
        return list(images)
    return [images]  # type: ignore[list-item]


def pixel_values(
    layout: Layout,
    images: ImageInput | Sequence[ImageInput],
    *,
    dtype: str = "float32",
    threads: int | None = None,
) -> PixelValues:
    """See `Layout.pixel_values`."""
    _check_options(dtype, threads)
    knobs = layout.knobs
    exif = knobs["exif_policy"] == "apply"
    composite = knobs["alpha_policy"] == "composite_white"
    items = _as_list(images)
    if not items:
        raise ImageDecodeError("no images given")

    def load(x: ImageInput) -> CoreImage:
        return to_array(x, exif=exif, composite=composite)

    # Pillow releases the GIL while decoding, so encoded inputs decode in parallel.
    encoded = sum(not isinstance(x, np.ndarray | Image.Image) for x in items)
    workers = min(encoded, threads or os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            arrays = list(ex.map(load, items))
    else:
        arrays = [load(x) for x in items]
    return core_pixel_values(layout, arrays, dtype=dtype, threads=threads)


def _check_options(dtype: str, threads: int | None) -> None:
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")


def core_pixel_values(
    layout: Layout, images: list[CoreImage], *, dtype: str = "float32", threads: int | None = None
) -> PixelValues:
    """The Rust pipeline on already-loaded pixels (GIL released inside)."""
    _check_options(dtype, threads)
    values, grid, tokens = layout._core.pixel_values(images, bfloat16=dtype == "bfloat16", threads=threads)
    return PixelValues(pixel_values=values, grid_thw=grid, num_tokens=tokens)


def resize_bicubic(
    array: npt.ArrayLike,
    width: int,
    height: int,
    *,
    resize_compat: str = "pillow13",
    threads: int | None = None,
    backend: str = "pil",
) -> npt.NDArray[np.uint8]:
    """Pillow-exact `Image.resize((width, height), BICUBIC)` for uint8 HW/HWC arrays, or with
    `backend="torchvision"` torch's `interpolate(mode="bicubic", antialias=True)` on uint8 (what
    torchvision's resize runs on CPU; `resize_compat` does not apply to it)."""
    arr = np.asarray(array)
    squeeze = arr.ndim == 2
    arr = _array_input(arr)
    out = _core.resize_bicubic(arr, width, height, resize_compat, threads, backend)
    return out[:, :, 0] if squeeze else out
