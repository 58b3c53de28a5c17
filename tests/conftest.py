"""Shared fixtures: the reference implementations rawmm must equal, and golden data."""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# A bounded default profile keeps `make test` within minutes; RAWMM_HYPOTHESIS=thorough digs deeper.
settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("RAWMM_HYPOTHESIS", "default"))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GOLDEN = Path(__file__).parent / "golden"
QWEN_PRESETS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5"]
BACKENDS = ["torchvision", "pil"]


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch() -> None:
    """The torchvision backend's live reference needs torch (the `torch` extra). CI installs it,
    so there a missing torch fails the run; elsewhere the test is skipped and
    test_torchvision_digests.py still checks rawmm against committed reference digests."""
    if have_torch():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("torch/torchvision are not installed, but CI must run the torchvision-backend tests")
    pytest.skip("torch is not installed (pip install -e '.[torch]')")


def golden(name: str) -> Any:
    """Golden data: `../shared/golden` when present (the source of truth), else the copy here."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "golden" / name
    return json.loads((shared if shared.is_file() else GOLDEN / name).read_text())


def reference_function(module: Any, name: str, **namespace: Any) -> Callable[..., Any]:
    """Compiles one top-level function from a reference module's own source, for modules that
    import torch at the top (transformers' video processors) and so cannot be imported here."""
    source = inspect.getsource(module) if not isinstance(module, str) else Path(module).read_text()
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    ns: dict[str, Any] = {"math": math, **namespace}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), f"<reference {name}>", "exec"), ns)
    return ns[name]  # type: ignore[no-any-return]


def require_torch_module() -> None:
    """`require_torch` for a whole test module, at import time (before it imports torch)."""
    if have_torch():
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError("torch/torchvision are not installed, but CI must run the torch tests")
    pytest.skip("torch is not installed (pip install -e '.[torch]')", allow_module_level=True)


def qwen_reference(layout: Any) -> Any:
    """The transformers 5.24 image processor of the layout's backend, configured like it:
    `Qwen2VLImageProcessor` (torchvision) or `Qwen2VLImageProcessorPil`."""
    k = layout.knobs
    if k["backend"] == "torchvision":
        require_torch()
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as cls
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as cls
    return cls(
        patch_size=k["patch_size"],
        merge_size=k["merge_size"],
        temporal_patch_size=k["temporal_patch_size"],
        min_pixels=k["min_pixels"],
        max_pixels=k["max_pixels"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


@pytest.fixture(scope="session")
def kimi_golden() -> Any:
    return golden("kimi_k25_image_layout.json")
