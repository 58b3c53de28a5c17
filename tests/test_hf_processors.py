"""rawmm.hf's processors ARE transformers' Qwen2-VL image processors (subclasses): every
argument, option and input kind gives the parent's `BatchFeature` bit for bit (or the parent's
exception), rawmm's core does the work where it reproduces the options, and saving, loading,
pickling and the Auto classes behave as transformers'."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as HFPil

import rawmm.hf
from conftest import BACKENDS, require_torch
from images import make_image, modes, seeds


def classes(backend: str) -> tuple[type, type]:
    """(rawmm's class, transformers' class) of a backend."""
    if backend == "torchvision":
        require_torch()
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as HF

        return rawmm.hf.Qwen2VLImageProcessor, HF
    return rawmm.hf.Qwen2VLImageProcessorPil, HFPil


def as_numpy(v: Any) -> Any:
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


def same_output(ours: Any, ref: Any) -> None:
    assert type(ours) is type(ref) and set(ours.keys()) == set(ref.keys())
    for key in ref:
        a, b = ours[key], ref[key]
        assert type(a) is type(b), key
        a, b = as_numpy(a), as_numpy(b)
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), key


def call(proc: Any, images: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return proc(images=images, **kwargs)
    except Exception as e:  # the parent's exception is part of the contract
        return type(e)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(1, 120_000))
    cfg: dict[str, Any] = {
        "patch_size": draw(st.integers(7, 28)),
        "merge_size": draw(st.integers(1, 3)),
        "temporal_patch_size": draw(st.integers(1, 3)),
        "min_pixels": lo,
        "max_pixels": lo + draw(st.integers(0, 300_000)),
    }
    if draw(st.booleans()):
        cfg["image_mean"] = draw(st.lists(st.floats(-1, 2, allow_nan=False), min_size=3, max_size=3))
        cfg["image_std"] = draw(st.lists(st.floats(0.05, 3), min_size=3, max_size=3))
    return cfg


@st.composite
def call_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kw: dict[str, Any] = {"return_tensors": draw(st.sampled_from([None, "np", "pt"]))}
    for flag in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
        if draw(st.integers(0, 4)) == 0:
            kw[flag] = False
    if draw(st.integers(0, 3)) == 0:
        kw["resample"] = draw(st.sampled_from([0, 1, 2, 3]))  # nearest, lanczos, bilinear, bicubic
    if draw(st.integers(0, 4)) == 0:
        kw["image_mean"] = draw(st.floats(0, 1))
        kw["image_std"] = draw(st.floats(0.1, 1))
    if draw(st.integers(0, 4)) == 0:
        lo = draw(st.integers(1, 50_000))
        kw["size"] = {"shortest_edge": lo, "longest_edge": lo + draw(st.integers(0, 100_000))}
    return kw


KINDS = ["pil", "hwc", "chw", "float", "int64"]


def image_input(kind: str, w: int, h: int, mode: str, seed: int) -> Any:
    """One image as transformers accepts it: PIL in any mode, uint8 HWC/CHW, float HWC in
    [0, 1], int64 HWC."""
    im = make_image(mode, w, h, "noise", seed)
    if kind == "pil":
        return im
    arr = np.asarray(im.convert("RGB"))
    if kind == "chw":
        return np.ascontiguousarray(arr.transpose(2, 0, 1))
    if kind == "float":
        return arr.astype(np.float32) / 255
    return arr.astype(np.int64) if kind == "int64" else arr


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60)
@given(
    cfg=configs(),
    kw=call_kwargs(),
    sizes=st.lists(st.tuples(st.integers(5, 300), st.integers(5, 300)), min_size=1, max_size=3),
    kinds=st.lists(st.sampled_from(KINDS), min_size=3, max_size=3),
    mode=modes,
    layout=st.sampled_from(["list", "nested", "batch4d"]),
    seed=seeds,
)
@example(
    cfg={
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": 3136,
        "max_pixels": 200704,
    },
    kw={"return_tensors": "np"},
    sizes=[(300, 200), (57, 280)],
    kinds=["pil", "hwc", "pil"],
    mode="RGBA",
    layout="nested",
    seed=1,
)
@example(  # vLLM's call with mm_device_do_normalize: uint8 patches, normalised in the model
    cfg={
        "patch_size": 16,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": 65536,
        "max_pixels": 16777216,
    },
    kw={"return_tensors": "pt", "do_rescale": False, "do_normalize": False},
    sizes=[(300, 200), (1, 250)],
    kinds=["pil", "chw", "hwc"],
    mode="RGB",
    layout="list",
    seed=2,
)
def test_identical_to_the_parent(
    backend: str,
    cfg: dict[str, Any],
    kw: dict[str, Any],
    sizes: list[tuple[int, int]],
    kinds: list[str],
    mode: str,
    layout: str,
    seed: int,
) -> None:
    """Mixed kinds in one call; explicit input_data_format where every array agrees on it
    (tiny arrays are otherwise ambiguous to transformers' channel inference)."""
    ours_cls, ref_cls = classes(backend)
    ours, ref = ours_cls(**cfg), ref_cls(**cfg)
    if layout == "batch4d":  # one 4-D array of same-size HWC images
        w, h = sizes[0]
        images: Any = np.stack([image_input("hwc", w, h, mode, seed + i) for i in range(len(sizes))])
        used = {"hwc"}
    else:
        images = [image_input(kinds[i], w, h, mode, seed + i) for i, (w, h) in enumerate(sizes)]
        used = {kinds[i] for i in range(len(sizes))}
        if layout == "nested":
            images = [images[:1], images[1:]] if len(images) > 1 else [images]
    kwargs = dict(kw)
    if "pil" not in used and len({k == "chw" for k in used}) == 1:
        kwargs["input_data_format"] = "channels_first" if "chw" in used else "channels_last"
    got, want = call(ours, images, kwargs), call(ref, images, kwargs)
    if isinstance(want, type):
        assert got is want
    else:
        same_output(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rawmm_does_the_work_and_attributes_take_effect(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rawmm._hf_processors as procs

    calls = []
    real = procs.core_pixel_values
    monkeypatch.setattr(procs, "core_pixel_values", lambda *a, **k: calls.append(1) or real(*a, **k))
    ours_cls, ref_cls = classes(backend)
    ours, ref = ours_cls(), ref_cls()
    im = make_image("RGB", 640, 480, "noise", 3)
    same_output(ours(images=im, return_tensors="np"), ref(images=im, return_tensors="np"))
    assert calls == [1]
    # attributes set after construction change the output, as they do for transformers
    for p in (ours, ref):
        p.max_pixels = 50176
        p.size = {"shortest_edge": 3136, "longest_edge": 50176}
        p.image_mean = [0.1, 0.2, 0.3]
    same_output(ours(images=[im], return_tensors="np"), ref(images=[im], return_tensors="np"))
    assert calls == [1, 1]
    # an option rawmm does not reproduce runs transformers' own code
    same_output(
        ours(images=[im], resample=2, return_tensors="np"), ref(images=[im], resample=2, return_tensors="np")
    )
    assert calls == [1, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_pickle_and_auto_classes(tmp_path: Path, backend: str) -> None:
    from transformers import AutoImageProcessor

    ours_cls, ref_cls = classes(backend)
    proc = ours_cls(max_pixels=200704, image_mean=[0.5, 0.5, 0.5])
    assert proc.to_dict() == ref_cls(max_pixels=200704, image_mean=[0.5, 0.5, 0.5]).to_dict()
    for clone in (pickle.loads(pickle.dumps(proc)), copy.deepcopy(proc)):
        assert type(clone) is ours_cls and clone.to_dict() == proc.to_dict()
    proc.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == ref_cls.__name__.removesuffix("Pil")  # loadable by transformers
    assert type(ours_cls.from_pretrained(tmp_path)) is ours_cls
    assert ours_cls.from_pretrained(tmp_path, max_pixels=50176).size["longest_edge"] == 50176
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    rawmm.hf.register()
    rawmm.hf.register()  # idempotent
    loaded = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)
    assert type(loaded) is ours_cls and loaded.to_dict() == proc.to_dict()
    im = Image.fromarray(np.zeros((50, 70, 3), np.uint8))
    same_output(
        loaded(images=im, return_tensors="np"),
        ref_cls.from_pretrained(tmp_path)(images=im, return_tensors="np"),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_inside_transformers_qwen2_vl_processor(backend: str) -> None:
    """A transformers `Qwen2VLProcessor` built around rawmm's image processor accepts it
    (ProcessorMixin checks the class) and gives the same ids and pixels as with the parent."""
    require_torch()  # the processor also needs a video processor, which is torchvision-only
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

    from test_renderers import small_tokenizer

    ours_cls, ref_cls = classes(backend)
    tok = small_tokenizer()
    text = "<|vision_start|><|image_pad|><|vision_end|>What is this?"
    images = [make_image("RGB", 333, 517, "noise", 4)]
    outs = [
        Qwen2VLProcessor(
            image_processor=cls(max_pixels=100_352), tokenizer=tok, video_processor=Qwen2VLVideoProcessor()
        )(text=[text], images=images, return_tensors="np")
        for cls in (ours_cls, ref_cls)
    ]
    assert set(outs[0].keys()) == set(outs[1].keys())
    for key in outs[1]:
        assert np.array_equal(np.asarray(outs[0][key]), np.asarray(outs[1][key])), key


@pytest.mark.parametrize("name", ["Qwen2VLVideoProcessor", "Qwen3VLVideoProcessor"])
@settings(max_examples=30)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    w=st.integers(1, 240),
    h=st.integers(1, 240),
    cfg=configs(),
    kw=call_kwargs(),
    cap=st.sampled_from([None, False, True]),
    seed=seeds,
)
@example(lengths=[3, 2], w=200, h=120, cfg={}, kw={"return_tensors": "np"}, cap=False, seed=0)
def test_video_processors_identical_to_the_parent(
    name: str,
    lengths: list[int],
    w: int,
    h: int,
    cfg: dict[str, Any],
    kw: dict[str, Any],
    cap: Any,
    seed: int,
) -> None:
    require_torch()
    import transformers

    ours, ref = getattr(rawmm.hf, name)(**cfg), getattr(transformers, name)(**cfg)
    assert isinstance(ours, type(ref))
    rng = np.random.default_rng(seed)
    videos = [rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for n in lengths]
    kwargs = {
        **{k: v for k, v in kw.items() if k != "do_convert_rgb"},
        "do_sample_frames": False,
        "cap_pixels_per_frame": cap,
        "input_data_format": "channels_last",
    }
    got, want = call_videos(ours, videos, kwargs), call_videos(ref, videos, kwargs)
    if isinstance(want, type):
        assert got is want
    else:
        same_output(got, want)


def call_videos(proc: Any, videos: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return proc(videos=videos, **kwargs)
    except Exception as e:
        return type(e)


def test_video_processors_use_rawmm_pickle_and_register(monkeypatch: pytest.MonkeyPatch) -> None:
    require_torch()
    from transformers import AutoConfig
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

    import rawmm._hf_processors as procs

    rawmm.hf.register()
    for model_type, name in (("qwen2_5_vl", "Qwen2VLVideoProcessor"), ("qwen3_vl", "Qwen3VLVideoProcessor")):
        cls = getattr(rawmm.hf, name)
        assert type(pickle.loads(pickle.dumps(cls()))) is cls
        assert VIDEO_PROCESSOR_MAPPING[type(AutoConfig.for_model(model_type))] == {"torchvision": cls}
    # rawmm's core does the work when it reproduces the options
    layouts: list[Any] = []
    real = procs.fast_layout
    monkeypatch.setattr(procs, "fast_layout", lambda *a: layouts.append(real(*a)) or layouts[-1])
    video = np.zeros((4, 64, 96, 3), np.uint8)
    rawmm.hf.Qwen3VLVideoProcessor()(videos=[video], do_sample_frames=False, return_tensors="np")
    assert layouts and layouts[-1] is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_paths_with_colour_keys_and_ambiguous_arrays(tmp_path: Path, backend: str) -> None:
    """Two cases the first interface got wrong: file paths to images with colour-key
    transparency (tRNS in P, L and RGB PNGs, GIF transparency), which transformers loads itself,
    and uint8 HWC arrays of height 1, 3 or 4, whose channel axis transformers infers."""
    from images import encode

    ours_cls, ref_cls = classes(backend)
    ours, ref = ours_cls(), ref_cls()
    paths = []
    cases = [("P+tRNS", "PNG"), ("L+tRNS", "PNG"), ("RGB+tRNS", "PNG"), ("P", "GIF")]
    for i, (mode, fmt) in enumerate(cases):
        im = make_image(mode, 90, 70, "blocks", i)
        # PNG keeps the image's tRNS entry; GIF takes one transparent palette index
        kw = {"transparency": im.info["transparency"] if fmt == "PNG" else 3}
        path = tmp_path / f"{i}.{fmt.lower()}"
        path.write_bytes(encode(im, fmt, **kw))
        paths.append(str(path))
    same_output(ours(images=paths, return_tensors="np"), ref(images=paths, return_tensors="np"))
    for h in (1, 3, 4):
        arr = np.random.default_rng(h).integers(0, 256, (h, 60, 3), dtype=np.uint8)
        same_output(call(ours, [arr], {"return_tensors": "np"}), call(ref, [arr], {"return_tensors": "np"}))


def test_core_serves_vllms_uint8_call() -> None:
    """The torchvision class computes vLLM's rescale-and-normalise-off call itself (uint8);
    the PIL class leaves it to transformers."""
    import rawmm._hf_processors as procs

    kw = {
        "do_resize": True,
        "resample": 3,
        "do_rescale": False,
        "do_normalize": False,
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "patch_size": 16,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "size": type("Size", (), {"shortest_edge": 65536, "longest_edge": 16777216})(),
    }
    fast = procs.fast_layout("torchvision", kw)
    assert fast is not None and fast[1] == "uint8"
    assert procs.fast_layout("pil", kw) is None
    assert procs.fast_layout("torchvision", {**kw, "do_normalize": True}) is None  # half of it
