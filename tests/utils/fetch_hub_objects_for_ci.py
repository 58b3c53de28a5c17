"""Offline stand-in for transformers' `utils/fetch_hub_objects_for_ci.py`, which the vendored
`tests/hf_mixin/test_image_processing_common.py` imports but the 5.24.0 sdist does not ship.
Tests here never reach the hub, so every image URL maps to rawmm's bundled sample photo (a
local 640x480 JPEG): the mixin's backend-equivalence tests then compare on that photo."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "python" / "rawmm" / "samples" / "landscape.jpg"


def url_to_local_path(url: str, return_url_if_not_found: bool = True) -> str:
    return str(SAMPLE)
