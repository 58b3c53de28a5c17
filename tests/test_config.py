"""Reading preprocessor_config.json dicts, files and folders (layout.md §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from conftest import have_torch
from rawmm import Layout, LayoutError
from rawmm.hf import ImageProcessor

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Shapes of the published hub files (layout.md §1.1, §3).
QWEN2_VL = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": CLIP_MEAN,
    "image_processor_type": "Qwen2VLImageProcessor",
    "image_std": CLIP_STD,
    "max_pixels": 12845056,
    "merge_size": 2,
    "min_pixels": 3136,
    "patch_size": 14,
    "processor_class": "Qwen2VLProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"max_pixels": 12845056, "min_pixels": 3136},
    "temporal_patch_size": 2,
}
QWEN2_5_VL = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": CLIP_MEAN,
    "image_std": CLIP_STD,
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
QWEN3_VL = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "crop_size": None,
    "data_format": "channels_first",
    "default_to_square": True,
    "device": None,
    "do_center_crop": None,
    "input_data_format": None,
    "return_tensors": None,
}
QWEN3_VL_VIDEO = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "video_processor_type": "Qwen3VLVideoProcessor",
    "fps": 2,
    "min_frames": 4,
    "max_frames": 768,
    "do_sample_frames": True,
}
KIMI_K25 = {
    "auto_map": {
        "AutoProcessor": "kimi_k25_processor.KimiK25Processor",
        "AutoImageProcessor": "kimi_k25_vision_processing.KimiK25VisionProcessor",
    },
    "media_proc_cfg": {
        "in_patch_limit": 16384,
        "patch_size": 14,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "merge_kernel_size": 2,
        "fixed_output_tokens": None,
        "patch_limit_on_one_side": 512,
        "in_patch_limit_each_frame": 4096,
        "in_patch_limit_video": None,
        "sample_fps": 2.0,
        "max_num_frames_each_video": None,
        "temporal_merge_kernel_size": 4,
        "timestamp_mode": "hh:mm:ss.fff",
        "config_type": None,
    },
    "processor_class": "KimiK25Processor",
    "image_processor_type": "KimiK25VisionProcessor",
}


def hf_knobs(cfg: dict[str, Any]) -> tuple[int, int, int, list[float]]:
    """What transformers 5.24 makes of the same dict (min, max, patch, mean)."""
    init = {k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")}
    proc = Qwen2VLImageProcessorPil(**init)
    return proc.size["shortest_edge"], proc.size["longest_edge"], proc.patch_size, list(proc.image_mean)


@pytest.mark.parametrize(
    ("cfg", "model", "preset"),
    [
        (QWEN2_VL, "qwen2_vl", "qwen2_vl"),
        (QWEN2_5_VL, "qwen2_5_vl", "qwen2_5_vl"),
        (QWEN3_VL, "qwen3_vl", "qwen3_vl"),
    ],
)
def test_hub_configs_give_the_presets(cfg: dict, model: str, preset: str) -> None:
    layout = Layout.from_preprocessor_config(cfg, model=model)
    assert layout == Layout.preset(preset)
    k = layout.knobs
    assert hf_knobs(cfg) == (k["min_pixels"], k["max_pixels"], k["patch_size"], k["image_mean"])


def test_top_level_keys_fold_into_size_like_transformers() -> None:
    cfg = {"size": {"shortest_edge": 1000, "longest_edge": 2000000}, "max_pixels": 2000000}
    layout = Layout.from_preprocessor_config(cfg, model="qwen2_5_vl")
    assert (layout.knobs["min_pixels"], layout.knobs["max_pixels"]) == (1000, 2000000)
    assert hf_knobs(cfg)[:2] == (1000, 2000000)
    # missing keys take the preset's hub values, not the class defaults
    q3 = Layout.from_preprocessor_config({"max_pixels": 1003520}, model="qwen3_vl")
    assert (q3.knobs["patch_size"], q3.knobs["min_pixels"], q3.knobs["image_mean"]) == (16, 65536, [0.5] * 3)
    assert Layout.from_preprocessor_config({}, model="qwen2_vl") == Layout.preset("qwen2_vl")


@pytest.mark.parametrize(
    "cfg",
    [
        {"size": {"shortest_edge": 1000, "longest_edge": 2000000}, "max_pixels": 3000000},  # contradiction
        {"size": {"longest_edge": 2000000}},  # missing edge
        {"size": {"min_pixels": 3136, "max_pixels": 12845056}},  # only min/max keys
        {"size": {"shortest_edge": 0, "longest_edge": 100}},
        {"size": {"height": 224, "width": 224}},
        {"rescale_factor": 0.5},
        {"resample": 2},
        {"do_resize": False},
        {"do_normalize": False},
        {"do_convert_rgb": False},
        {"do_center_crop": True},
        {"do_rescale": 1},  # a truthy int is not the switch value
        {"image_mean": [0.5, 0.5]},
        {"patch_size": 14.0},
        {"some_new_knob": 3},
    ],
)
def test_unreproducible_or_contradictory_configs_raise(cfg: dict) -> None:
    with pytest.raises(LayoutError):
        Layout.from_preprocessor_config(cfg, model="qwen2_5_vl")


def test_ignored_keys() -> None:
    cfg = {
        **QWEN2_5_VL,
        "auto_map": {"AutoProcessor": "x"},
        "_processor_class": "y",
        "crop_size": None,
        "do_center_crop": False,
        "data_format": "channels_first",
    }
    assert Layout.from_preprocessor_config(cfg, model="qwen2_5_vl") == Layout.preset("qwen2_5_vl")


def write_repo(tmp_path: Path, files: dict[str, Any]) -> Path:
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("model_type", "preset"),
    [
        ("qwen2_vl", "qwen2_vl"),
        ("qwen2_5_vl", "qwen2_5_vl"),
        ("qwen3_vl", "qwen3_vl"),
        ("qwen3_vl_moe", "qwen3_vl"),
        ("qwen3_5", "qwen3_5"),
        ("qwen3_5_moe", "qwen3_5"),
    ],
)
def test_folder_maps_model_type(tmp_path: Path, model_type: str, preset: str) -> None:
    cfg = QWEN3_VL if preset.startswith("qwen3") else QWEN2_5_VL
    repo = write_repo(tmp_path, {"preprocessor_config.json": cfg, "config.json": {"model_type": model_type}})
    layout = Layout.from_preprocessor_config(repo)
    assert layout.model == preset
    assert Layout.from_preprocessor_config(repo / "preprocessor_config.json").model == preset


def test_folder_video_config(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path,
        {
            "preprocessor_config.json": QWEN3_VL,
            "video_preprocessor_config.json": QWEN3_VL_VIDEO,
            "config.json": {"model_type": "qwen3_vl"},
        },
    )
    layout = Layout.from_preprocessor_config(repo)
    assert layout == Layout.preset("qwen3_vl")
    # without a video config the video knobs come from preprocessor_config.json
    (repo / "video_preprocessor_config.json").unlink()
    video = Layout.from_preprocessor_config(repo).to_dict()["video"]
    assert (video["min_pixels"], video["max_pixels"]) == (65536, 16777216)
    (tmp_path / "q25").mkdir()
    files = {"preprocessor_config.json": QWEN2_5_VL, "config.json": {"model_type": "qwen2_5_vl"}}
    q25 = write_repo(tmp_path / "q25", files)
    assert Layout.from_preprocessor_config(q25).to_dict()["video"]["max_pixels"] == 12845056


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"config\.json"):
        Layout.from_preprocessor_config(write_repo(tmp_path, {"preprocessor_config.json": QWEN2_5_VL}))
    write_repo(tmp_path, {"config.json": {"model_type": "llava"}})
    with pytest.raises(LayoutError, match="llava"):
        Layout.from_preprocessor_config(tmp_path)
    with pytest.raises(LayoutError):
        Layout.from_preprocessor_config(QWEN2_5_VL)  # a dict needs model=
    with pytest.raises(LayoutError):
        Layout.from_preprocessor_config(tmp_path / "missing.json", model="qwen2_vl")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(LayoutError):
        Layout.from_preprocessor_config(tmp_path / "bad.json", model="qwen2_vl")


def test_kimi_configs(tmp_path: Path) -> None:
    assert Layout.from_preprocessor_config(KIMI_K25, model="kimi_k25") == Layout.preset("kimi_k25")
    pair = {**KIMI_K25, "media_proc_cfg": {**KIMI_K25["media_proc_cfg"], "merge_kernel_size": [2, 2]}}
    assert Layout.from_preprocessor_config(pair, model="kimi_k25") == Layout.preset("kimi_k25")
    port = {
        "size": {"max_height": 512, "max_width": 512},
        "max_patches": 16384,
        "merge_size": 2,
        "patch_size": 14,
    }
    assert Layout.from_preprocessor_config(port, model="kimi_k25") == Layout.preset("kimi_k25")
    for bad in (
        {"size": {"max_height": 512, "max_width": 256}},
        {**KIMI_K25, "merge_size": 3},
        {"media_proc_cfg": {"image_mean": CLIP_MEAN}},
        {"media_proc_cfg": {"in_patch_limit_video": 1000}},
        {"media_proc_cfg": {"timestamp_mode": "seconds"}},
        {"media_proc_cfg": {"merge_kernel_size": [2, 4]}},
        {"media_proc_cfg": {"mystery": 1}},
    ):
        with pytest.raises(LayoutError):
            Layout.from_preprocessor_config(bad, model="kimi_k25")
    repo = write_repo(
        tmp_path, {"preprocessor_config.json": KIMI_K25, "config.json": {"model_type": "kimi_k25"}}
    )
    proc = ImageProcessor.from_pretrained(repo)
    assert proc.layout == Layout.preset("kimi_k25")
    assert (proc.patch_size, proc.merge_kernel_size, proc.image_mean) == (14, 2, [0.5] * 3)


def test_backend_from_config_follows_transformers(tmp_path: Path) -> None:
    """transformers 5.24 picks the class by backend (the caller's, else torchvision where it is
    installed), not by the class `image_processor_type` names; rawmm's default is that choice."""
    cfg = {"image_processor_type": "Qwen2VLImageProcessorPil", "min_pixels": 3136, "max_pixels": 200704}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert Layout.from_preprocessor_config(tmp_path).knobs["backend"] == "torchvision"
    assert Layout.from_preprocessor_config(tmp_path, backend="pil").knobs["backend"] == "pil"
    pil_cfg = {**cfg, "backend": "pil"}
    assert Layout.from_preprocessor_config(pil_cfg, model="qwen2_5_vl").knobs["backend"] == "pil"
    # the argument wins over a config key
    tv = Layout.from_preprocessor_config(pil_cfg, model="qwen2_5_vl", backend="torchvision")
    assert tv.knobs["backend"] == "torchvision"
    for bad in ({**cfg, "backend": "torch"},):
        with pytest.raises(LayoutError, match="backend"):
            Layout.from_preprocessor_config(bad, model="qwen2_5_vl")
    with pytest.raises(LayoutError, match="backend"):
        Layout.from_preprocessor_config(cfg, model="qwen2_5_vl", backend="cuda")
    with pytest.raises(LayoutError, match="Moonshot"):
        Layout.from_preprocessor_config({}, model="kimi_k25", backend="torchvision")
    assert Layout.from_preprocessor_config({}, model="kimi_k25", backend="pil") == Layout.preset("kimi_k25")
    if have_torch():
        from transformers import AutoImageProcessor

        assert type(AutoImageProcessor.from_pretrained(tmp_path)).__name__ == "Qwen2VLImageProcessor"
