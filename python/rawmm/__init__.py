"""rawmm: raw multimodal refs for VLM training and inference.

Exact image/video layouts and bit-identical `pixel_values` for Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
Qwen3.5 and Kimi K2.5, computed by a Rust core.
"""

from __future__ import annotations

from . import hf
from .errors import (
    AssetNotFoundError,
    ImageDecodeError,
    IntegrityError,
    LayoutError,
    LimitExceededError,
    RawmmError,
    RefFormatError,
    UnsafePathError,
)
from .layout import ImageLayout, Layout, VideoLayout
from .pixels import PixelValues, resize_bicubic

__version__ = "0.1.0"

__all__ = [
    "AssetNotFoundError",
    "ImageDecodeError",
    "ImageLayout",
    "IntegrityError",
    "Layout",
    "LayoutError",
    "LimitExceededError",
    "PixelValues",
    "RawmmError",
    "RefFormatError",
    "UnsafePathError",
    "VideoLayout",
    "__version__",
    "hf",
    "resize_bicubic",
]
