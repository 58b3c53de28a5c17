"""The public names of api.md and the error hierarchy of refs.md §7."""

from __future__ import annotations

import errno

import rawmm
from rawmm import errors


def test_public_names() -> None:
    for name in (
        "Layout",
        "ImageLayout",
        "VideoLayout",
        "PixelValues",
        "resize_bicubic",
        "fingerprint_bytes",
        "fingerprint_file",
        "verify",
        "pixel_fingerprint",
        "RawMMRef",
        "raw_mm_item",
        "parse_raw_mm_item",
        "RawMMItem",
        "descriptor_only",
        "AssetStore",
        "Asset",
        "adapter_for",
        "QwenVLAdapter",
        "KimiK25Adapter",
        "Descriptor",
        "ModelInputs",
        "Materializer",
        "RawmmError",
        "LayoutError",
        "RefFormatError",
        "IntegrityError",
        "AssetNotFoundError",
        "UnsafePathError",
        "ImageDecodeError",
        "LimitExceededError",
    ):
        assert hasattr(rawmm, name), name
    for name in ("vllm_mm_hash", "sglang_content_hash", "sglang_mm_hash"):
        assert callable(getattr(rawmm.interop, name))
    assert callable(rawmm.hf.ImageProcessor.from_pretrained)


def test_error_hierarchy() -> None:
    base = errors.RawmmError
    for cls, builtin in (
        (errors.LayoutError, ValueError),
        (errors.RefFormatError, ValueError),
        (errors.ImageDecodeError, ValueError),
        (errors.LimitExceededError, ValueError),
        (errors.AssetNotFoundError, FileNotFoundError),
        (errors.UnsafePathError, PermissionError),
    ):
        assert issubclass(cls, base) and issubclass(cls, builtin)
    assert issubclass(errors.IntegrityError, base)
    e = errors.AssetNotFoundError("missing", "/x/a.png")
    assert e.errno == errno.ENOENT and e.filename == "/x/a.png"
    u = errors.UnsafePathError("outside", "/etc/passwd")
    assert u.errno == errno.EACCES and u.filename == "/etc/passwd"
    i = errors.IntegrityError("bad", expected="a" * 64, actual="b" * 64)
    assert (i.expected, i.actual) == ("a" * 64, "b" * 64)


def test_import_rawmm_stays_light() -> None:
    """`import rawmm` (and rawmm.hf's alias) never imports transformers, torch or torchvision."""
    import subprocess
    import sys

    code = (
        "import sys, rawmm, rawmm.hf; "
        "print(sorted(m for m in ('transformers', 'torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
