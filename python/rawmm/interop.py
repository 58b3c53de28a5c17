"""Digests other servers compute: vLLM 0.33.0's mm_hash and SGLang's content hashes
(hashing.md §7, §8)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image

from . import _core

__all__ = ["sglang_content_hash", "sglang_mm_hash", "vllm_mm_hash"]

ALGORITHMS = ("blake3", "sha256", "sha512")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _frame(b: bytes) -> bytes:
    return _u64(len(b)) + b


def _leaf(b: bytes) -> bytes:
    return b"\x03" + _frame(b)


def _value(v: Any, out: list[bytes]) -> None:
    """vLLM 0.33's item serialisation (hashing.md §7.2); dicts keep insertion order."""
    if v is None:
        out.append(b"\x00")
    elif isinstance(v, _Image):
        out.append(b"\x03" + _frame(b"image"))
        _value(v.inner, out)
    elif isinstance(v, np.ndarray):
        out.append(b"\x03" + _frame(b"ndarray"))
        arr = np.ascontiguousarray(v)
        _value({"dtype": arr.dtype.str, "shape": tuple(arr.shape), "data": arr.tobytes()}, out)
    elif isinstance(v, list | tuple):
        out.append(b"\x01" + _u64(len(v)))
        for e in v:
            _value(e, out)
    elif isinstance(v, dict):
        out.append(b"\x02" + _u64(len(v)))
        for k, e in v.items():
            out.append(_frame(str(k).encode("utf-8")))
            _value(e, out)
    elif isinstance(v, bytes | bytearray | memoryview):
        out.append(b"\x03" + _u64(len(v)))
        out.append(v if isinstance(v, bytes) else bytes(v))
    elif isinstance(v, str):
        out.append(_leaf(v.encode("utf-8")))
    elif isinstance(v, bool | np.bool_):
        out.append(_leaf(np.bool_(v).tobytes()))
    elif isinstance(v, int):
        out.append(_leaf(np.int64(v).tobytes()))
    elif isinstance(v, float):
        out.append(_leaf(np.float64(v).tobytes()))
    else:
        raise TypeError(f"vLLM does not hash {type(v).__name__} values")


class _Image:
    """vLLM's image leaf wrapper around its serialised content."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner


def _needs_io_config(data: bytes) -> bool:
    """True when vLLM's RGB conversion changes the decoded image: a mode other than RGB, or
    RGB with a transparency entry (checked before the same-mode shortcut in 0.33.0)."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # header only: no pixels are decoded
            return im.mode != "RGB" or "transparency" in im.info
    except Exception:
        return False  # unparsable bytes take the plain bytes path; vllm_mm_hash never raises


def _digest(chunks: list[bytes], algorithm: str) -> str:
    if algorithm == "blake3":
        return _core.hash_chunks(chunks)
    h = hashlib.new(algorithm)
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def vllm_mm_hash(
    item: bytes | bytearray | memoryview | Image.Image, *, model_id: str, algorithm: str = "blake3"
) -> str:
    """The `mm_hash` vLLM 0.33.0 computes for one image with the server's default image
    mode and background and no per-request kwargs: encoded bytes, or a decoded PIL image."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if isinstance(item, Image.Image):
        arr = np.asarray(item)
        inner: dict[str, Any] = {"mode": item.mode, "data": arr}
        if item.mode in ("P", "PA") and item.palette is not None:
            inner["palette"] = bytes(item.palette.palette)
            if item.palette.rawmode:
                inner["palette_rawmode"] = item.palette.rawmode
        content: Any = inner
    elif isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        content = data
        if _needs_io_config(data):
            io_config = {"image_mode": "RGB", "rgba_background_color": (255, 255, 255)}
            content = {"io_config": io_config, "data": data}
    else:
        raise TypeError(f"item must be encoded bytes or a PIL image, got {type(item).__name__}")
    chunks: list[bytes] = []
    for key, value in sorted({"image": _Image(content), "model_id": model_id}.items()):
        chunks.append(_frame(key.encode("utf-8")))
        _value(value, chunks)
    return _digest(chunks, algorithm)


def sglang_content_hash(data: Any) -> str:
    """SGLang's `content_hash` of the exact encoded bytes: `sha256:<64 hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sglang_mm_hash(mm_hash: str) -> str:
    """Exactly 16 hex digits: SGLang masks `int(hex, 16)` to 64 bits, keeping the last 16."""
    return mm_hash[:16]
