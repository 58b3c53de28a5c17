"""The family registries (`rawmm.families`, `rust/core/src/families`): every preset's family is
registered on both sides under one name, and whatever is not registered is a typed error."""

from __future__ import annotations

import numpy as np
import pytest

from rawmm import Layout, LayoutError, _core, adapter_for
from rawmm.adapters import Adapter
from rawmm.families import FAMILIES, MODEL_TYPES, PRESETS, family


def test_every_preset_is_served_by_its_registered_family() -> None:
    assert set(FAMILIES) == {"qwen_vl", "kimi_k25", "glm4v", "gemma4", "inkling", "nemotron_h_omni"}
    for model, (name, knobs, _) in PRESETS.items():
        layout = Layout.preset(model)
        fam = family(name)
        assert layout.family == name == fam.name and model in fam.presets
        assert isinstance(adapter_for(layout), Adapter) and adapter_for(layout).family == name
        # The Rust registry builds the same family from the same knobs.
        core = _core.LayoutCore(name, **{k: v for k, v in knobs.items() if k != "resample"})
        assert core.family == name and core.fingerprint == layout.fingerprint
        image = np.zeros((40, 60, 3), np.uint8)
        assert list(layout.pixel_values(image).pixel_values.shape[1:]) == core.row_shape
    assert set(MODEL_TYPES.values()) <= set(PRESETS)


def test_unregistered_families_and_knobs_are_layout_errors() -> None:
    with pytest.raises(LayoutError, match="unknown family"):
        family("llava")
    with pytest.raises(LayoutError, match="unknown family"):
        _core.LayoutCore(
            "llava",
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            rescale_factor=1 / 255,
            resize_compat="pillow13",
            exif_policy="apply",
            alpha_policy="composite_white",
        )
    knobs = {k: v for k, v in PRESETS["qwen3_vl"][1].items() if k != "resample"}
    with pytest.raises(LayoutError, match="has no knob"):
        _core.LayoutCore("qwen_vl", **knobs, merge_kernel_size=2)
    with pytest.raises(LayoutError, match="missing knob max_pixels"):
        _core.LayoutCore("qwen_vl", **{k: v for k, v in knobs.items() if k != "max_pixels"})
