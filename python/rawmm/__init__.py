"""rawmm: raw multimodal refs for VLM training and inference.

Exact image/video layouts and bit-identical `pixel_values` for Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
Qwen3.5 and Kimi K2.5, computed by a Rust core.
"""

from __future__ import annotations

from . import hf, interop
from .adapters import (
    Adapter,
    Descriptor,
    KimiK25Adapter,
    Materializer,
    ModelInputs,
    QwenVLAdapter,
    adapter_for,
)
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
from .hashing import fingerprint_bytes, fingerprint_file, pixel_fingerprint, verify
from .layout import ImageLayout, Layout, VideoLayout
from .pixels import PixelValues, resize_bicubic
from .refs import RawMMItem, RawMMRef, descriptor_only, parse_raw_mm_item, raw_mm_item
from .store import Asset, AssetStore

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "Asset",
    "AssetNotFoundError",
    "AssetStore",
    "Descriptor",
    "ImageDecodeError",
    "ImageLayout",
    "IntegrityError",
    "KimiK25Adapter",
    "Layout",
    "LayoutError",
    "LimitExceededError",
    "Materializer",
    "ModelInputs",
    "PixelValues",
    "QwenVLAdapter",
    "RawMMItem",
    "RawMMRef",
    "RawmmError",
    "RefFormatError",
    "UnsafePathError",
    "VideoLayout",
    "__version__",
    "adapter_for",
    "descriptor_only",
    "fingerprint_bytes",
    "fingerprint_file",
    "hf",
    "interop",
    "parse_raw_mm_item",
    "pixel_fingerprint",
    "raw_mm_item",
    "resize_bicubic",
    "verify",
]
