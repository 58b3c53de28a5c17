"""The rawmm exception hierarchy (refs.md §7), defined once; the Rust core maps onto it."""

from __future__ import annotations

import errno
import os

__all__ = [
    "AssetNotFoundError",
    "ImageDecodeError",
    "IntegrityError",
    "LayoutError",
    "LimitExceededError",
    "RawmmError",
    "RefFormatError",
    "UnsafePathError",
]


class RawmmError(Exception):
    """Base class of every error rawmm raises on purpose."""


class LayoutError(RawmmError, ValueError):
    """Invalid geometry, knobs, payload shapes, or a grid/fingerprint mismatch."""


class RefFormatError(RawmmError, ValueError):
    """A malformed ref, envelope, hash text or data: URL."""


class IntegrityError(RawmmError):
    """Bytes that do not match their digest."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class AssetNotFoundError(RawmmError, FileNotFoundError):
    """A missing asset or file."""

    def __init__(self, message: str, filename: str | os.PathLike[str] | None = None) -> None:
        super().__init__(errno.ENOENT, message, filename)


class UnsafePathError(RawmmError, PermissionError):
    """An id or URI outside the allowed roots, a symlink escape, or http without opt-in."""

    def __init__(self, message: str, filename: str | os.PathLike[str] | None = None) -> None:
        super().__init__(errno.EACCES, message, filename)


class ImageDecodeError(RawmmError, ValueError):
    """Not an image, an unsupported format or mode, truncated data, or a bad array."""


class LimitExceededError(RawmmError, ValueError):
    """A byte, pixel, length or depth cap was exceeded."""


def show(value: object, limit: int = 80) -> str:
    """A short repr of an untrusted value for an error message (never fails: a 5,000-digit int
    has no repr under Python's int-to-str limit)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
