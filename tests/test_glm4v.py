"""GLM-4.1V / 4.5V / 4.6V (`glm4v` family) against transformers 5.24's live processors of each
backend: `Glm4vImageProcessor` and `Glm46VImageProcessor` (torchvision 0.29 / torch 2.15),
`Glm4vImageProcessorPil` and `Glm46VImageProcessorPil` (Pillow 13); layouts, `pixel_values`
bit for bit, configs, refs and placeholders."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import BACKENDS, require_torch
from family_checks import video_call
from images import make_image, modes, seeds, sides
from rawmm import AssetStore, Layout, LayoutError, adapter_for

CLASSES = {
    ("glm4v", "torchvision"): "transformers.models.glm4v.image_processing_glm4v.Glm4vImageProcessor",
    ("glm4v", "pil"): "transformers.models.glm4v.image_processing_pil_glm4v.Glm4vImageProcessorPil",
    ("glm46v", "torchvision"): "transformers.models.glm46v.image_processing_glm46v.Glm46VImageProcessor",
    ("glm46v", "pil"): "transformers.models.glm46v.image_processing_pil_glm46v.Glm46VImageProcessorPil",
}


def reference(layout: Layout) -> Any:
    """transformers' processor of the layout's preset and backend, with its knobs."""
    import importlib

    k = layout.knobs
    if k["backend"] == "torchvision":
        require_torch()
        import torch

        torch.set_num_threads(1)
    module, name = CLASSES[(layout.model, k["backend"])].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return cls(
        size={"shortest_edge": k["min_pixels"], "longest_edge": k["max_pixels"]},
        patch_size=k["patch_size"],
        merge_size=k["merge_size"],
        temporal_patch_size=k["temporal_patch_size"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


def same(layout: Layout, im: Any) -> None:
    try:
        want = reference(layout)(images=[im], return_tensors="np")
    except ValueError as e:  # transformers refuses it (aspect ratio): rawmm too, typed
        assert "aspect ratio" in str(e)
        with pytest.raises(LayoutError, match="aspect ratio"):
            layout.pixel_values(im)
        return
    got = layout.pixel_values(im)
    assert np.array_equal(got.grid_thw, want["image_grid_thw"])
    assert got.pixel_values.shape == want["pixel_values"].shape
    assert np.array_equal(got.pixel_values.view(np.uint32), want["pixel_values"].view(np.uint32))
    lay = layout.image(im.width, im.height)
    assert got.num_tokens == [lay.num_tokens] == [int(np.prod(lay.grid_thw)) // 4]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["glm4v", "glm46v"])
@settings(max_examples=60)
@given(w=sides, h=sides, mode=modes, seed=seeds)
@example(w=1, h=1, mode="RGB", seed=0)  # both sides scaled up to the factor
@example(w=27, h=5400, mode="RGB", seed=1)  # short side scaled up, then ratio exactly 200
@example(w=10, h=2001, mode="RGB", seed=2)  # ratio over 200 only after the scale-up
@example(w=28, h=28, mode="L", seed=3)  # exactly the factor: no scale-up
@example(w=3000, h=2000, mode="RGBA", seed=4)  # T·h̄·w̄ over the bound: downscale
@example(w=42, h=70, mode="P+tRNS", seed=5)  # rounding ties (1.5 and 2.5 factors)
def test_pixel_values_bit_identical(name: str, backend: str, w: int, h: int, mode: str, seed: int) -> None:
    same(Layout.preset(name, backend=backend), make_image(mode, w, h, "noise", seed))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(
    w=st.integers(1, 600),
    h=st.integers(1, 600),
    lo=st.integers(1, 200_000),
    span=st.integers(0, 300_000),
    t=st.integers(1, 3),
    seed=seeds,
)
@example(w=9, h=13, lo=190_000, span=10, t=2, seed=1)  # strong upscale
@example(w=600, h=3, lo=1, span=1, t=1, seed=2)  # clamped to the factor at an extreme ratio
def test_random_configs_bit_identical(
    backend: str, w: int, h: int, lo: int, span: int, t: int, seed: int
) -> None:
    layout = Layout.preset(
        "glm4v", backend=backend, min_pixels=lo, max_pixels=lo + span, temporal_patch_size=t
    )
    same(layout, make_image("RGB", w, h, "noise", seed))


def test_presets_configs_and_family_detection(tmp_path: Path) -> None:
    cfg = {
        "size": {"shortest_edge": 12544, "longest_edge": 9633792},
        "do_rescale": True,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Glm46VImageProcessor",
        "processor_class": "Glm46VProcessor",
    }
    # No model and no folder: the family comes from image_processor_type.
    assert Layout.from_preprocessor_config(cfg) == Layout.preset("glm46v")
    assert Layout.from_preprocessor_config(cfg, backend="pil") == Layout.preset("glm46v", backend="pil")
    # A folder: config.json's model_type decides (GLM-4.5V is glm4v_moe).
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({**cfg, "size": {"shortest_edge": 3136, "longest_edge": 1 << 20}})
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glm4v_moe"}))
    layout = Layout.from_preprocessor_config(tmp_path)
    assert layout.model == "glm4v" and (layout.knobs["min_pixels"], layout.knobs["max_pixels"]) == (
        3136,
        1 << 20,
    )
    with pytest.raises(LayoutError, match="model_type"):
        Layout.from_preprocessor_config({k: v for k, v in cfg.items() if k != "image_processor_type"})
    with pytest.raises(LayoutError, match="unsupported key"):
        Layout.from_preprocessor_config({**cfg, "do_pad": True})
    with pytest.raises(LayoutError, match="temporal_patch_size must be at most 16"):
        Layout.preset("glm4v", temporal_patch_size=17)


def test_placeholders_and_refs_round_trip(tmp_path: Path) -> None:
    from PIL import Image

    layout = Layout.preset("glm46v")
    lay = layout.image(640, 480)
    n = lay.num_tokens
    assert layout.placeholder_text(lay) == "<|begin_of_image|>" + "<|image|>" * n + "<|end_of_image|>"
    assert layout.placeholder_token_ids(lay) == [151339, *[151343] * n, 151340]
    assert layout.image_pad_token_id == 151343 and layout.placeholder_length(lay) == n
    store = AssetStore(tmp_path / "store", run_id="glm")
    adapter = adapter_for(layout)
    im = make_image("RGB", 640, 480, "noise", 7)
    assert isinstance(im, Image.Image)
    d = adapter.describe(im, store=store)
    ref = adapter.ref(d)
    assert ref.family == "glm4v" and dict(ref.payload) == {"image_grid_thw": (tuple(lay.grid_thw),)}
    out = adapter.materialize(ref, store=store)
    assert np.array_equal(out.pixel_values, layout.pixel_values(im).pixel_values)
    # A Qwen adapter refuses a GLM ref: the family is part of the ref.
    qwen = adapter_for(Layout.preset("qwen2_5_vl"))
    with pytest.raises(LayoutError, match="family"):
        qwen.materialize(ref, store=store)


DROP_INS = sorted({name.rsplit(".", 1)[1] for name in CLASSES.values()})


def drop_in(name: str) -> tuple[type, type]:
    """(rawmm.hf's class, transformers' class) of that name."""
    import importlib

    import rawmm.hf

    if not name.endswith("Pil"):
        require_torch()
    full = next(v for v in CLASSES.values() if v.endswith("." + name))
    module, _ = full.rsplit(".", 1)
    return getattr(rawmm.hf, name), getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", DROP_INS)
def test_drop_in_processors_are_transformers_with_rawmm_pixels(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    from transformers import AutoImageProcessor

    import rawmm.hf

    ours_cls, ref_cls = drop_in(name)
    assert issubclass(ours_cls, ref_cls)
    ims = [make_image("RGB", 640, 480, "noise", 1), np.asarray(make_image("RGB", 30, 900, "noise", 2))]
    calls = [
        {},
        {"size": {"shortest_edge": 3136, "longest_edge": 200_704}},
        {"image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]},
        {"do_normalize": False},  # not reproduced: transformers' own code runs
    ]
    if not name.endswith("Pil"):
        calls.append({"do_rescale": False, "do_normalize": False})  # vLLM's call: uint8 patches
    ours, ref = ours_cls(), ref_cls()
    for kw in calls:
        want, got = ref(images=ims, return_tensors="np", **kw), ours(images=ims, return_tensors="np", **kw)
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), (kw, key)
    # rawmm's core computes the reproduced calls: with the parent's step broken, they still work.
    monkeypatch.setattr(ref_cls, "_preprocess", lambda *a, **k: pytest.fail("transformers' code ran"))
    ours(images=ims, return_tensors="np")
    monkeypatch.undo()
    assert type(pickle.loads(pickle.dumps(ours))) is ours_cls
    ours.save_pretrained(tmp_path)
    model_type = "glm46v" if name.startswith("Glm46V") else "glm4v_moe"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    rawmm.hf.register()
    backend = "pil" if name.endswith("Pil") else "torchvision"
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend=backend)) is ours_cls
    # The saved config (transformers' class defaults) read back: the same pixels.
    layout = Layout.from_preprocessor_config(tmp_path, backend=backend)
    want = ours(images=ims[:1], return_tensors="np")["pixel_values"]
    assert np.array_equal(layout.pixel_values(ims[0]).pixel_values, want)


VIDEO_CLASSES = {  # preset → (video processing module, video processor, processor)
    "glm4v": ("glm4v.video_processing_glm4v", "Glm4vVideoProcessor", "Glm4vProcessor"),
    "glm46v": ("glm46v.video_processing_glm46v", "Glm46VVideoProcessor", "Glm46VProcessor"),
}


def video_reference(name: str) -> tuple[Any, Any]:
    """(transformers' video processor class, its processor's `replace_video_token` as a
    function of the processor output)."""
    import importlib

    require_torch()
    module, cls, proc = VIDEO_CLASSES[name]
    video_cls = getattr(importlib.import_module(f"transformers.models.{module}"), cls)
    processing = f"transformers.models.{module.replace('video_processing', 'processing')}"
    processor_cls = getattr(importlib.import_module(processing), proc)

    class Fake:  # the attributes `replace_video_token` reads
        image_token = "<|image|>"
        video_processor = SimpleNamespace(merge_size=2)
        replace_frame_token_id = processor_cls.replace_frame_token_id

    return video_cls, lambda out: processor_cls.replace_video_token(Fake(), out, 0)


@pytest.mark.parametrize("name", ["glm4v", "glm46v"])
@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 150),
    w=st.integers(1, 120),
    h=st.integers(1, 120),
    fps=st.sampled_from([1.0, 2.0, 2.5, 24.0, 29.97, 60.0]),
    seed=seeds,
)
@example(n=150, w=64, h=48, fps=0.4, seed=1)  # over 300 s: GLM-4.1V's linspace branch
@example(n=1, w=30, h=40, fps=24.0, seed=2)  # one frame, repeated to two
@example(n=90, w=10, h=2001, fps=30.0, seed=3)  # aspect ratio over 200 after the scale-up
def test_video_bit_identical(name: str, n: int, w: int, h: int, fps: float, seed: int) -> None:
    """`Layout.video` (frame indices, sizes, the timestamped prompt) and `video_pixel_values`
    against the GLM-V video processor and `Glm4vProcessor.replace_video_token`; the drop-in
    too."""
    import rawmm.hf

    video_cls, replace = video_reference(name)
    layout = Layout.preset(name)
    frames, call = video_call(n, w, h, fps, seed)
    try:
        ref = video_cls()(**call)
    except ValueError as e:
        assert "aspect ratio" in str(e)
        with pytest.raises(LayoutError, match="aspect ratio"):
            layout.video(n, w, h, fps=fps)
        return
    v = layout.video(n, w, h, fps=fps)
    assert v.frame_indices == [int(i) for i in ref["video_metadata"][0].frames_indices]
    assert list(v.grid_thw) == ref["video_grid_thw"][0].tolist()
    text = replace(ref)
    assert v.placeholder_text == text and v.num_tokens == text.count("<|image|>")
    got = layout.video_pixel_values(list(frames), fps=fps)
    assert np.array_equal(got.pixel_values.view(np.uint32), ref["pixel_values_videos"].view(np.uint32))
    ours = getattr(rawmm.hf, video_cls.__name__)()(**call)
    for key in ("pixel_values_videos", "video_grid_thw"):
        assert np.array_equal(np.asarray(ours[key]), np.asarray(ref[key])), key


def test_video_configs_and_drop_in_registration(tmp_path: Path) -> None:
    from transformers import AutoVideoProcessor

    import rawmm.hf

    video_cls, _ = video_reference("glm46v")
    video_cls(size={"shortest_edge": 3136, "longest_edge": 1 << 22}).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "Glm46VImageProcessor"})
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glm46v"}))
    video = Layout.from_preprocessor_config(tmp_path).video_knobs
    assert (video["min_pixels"], video["max_pixels"]) == (3136, 1 << 22)
    rawmm.hf.register()
    assert type(AutoVideoProcessor.from_pretrained(tmp_path)) is rawmm.hf.Glm46VVideoProcessor
    with pytest.raises(LayoutError, match="do_sample_frames"):
        Layout.preset("glm4v", video={"do_sample_frames": False}).video(8, 64, 64)
