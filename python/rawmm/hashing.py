"""Digests (hashing.md): BLAKE3 mm_hash of exact bytes, legacy verification, pixel fingerprints."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import numpy as np
from PIL import Image

from . import _core
from .errors import ImageDecodeError, IntegrityError, RefFormatError

__all__ = ["fingerprint_bytes", "fingerprint_file", "pixel_fingerprint", "verify"]

_HEX = re.compile(r"[0-9a-f]+")


def fingerprint_bytes(data: Any) -> str:
    """64 lowercase hex BLAKE3 of any C-contiguous buffer's raw memory (non-contiguous ->
    BufferError). The GIL is released for inputs of 2 KiB or more."""
    return _core.fingerprint_bytes(data)


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a file's bytes, equal to `fingerprint_bytes(open(path).read())`."""
    return _core.fingerprint_file(os.fspath(path))


def legacy_hash(data: Any) -> str:
    """Upstream v2's `sha256(bytes)[:32]`."""
    return hashlib.sha256(data).hexdigest()[:32]


def verify(data: Any, mm_hash: str) -> None:
    """Raises unless `data` matches `mm_hash`: 64 hex is BLAKE3, 32 hex is a legacy SHA-256
    prefix (hashing.md §3); anything else is a RefFormatError."""
    if not isinstance(mm_hash, str) or not _HEX.fullmatch(mm_hash):
        raise RefFormatError(f"mm_hash must be lowercase hex, got {mm_hash!r}")
    if len(mm_hash) == 64:
        actual = fingerprint_bytes(data)
    elif len(mm_hash) == 32:
        actual = legacy_hash(data)
    else:
        raise RefFormatError(f"unverifiable mm_hash length {len(mm_hash)} (want 64 or 32 hex)")
    if actual != mm_hash:
        raise IntegrityError(f"bytes do not match mm_hash {mm_hash}", expected=mm_hash, actual=actual)


_ALIASES = {"RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}
_TO_RGB = {"CMYK", "I", "F", "1"}


def canonical(im: Image.Image) -> tuple[str, np.ndarray]:
    """(mode, row-major pixel bytes) of hashing.md §4's canonical raster."""
    mode = im.mode
    has_key = im.info.get("transparency") is not None
    if mode == "1":
        return "L", np.asarray(im.convert("L"))
    if mode == "P":
        target = "RGBA" if has_key else "RGB"
        return target, np.asarray(im.convert(target))
    if mode in ("L", "RGB") and has_key:
        target = "LA" if mode == "L" else "RGBA"
        return target, np.asarray(im.convert(target))
    if mode in _ALIASES:
        target = _ALIASES[mode]
        return target, np.asarray(im.convert(target))
    if mode.startswith("I;16"):
        arr = np.asarray(im.convert("I;16") if mode != "I;16" else im)
        return "I;16", arr.astype("<u2")
    if mode in _TO_RGB:
        return "RGB", np.asarray(im.convert("RGB"))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return mode, np.asarray(im)
    raise ImageDecodeError(f"no canonical raster for mode {mode!r}")


def pixel_fingerprint(image: Any) -> str:
    """BLAKE3 over the framed canonical raster (hashing.md §4). Encoded bytes and paths are
    decoded (frame 0) with the EXIF orientation applied; PIL images and arrays as given."""
    from .pixels import decode

    if isinstance(image, np.ndarray):
        from ._ingress import array_to_image

        image = array_to_image(image)
    elif not isinstance(image, Image.Image):
        image = decode(image, exif=True)
    mode, pixels = canonical(image)
    pixels = np.ascontiguousarray(pixels)
    return _core.pixel_fingerprint(mode, image.width, image.height, pixels)
