"""Turning what users pass into stored bytes (refs.md §2.3, §2.4): the extension sniffed from
the leading bytes, `data:` URLs, arrays and PIL images as lossless PNG."""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np
from PIL import Image

from . import _core
from .errors import ImageDecodeError, LimitExceededError, RefFormatError

_DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")


def extension_of(data: bytes) -> str:
    """From the leading bytes only (refs.md §2.3)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    return "img"


def decode_data_url(url: str, *, max_bytes: int) -> bytes:
    """`data:image/<subtype>;base64,<data>` only; the encoded length is capped before decoding."""
    match = _DATA_URL.match(url)
    if not match:
        raise RefFormatError("only data:image/<subtype>;base64,<data> URLs are accepted")
    encoded = url[match.end() :]
    if len(encoded) > 4 * -(-max_bytes // 3):
        raise LimitExceededError(f"data: URL longer than the {max_bytes}-byte cap allows")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:  # ValueError: characters outside ASCII
        raise RefFormatError(f"data: URL is not standard base64: {e}") from None


def array_to_image(arr: np.ndarray) -> Image.Image:
    """uint8 HxW(x1) → L, x2 → LA, x3 → RGB, x4 → RGBA; uint16 HxW → I;16 (refs.md §2.4)."""
    if arr.dtype == np.uint16 and arr.ndim == 2:
        a = np.ascontiguousarray(arr, dtype="<u2")
        return Image.frombytes("I;16", (a.shape[1], a.shape[0]), a.tobytes())
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[2] <= 4):
        raise ImageDecodeError(f"cannot store an array of dtype {arr.dtype} and shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    mode = "L" if arr.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(np.ascontiguousarray(arr), mode)


_CONVERT = {"RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA", "CMYK": "RGB", "I": "RGB", "F": "RGB"}


def encode_png(im: Image.Image) -> bytes:
    """Lossless PNG of an in-memory image with rawmm's pinned Rust encoder (refs.md §2.4)."""
    if im.mode.startswith("I;16") and im.mode != "I;16":
        im = im.convert("I;16")
    elif im.mode in _CONVERT:
        im = im.convert(_CONVERT[im.mode])
    elif im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        raise ImageDecodeError(f"cannot store mode {im.mode!r}")
    w, h = im.size
    if w == 0 or h == 0:
        raise ImageDecodeError("cannot store an empty image")
    palette = trns = None
    key = im.info.get("transparency")
    if im.mode == "1":
        data = im.tobytes("raw", "1")
    elif im.mode == "I;16":
        data = np.asarray(im).astype(">u2").tobytes()
    else:
        data = im.tobytes()
    if im.mode == "P":
        palette = bytes(im.getpalette("RGB") or [])
        if isinstance(key, bytes):
            trns = key
        elif isinstance(key, int):
            trns = bytes([255] * key + [0])
    elif im.mode == "L" and isinstance(key, int):
        trns = key.to_bytes(2, "big")
    elif im.mode == "RGB" and isinstance(key, tuple):
        trns = b"".join(int(v).to_bytes(2, "big") for v in key)
    return _core.encode_png(im.mode, w, h, data, palette, trns)
