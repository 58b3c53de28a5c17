"""From images (PIL, arrays, encoded bytes, paths) to `pixel_values` (pixels.md).

Pillow decodes and performs the mode conversions that need its own tables (P, 1, CMYK, I;16,
F); the Rust core does everything image-sized after that with the GIL released: alpha
compositing, Pillow-exact resize, normalisation and patch packing.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, UnidentifiedImageError

from . import _core
from ._files import read_regular
from ._pool import pool
from .errors import ImageDecodeError, LayoutError, LimitExceededError, RawmmError

if TYPE_CHECKING:
    from .layout import Layout

__all__ = [
    "DECODE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "ImageInput",
    "PixelValues",
    "Probe",
    "decode",
    "decode_rgb",
    "probe",
    "resize_bicubic",
]

#: Outputs without `out` this large come from the process-wide pool: glibc's largest mmap
#: threshold, above which every allocation is a fresh mapping (smaller ones malloc reuses).
POOLED_BYTES = 32 << 20
_POOLED: dict[str, type[np.generic]] = {"float32": np.float32, "uint8": np.uint8}

ImageInput = Image.Image | np.ndarray | bytes | bytearray | memoryview | str | os.PathLike[str]

#: vLLM 0.33's VLLM_MAX_IMAGE_PIXELS default and Pillow's bomb threshold (refs.md §6).
MAX_IMAGE_PIXELS = 178_956_970
#: The byte cap of files read without a store (refs.md §6 rule 5's default).
MAX_BYTES = 64 << 20
#: Decode allow-list (refs.md §6 rule 8). MPO is how Pillow names multi-picture JPEGs.
DECODE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True, slots=True)
class PixelValues:
    """`pixel_values` of a batch, with one grid row and one token count per image."""

    pixel_values: np.ndarray
    grid_thw: npt.NDArray[np.int64]
    num_tokens: list[int]


@dataclass(frozen=True, slots=True)
class Probe:
    """What decoding frame 0 would give, read without decoding pixels: the stored size and the
    transpose the orientation asks for."""

    width: int
    height: int
    transpose: Image.Transpose | None

    @property
    def oriented(self) -> tuple[int, int]:
        """Width and height after the transpose."""
        swap = self.transpose in _SWAPS
        return (self.height, self.width) if swap else (self.width, self.height)


# ImageOps.exif_transpose's table, looked up the same way (so 6.0 counts as 6, "6" does not).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS = {_TRANSPOSE[5], _TRANSPOSE[6], _TRANSPOSE[7], _TRANSPOSE[8]}
_FORMATS = tuple(sorted(DECODE_FORMATS - {"MPO"}))  # JPEG's opener also opens MPO


def _transpose_of(im: Image.Image) -> Image.Transpose | None:
    """The transpose `ImageOps.exif_transpose` applies: the EXIF Orientation, else XMP's
    `tiff:Orientation`, from the image's metadata as `Image.getexif` reads it."""
    value = Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1)
    try:
        return _TRANSPOSE.get(value)
    except TypeError:  # unhashable value: exif_transpose would fail the same way
        raise ImageDecodeError(f"unusable EXIF orientation {value!r}") from None


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of a PIL image once its EXIF orientation is applied (`decode`'s rule), from
    the metadata it still carries (a `convert`ed copy keeps it)."""
    return (im.height, im.width) if _transpose_of(im) in _SWAPS else im.size


def _png_trailing_metadata(im: Image.Image, size: int) -> None:
    """What `PngImageFile.load_end` adds to `info` after the image data (eXIf, text and XMP
    chunks), with Pillow's own chunk handlers and the image data skipped, not decoded. Pillow's
    orientation of a PNG depends on them, so describe must see what a decode sees."""
    png, fp = im.png, im.fp  # type: ignore[attr-defined]

    def skip(n: int) -> None:  # ImageFile._safe_read without copying the bytes
        if fp.tell() + n > size:
            raise OSError("Truncated File Read")
        fp.seek(n, io.SEEK_CUR)

    fp.seek(im._PngImageFile__prepare_idat, io.SEEK_CUR)  # type: ignore[attr-defined]  # 1st IDAT
    while True:  # PngImageFile.load_end's loop (Pillow 13.0.0)
        fp.read(4)  # CRC
        try:
            cid, pos, length = png.read()
        except (struct.error, SyntaxError):
            break
        if cid == b"IEND" or (cid == b"fcTL" and im.is_animated):  # type: ignore[attr-defined]
            break
        try:
            png.call(cid, pos, length)
        except UnicodeDecodeError:
            break
        except EOFError:
            skip(length - 4 if cid == b"fdAT" else length)
        except AttributeError:
            skip(length)


def _claimed_size(data: bytes, name: str, max_pixels: int, check: Callable[[int, int], Any] | None) -> None:
    """The pixel cap (and a length surely too short) on what the header claims, before Pillow
    reads anything; for WebP, whose
    reader allocates the canvas when opening, the layout too. A header rawmm cannot read is
    left to Pillow, which then decides."""
    try:
        ext, w, h, min_bytes = _core.read_header(data)
    except ImageDecodeError:
        return
    if w * h > max_pixels:
        raise LimitExceededError(f"{name}: {w}x{h} pixels exceed the cap of {max_pixels}")
    if len(data) < min_bytes:  # Pillow would fail too, after allocating and decoding
        raise ImageDecodeError(f"{name}: truncated: a {w}x{h} {ext} needs at least {min_bytes} bytes")
    if check is not None and ext == "webp":
        check(w, h)


def _open(data: bytes, name: str, *, max_pixels: int, check: Callable[[int, int], Any] | None) -> Image.Image:
    """Pillow's image of frame 0, opened (header only), allow-listed and within the caps."""
    _claimed_size(data, name, max_pixels, check)
    with warnings.catch_warnings():
        # rawmm applies its own pixel cap; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im: Image.Image = Image.open(io.BytesIO(data), formats=_FORMATS)
        except UnidentifiedImageError:
            raise ImageDecodeError(
                f"{name}: not an image, or an unsupported image format (rawmm decodes "
                + ", ".join(sorted(DECODE_FORMATS))
                + ")"
            ) from None
    if im.width * im.height > max_pixels:
        raise LimitExceededError(f"{name}: {im.width}x{im.height} pixels exceed the cap of {max_pixels}")
    if check is not None:
        check(im.width, im.height)
    return im


@contextlib.contextmanager
def _pillow_errors(name: str) -> Iterator[None]:
    """Pillow's errors on hostile bytes, as rawmm's: its plugins raise many types (struct.error,
    TypeError, KeyError... from fuzzed metadata), all meaning the data is unusable."""
    try:
        yield
    except RawmmError:
        raise
    except (Image.DecompressionBombError, MemoryError) as e:
        raise LimitExceededError(f"{name}: {e}") from None
    except Exception as e:
        raise ImageDecodeError(f"{name}: cannot decode image: {type(e).__name__}: {e}") from None


def probe(
    data: bytes,
    *,
    exif: bool = True,
    composite: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
    check: Callable[[int, int], Any] | None = None,
) -> Probe:
    """Size and orientation of frame 0 exactly as `decode` will produce it, without decoding
    pixels. `check(width, height)` (e.g. a layout) runs on the claimed size before Pillow
    opens anything, and again on Pillow's. `composite`: refuse, as decoding will, a palette
    whose alphas Pillow cannot apply."""
    name = f"<{len(data)} bytes>"
    with _pillow_errors(name):
        im = _open(data, name, max_pixels=max_pixels, check=check)
        with im:
            if im.format == "TIFF":
                # Pillow's TIFF load applies the orientation itself, whatever the policy; its
                # opened size is already swapped by the tag, so start from the stored one.
                (w, h), transpose = im._tile_size, _transpose_of(im)  # type: ignore[attr-defined]
            else:
                (w, h), transpose = im.size, None
                if exif:
                    if im.format == "PNG":
                        _png_trailing_metadata(im, len(data))
                    transpose = _transpose_of(im)
            t = im.info.get("transparency")  # a late tRNS counts: read above with the trailing chunks
            if composite and im.mode == "P" and isinstance(t, bytes) and len(t) > 256:
                raise ImageDecodeError(f"{name}: {len(t)} palette alphas; a palette has 256 entries")
            return Probe(w, h, transpose)


Source = bytes | bytearray | memoryview | str | os.PathLike[str]


def _read(source: Source, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), f"<{len(source)} bytes>"
    else:
        name = os.fspath(source)
        data = read_regular(name, max_bytes)
    if len(data) > max_bytes:
        raise LimitExceededError(f"{name}: {len(data)} bytes exceed the cap of {max_bytes}")
    return data, name


def decode(
    source: Source,
    *,
    exif: bool = True,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_BYTES,
    check: Callable[[int, int], Any] | None = None,
) -> Image.Image:
    """Decodes frame 0 of encoded bytes or a regular file (of at most `max_bytes`) with Pillow,
    after the pixel cap and `check(width, height)` pass on the header; applies the EXIF
    orientation when `exif`, as `ImageOps.exif_transpose` does."""
    data, name = _read(source, max_bytes)
    with _pillow_errors(name):
        return _load(_open(data, name, max_pixels=max_pixels, check=check), exif)


def _load(im: Image.Image, exif: bool) -> Image.Image:
    im.load()
    if exif:
        transpose = _transpose_of(im)
        if transpose is not None:
            im = im.transpose(transpose)
    return im


def decode_rgb(
    source: Source,
    *,
    exif: bool,
    composite: bool,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_BYTES,
    check: Callable[[int, int], Any] | None = None,
) -> np.ndarray:
    """The RGB raster the pixel pipeline resizes, as an (H, W, 3) uint8 array: `decode`, then
    transformers' conversion (alpha composited on opaque white when `composite`, else dropped;
    grey replicated), the same bytes the core derives from `decode_array`'s pixels. A JPEG the
    Rust decoder takes (L or RGB) skips Pillow's decode and conversion."""
    data, name = _read(source, max_bytes)
    header = _jpeg_header(data, name, exif=exif, max_pixels=max_pixels, check=check)
    if header is not None:
        arr = header.decode(data, composite)
        if arr is not None:  # L or RGB, transposed; L → RGB replicates, as Pillow's convert
            return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
    with _pillow_errors(name):
        im = _load(_open(data, name, max_pixels=max_pixels, check=check), exif)
    has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
    try:
        if has_alpha and composite:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im.convert("RGBA"))
        im = im.convert("RGB")
    except (ValueError, OSError) as e:  # e.g. a palette whose tRNS has more than 256 entries
        raise ImageDecodeError(f"cannot convert mode {im.mode!r} to RGB: {e}") from None
    if im.width == 0 or im.height == 0:
        raise ImageDecodeError(f"image has no pixels: {im.width}x{im.height}")
    return np.asarray(im)


# What the core accepts: a (H, W, C) uint8 array, or a zero-copy view of a PIL image.
CoreImage = np.ndarray | tuple[Any, Any, int, int, int, bool]


def decode_array(
    source: Source,
    *,
    exif: bool,
    composite: bool,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_BYTES,
    check: Callable[[int, int], Any] | None = None,
    threads: int | None = None,
) -> CoreImage:
    """`decode` then `to_array`'s conversion, with PNG and JPEG pixels decoded by the Rust core
    (GIL released, no PIL image): Pillow opens the header (and, for a PNG, reads the metadata
    after the image data, as its `load` would); the core decodes to the same raster
    (`_core.decode_png`, `_core.decode_jpeg`) or declines, and then Pillow decodes. `threads`
    (None = all cores): two libjpeg decompressors share a large JPEG."""
    data, name = _read(source, max_bytes)
    header = _rust_header(data, name, exif=exif, max_pixels=max_pixels, check=check)
    return _decode_array(
        data,
        name,
        header,
        exif=exif,
        composite=composite,
        max_pixels=max_pixels,
        check=check,
        threads=threads,
    )


def encoded_pixel_values(
    layout: Layout,
    source: Source,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_BYTES,
    check: Callable[[int, int], Any] | None = None,
    out: np.ndarray | None = None,
    threads: int | None = None,
    dtype: str = "float32",
) -> PixelValues:
    """`pixel_values` of one encoded image, its header read once: streamed into the resize
    where that applies (`stream_pixel_values`), else decoded whole (`decode_array`)."""
    data, name = _read(source, max_bytes)
    knobs = layout.knobs
    exif, composite = knobs["exif_policy"] == "apply", knobs["alpha_policy"] == "composite_white"
    header = _rust_header(data, name, exif=exif, max_pixels=max_pixels, check=check)
    pv = _stream(layout, data, header, out=out, threads=threads, dtype=dtype)
    if pv is not None:
        return pv
    arr = _decode_array(
        data,
        name,
        header,
        exif=exif,
        composite=composite,
        max_pixels=max_pixels,
        check=check,
        threads=threads,
    )
    return core_pixel_values(layout, [arr], dtype=dtype, out=out, threads=threads)


def stream_pixel_values(
    layout: Layout,
    source: Source,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_BYTES,
    check: Callable[[int, int], Any] | None = None,
    out: np.ndarray | None = None,
    threads: int | None = None,
) -> PixelValues | None:
    """`pixel_values` of one PNG or JPEG without ever holding its decoded image: the Rust core
    decodes rows a block at a time straight into the resize (`LayoutCore.png_pixel_values`,
    `LayoutCore.jpeg_pixel_values`). None where that path does not apply (another format, an
    EXIF rotation or flip, an interlaced PNG, a CMYK JPEG, a resize that runs vertically first,
    anything the Rust decoders decline): the caller then decodes whole."""
    data, name = _read(source, max_bytes)
    exif = layout.knobs["exif_policy"] == "apply"
    header = _rust_header(data, name, exif=exif, max_pixels=max_pixels, check=check)
    return _stream(layout, data, header, out=out, threads=threads)


def rust_decode(data: bytes, *, exif: bool, composite: bool) -> np.ndarray | None:
    """The Rust core's decode of a PNG or JPEG, or None where only Pillow should decode it."""
    header = _rust_header(data, f"<{len(data)} bytes>", exif=exif)
    return None if header is None else header.decode(data, composite)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


@dataclass(frozen=True, slots=True)
class _PngHeader:
    """What the Rust core needs of a PNG from Pillow: its size and mode, `info["transparency"]`
    as `decode_png` takes it, and the orientation's transpose."""

    size: tuple[int, int]
    mode: str
    transparency: dict[str, Any]
    transpose: Image.Transpose | None

    def decode(self, data: bytes, composite: bool, threads: int | None = None) -> np.ndarray | None:
        op = None if self.transpose is None else int(self.transpose)  # PNG rows decode in order
        return _core.decode_png(data, self.mode, **self.transparency, composite=composite, transpose=op)

    def stream(self, layout: Layout, data: bytes, **kw: Any) -> tuple[np.ndarray, Any, list[int]] | None:
        return layout._core.png_pixel_values(data, self.mode, **self.transparency, **kw)


@dataclass(frozen=True, slots=True)
class _JpegHeader:
    """What the Rust core needs of a JPEG from Pillow: the size and mode (L or RGB) it read,
    and the orientation's transpose."""

    size: tuple[int, int]
    mode: str
    transpose: Image.Transpose | None

    def decode(self, data: bytes, composite: bool, threads: int | None = None) -> np.ndarray | None:
        op = None if self.transpose is None else int(self.transpose)
        return _core.decode_jpeg(data, self.size, self.mode, transpose=op, threads=threads)

    def stream(self, layout: Layout, data: bytes, **kw: Any) -> tuple[np.ndarray, Any, list[int]] | None:
        return layout._core.jpeg_pixel_values(data, self.size, self.mode, **kw)


def _rust_header(
    data: bytes,
    name: str,
    *,
    exif: bool,
    max_pixels: int = MAX_IMAGE_PIXELS,
    check: Callable[[int, int], Any] | None = None,
) -> _PngHeader | _JpegHeader | None:
    """What the Rust core needs of a PNG or JPEG (`_png_header`, `_jpeg_header`); None for
    another format, or a file only Pillow should decode."""
    if data.startswith(PNG_SIGNATURE):
        return _png_header(data, name, exif=exif, max_pixels=max_pixels, check=check)
    return _jpeg_header(data, name, exif=exif, max_pixels=max_pixels, check=check)


def _png_header(
    data: bytes, name: str, *, exif: bool, max_pixels: int, check: Callable[[int, int], Any] | None
) -> _PngHeader | None:
    """Pillow opens the PNG (caps and `check` first) and reads the chunks after the image data
    as its `load` would, which can add transparency and eXIf."""
    with _pillow_errors(name), _open(data, name, max_pixels=max_pixels, check=check) as im:
        if im.format != "PNG":
            return None
        _png_trailing_metadata(im, len(data))
        transparency = _png_transparency(im.mode, im.info.get("transparency"))
        if transparency is None:
            return None
        return _PngHeader(im.size, im.mode, transparency, _transpose_of(im) if exif else None)


def _jpeg_header(
    data: bytes, name: str, *, exif: bool, max_pixels: int, check: Callable[[int, int], Any] | None
) -> _JpegHeader | None:
    """Pillow opens the JPEG (caps and `check` first); None for any other bytes."""
    if not data.startswith(JPEG_SIGNATURE):
        return None
    with _pillow_errors(name), _open(data, name, max_pixels=max_pixels, check=check) as im:
        # MPO (multi-picture) files and CMYK or YCCK JPEGs stay with Pillow.
        if im.format != "JPEG" or im.mode not in ("L", "RGB"):
            return None
        return _JpegHeader(im.size, im.mode, _transpose_of(im) if exif else None)


def _decode_array(
    data: bytes,
    name: str,
    header: _PngHeader | _JpegHeader | None,
    *,
    exif: bool,
    composite: bool,
    max_pixels: int,
    check: Callable[[int, int], Any] | None,
    threads: int | None = None,
) -> CoreImage:
    if header is not None:
        arr = header.decode(data, composite, threads)
        if arr is not None:
            return arr
    with _pillow_errors(name):
        im = _load(_open(data, name, max_pixels=max_pixels, check=check), exif)
    return _pil_to_array(im, composite)


def _stream(
    layout: Layout,
    data: bytes,
    header: _PngHeader | _JpegHeader | None,
    *,
    out: np.ndarray | None,
    threads: int | None,
    dtype: str = "float32",
) -> PixelValues | None:
    if header is None or header.transpose is not None:  # a transpose needs the whole image
        return None
    if out is None:  # as in `core_pixel_values`
        out = _pooled(layout, [header.size], dtype)
    res = header.stream(layout, data, dtype=dtype, threads=threads, out=out)
    if res is None:
        return None
    values, grid, tokens = res
    return PixelValues(pixel_values=values, grid_thw=grid, num_tokens=tokens)


def _png_transparency(mode: str, t: object) -> dict[str, Any] | None:
    """Pillow's `info["transparency"]` of a PNG as `decode_png`'s arguments: the palette
    alphas `convert` would set, or the colour key; None for what only Pillow should handle."""
    if t is None:
        return {}
    if mode == "P":
        if isinstance(t, bytes) and len(t) <= 256:  # Pillow refuses longer ones on convert
            return {"alphas": t}
        if isinstance(t, int) and 0 <= t < 256:
            return {"alphas": b"\xff" * t + b"\x00"}
    elif mode in ("1", "L", "I;16") and isinstance(t, int) and 0 <= t < 1 << 16:
        return {"key": (t, t, t)}
    elif mode == "RGB" and isinstance(t, tuple) and len(t) == 3 and all(0 <= v < 1 << 16 for v in t):
        return {"key": t}
    return None


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
    # P, PA, and L/RGB with a colour key composite from RGBA; LA/RGBA drop alpha in the core.
    target = "RGBA" if has_alpha and composite else "RGB"
    if im.mode not in (("LA", "RGBA") if target == "RGBA" else ("L", "RGB", "LA", "RGBA")):
        try:  # e.g. a palette whose tRNS has more than 256 entries: transformers' convert fails too
            im = im.convert(target)
        except (ValueError, OSError) as e:
            raise ImageDecodeError(f"cannot convert mode {im.mode!r} to {target}: {e}") from None
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


def to_array(
    image: ImageInput, *, exif: bool, composite: bool, check: Callable[[int, int], Any] | None = None
) -> CoreImage:
    """Any supported input as pixels the core reads without copying; encoded inputs are
    `check`ed on their header before decoding."""
    if isinstance(image, np.ndarray):
        return _array_input(image)
    if isinstance(image, Image.Image):
        return _pil_to_array(image, composite)
    if isinstance(image, bytes | bytearray | memoryview | str | os.PathLike):
        return decode_array(image, exif=exif, composite=composite, check=check)
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
    out: np.ndarray | None = None,
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
        # The layout refuses a geometry (aspect ratio, size) before anything is decoded.
        return to_array(x, exif=exif, composite=composite, check=layout.image)

    # Pillow releases the GIL while decoding, so encoded inputs decode in parallel.
    encoded = sum(not isinstance(x, np.ndarray | Image.Image) for x in items)
    workers = min(encoded, threads or os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            arrays = list(ex.map(load, items))
    else:
        arrays = [load(x) for x in items]
    return core_pixel_values(layout, arrays, dtype=dtype, threads=threads, out=out)


def _check_options(dtype: str, threads: int | None) -> None:
    if dtype not in ("float32", "bfloat16", "uint8"):
        raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'uint8', got {dtype!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")


def core_pixel_values(
    layout: Layout,
    images: list[CoreImage],
    *,
    dtype: str = "float32",
    threads: int | None = None,
    out: np.ndarray | None = None,
) -> PixelValues:
    """The Rust pipeline on already-loaded pixels (GIL released inside), into `out` if given.
    Otherwise an output of `POOLED_BYTES` or more (float32, uint8) goes into memory from the
    process-wide pool (`rawmm._pool`), reused once the caller drops it: malloc maps such
    buffers afresh on every call, and faulting their pages in costs more than the pipeline."""
    _check_options(dtype, threads)
    bf16 = dtype == "bfloat16"
    target = None
    if out is None:
        sizes = [
            (im.shape[1], im.shape[0]) if isinstance(im, np.ndarray) else (im[2], im[3]) for im in images
        ]
        target = out = _pooled(layout, sizes, dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise LayoutError(f"out must be a numpy array, got {type(out).__name__}")
        # bfloat16 arrays (ml_dtypes) are written through their uint16 bits.
        target = out.view(np.uint16) if bf16 and out.dtype.itemsize == 2 and out.dtype.kind == "V" else out
    values, grid, tokens = layout._core.pixel_values(images, dtype=dtype, threads=threads, out=target)
    return PixelValues(pixel_values=values if out is None else out, grid_thw=grid, num_tokens=tokens)


def _pooled(layout: Layout, sizes: list[tuple[int, int]], dtype: str) -> np.ndarray | None:
    """Memory from the process-wide pool for the output of images of `sizes` (width, height),
    when it takes `POOLED_BYTES` or more (float32, uint8); else None."""
    if dtype not in _POOLED:
        return None
    rows = sum(layout.image_rows(layout.image(w, h).grid_thw) for w, h in sizes)
    shape = output_shape(layout, rows)
    if int(np.prod(shape)) * np.dtype(_POOLED[dtype]).itemsize < POOLED_BYTES:
        return None
    return pool().take(shape, _POOLED[dtype])


def output_shape(layout: Layout, rows: int) -> tuple[int, ...]:
    """`pixel_values`' shape for `rows` patch rows (Qwen: (rows, 3·T·p²); Kimi: (rows, 3, p, p))."""
    return (rows, *layout._core.row_shape)


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
