"""Deterministic test images: content kinds and every PIL mode the pipeline must handle."""

from __future__ import annotations

import io
import warnings

import numpy as np
from hypothesis import strategies as st
from PIL import Image, ImageOps

MODES = ["RGB", "RGBA", "LA", "L", "P", "P+tRNS", "L+tRNS", "RGB+tRNS", "PA", "1", "I;16", "CMYK", "I", "F"]
CONTENT = ["noise", "gradient", "flat", "blocks"]


def content(kind: str, w: int, h: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    if kind == "gradient":
        y = np.linspace(0, 255, h)[:, None, None]
        x = np.linspace(0, 255, w)[None, :, None]
        phase = rng.uniform(0, 1, c)[None, None, :]
        return ((x * phase + y * (1 - phase)) % 256).astype(np.uint8)
    if kind == "flat":
        return np.broadcast_to(rng.integers(0, 256, c, dtype=np.uint8), (h, w, c)).copy()
    out = np.broadcast_to(rng.integers(0, 256, c, dtype=np.uint8), (h, w, c)).copy()
    for _ in range(4):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        out[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = rng.integers(0, 256, c)
    return out


def make_image(mode: str, w: int, h: int, kind: str = "noise", seed: int = 0) -> Image.Image:
    """A PIL image of `mode` (with `+tRNS` for a transparency entry)."""
    base = mode.split("+")[0]
    if base in ("RGB", "RGBA", "CMYK"):
        im = Image.fromarray(content(kind, w, h, len(base), seed), base)
    elif base == "LA":
        im = Image.fromarray(content(kind, w, h, 2, seed), "LA")
    elif base in ("L", "1", "P", "PA"):
        im = Image.fromarray(content(kind, w, h, 1, seed)[:, :, 0], "L")
        if base == "1":
            im = im.convert("1")
        elif base in ("P", "PA"):
            im = Image.fromarray(content(kind, w, h, 3, seed), "RGB").quantize(
                colors=37, dither=Image.Dither.NONE
            )
            if base == "PA":
                im = im.convert("PA")
    elif base == "I;16":
        arr = (content(kind, w, h, 2, seed).astype(np.uint16) * 7).sum(axis=2).astype(np.uint16)
        im = Image.frombytes("I;16", (w, h), arr.astype("<u2").tobytes())
    elif base == "I":
        arr = content(kind, w, h, 1, seed)[:, :, 0].astype(np.int32) * 3 - 200
        im = Image.fromarray(arr)
    elif base == "F":
        arr = content(kind, w, h, 1, seed)[:, :, 0].astype(np.float32) * 1.13 - 20.5
        im = Image.fromarray(arr)
    else:
        raise ValueError(mode)
    if mode.endswith("+tRNS"):
        if base == "P":
            im.info["transparency"] = bytes(range(0, 256, 7))[:37]
        elif base == "L":
            im.info["transparency"] = int(np.asarray(im)[0, 0])
        else:
            im.info["transparency"] = tuple(int(v) for v in np.asarray(im)[0, 0])
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


sides = st.one_of(st.integers(1, 48), st.integers(1, 400), st.integers(1, 1300), st.integers(1, 2500))
modes = st.sampled_from(MODES)
kinds = st.sampled_from(CONTENT)
seeds = st.integers(0, 2**32 - 1)


def pillow_reference(data: bytes, *, exif: bool, composite: bool) -> np.ndarray:
    """rawmm's decode rules written with Pillow's public API only: decode, EXIF transpose, then
    LA/RGBA for images with alpha when compositing, RGB for the modes the core does not take."""
    im = Image.open(io.BytesIO(data))
    im.load()
    if exif:
        im = ImageOps.exif_transpose(im)
    has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # P with bytes transparency converted to RGB
        if has_alpha and composite:
            if im.mode not in ("LA", "RGBA"):
                im = im.convert("RGBA")
        elif im.mode not in ("L", "RGB", "LA", "RGBA"):
            im = im.convert("RGB")
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr
