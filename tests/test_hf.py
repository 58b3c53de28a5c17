"""The drop-in processor returns the reference processor's dict, key by key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from conftest import BACKENDS, QWEN_PRESETS, qwen_reference, require_torch
from images import encode, make_image
from rawmm import Layout
from rawmm.hf import ImageProcessor


def assert_same_dict(ref: dict, got: dict) -> None:
    assert set(ref) == set(got)
    for key in ref:
        r, g = np.asarray(ref[key]), got[key]
        assert isinstance(g, np.ndarray) and g.dtype == r.dtype and g.shape == r.shape, key
        assert np.array_equal(g.view(np.uint8), r.view(np.uint8)), key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", QWEN_PRESETS)
def test_qwen_dict_for_every_input_type(tmp_path: Path, name: str, backend: str) -> None:
    layout = Layout.preset(name, backend=backend)
    ref, proc = qwen_reference(layout), ImageProcessor(layout)
    rgba = make_image("RGBA", 150, 90, "noise", 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rot.jpg"
    rotated.write_bytes(encode(make_image("RGB", 100, 60, "gradient", 2), "JPEG", exif=exif.tobytes()))
    alpha_png = tmp_path / "alpha.png"
    alpha_png.write_bytes(encode(rgba))
    inputs = [
        rgba,  # PIL: alpha composited, no EXIF
        np.asarray(make_image("RGBA", 64, 40, "noise", 3)),  # ndarray RGBA: composited
        str(rotated),  # path: EXIF applied
        str(alpha_png),  # path: alpha dropped
        make_image("P+tRNS", 33, 71, "blocks", 4),
    ]
    for images in (inputs, inputs[2:3], [inputs[0]]):
        assert_same_dict(ref(images=images, return_tensors="np"), proc(images=images, return_tensors="np"))
        assert_same_dict(
            ref.preprocess(images, return_tensors="np"), proc.preprocess(images, return_tensors="np")
        )
    for attr in ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std"):
        assert list(np.atleast_1d(getattr(proc, attr))) == list(np.atleast_1d(getattr(ref, attr))), attr


@pytest.mark.parametrize("backend", BACKENDS)
def test_from_pretrained_matches_auto_image_processor(tmp_path: Path, backend: str) -> None:
    cfg = {
        "min_pixels": 3136,
        "max_pixels": 200704,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    if backend == "torchvision":
        require_torch()
        # What an inference server loads: no backend argument, torch installed.
        ref = AutoImageProcessor.from_pretrained(tmp_path)
        assert type(ref).__name__ == "Qwen2VLImageProcessor"
        proc = ImageProcessor.from_pretrained(tmp_path)
    else:
        ref = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
        proc = ImageProcessor.from_pretrained(tmp_path, backend="pil")
    images = [make_image("RGB", 640, 480, "noise", 5), make_image("LA", 100, 300, "gradient", 6)]
    assert_same_dict(ref(images=images, return_tensors="np"), proc(images=images, return_tensors="np"))


def test_unsupported_options() -> None:
    proc = ImageProcessor(Layout.preset("qwen3_vl"))
    im = make_image("RGB", 32, 32)
    with pytest.raises(ValueError, match="numpy"):
        proc(images=[im], return_tensors="pt")
    with pytest.raises(ValueError, match="overrides"):
        proc(images=[im], max_pixels=1000)
    assert proc(images=im, do_resize=None)["pixel_values"].shape == (256, 1536)
    # bytes are decoded like a file path
    assert proc(images=[encode(im)])["pixel_values"].shape == (256, 1536)
    assert repr(proc).startswith("rawmm.hf.ImageProcessor(Layout('qwen3_vl'")
