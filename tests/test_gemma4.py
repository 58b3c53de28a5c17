"""Gemma 4 (`gemma4` family) against transformers 5.24's live processors of each backend:
`Gemma4ImageProcessor` (torchvision 0.29 / torch 2.15) and `Gemma4ImageProcessorPil`
(Pillow 13): layouts, `pixel_values`, `image_position_ids` and `num_soft_tokens_per_image` bit
for bit, configs, refs, placeholders, the drop-in classes and renderers 0.1.12's
`Gemma4Renderer`."""

from __future__ import annotations

import importlib
import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import BACKENDS, require_torch
from family_checks import assert_same_outputs, cli_round_trip, video_call
from images import make_image, modes, seeds, sides
from rawmm import AssetStore, Layout, LayoutError, adapter_for
from rawmm.families import family

CLASSES = {
    "torchvision": "transformers.models.gemma4.image_processing_gemma4.Gemma4ImageProcessor",
    "pil": "transformers.models.gemma4.image_processing_pil_gemma4.Gemma4ImageProcessorPil",
}
SOFT_TOKENS = [70, 140, 280, 560, 1120]


def reference_class(backend: str) -> Any:
    if backend == "torchvision":
        require_torch()
        import torch

        torch.set_num_threads(1)
    module, name = CLASSES[backend].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def reference(layout: Layout) -> Any:
    """transformers' processor of the layout's backend, with its knobs."""
    k = layout.knobs
    return reference_class(k["backend"])(
        patch_size=k["patch_size"],
        max_soft_tokens=k["max_soft_tokens"],
        pooling_kernel_size=k["pooling_kernel_size"],
        do_normalize=k["do_normalize"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


def same(layout: Layout, im: Any) -> None:
    try:
        want = reference(layout)(images=[im], return_tensors="np")
    except ValueError as e:  # transformers refuses the size: rawmm too, typed
        with pytest.raises(LayoutError, match=str(e).split()[0]):
            layout.pixel_values(im)
        return
    got = layout.pixel_values(im)
    assert_same_outputs(family("gemma4").hf_outputs(layout, got.pixel_values, got.grid_thw), want)
    lay = layout.image(im.width, im.height)
    k = layout.knobs["pooling_kernel_size"]
    assert got.num_tokens == [lay.num_tokens] == [int(np.prod(lay.grid_thw)) // (k * k)]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60)
@given(w=sides, h=sides, mode=modes, seed=seeds)
@example(w=1, h=1, mode="RGB", seed=0)  # upscaled to the largest square of the budget
@example(w=5000, h=1, mode="RGB", seed=1)  # height rounds to 0: one block high, capped width
@example(w=1, h=3000, mode="L", seed=2)  # width rounds to 0
@example(w=768, h=768, mode="RGBA", seed=3)  # already the target size: not resized
@example(w=1280, h=720, mode="P+tRNS", seed=4)
@example(w=48, h=2000, mode="RGB", seed=5)  # extreme ratio, downscaled height
def test_pixel_values_bit_identical(backend: str, w: int, h: int, mode: str, seed: int) -> None:
    same(Layout.preset("gemma4", backend=backend), make_image(mode, w, h, "noise", seed))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(
    w=st.integers(1, 900),
    h=st.integers(1, 900),
    soft=st.sampled_from(SOFT_TOKENS),
    patch=st.integers(2, 24),
    k=st.integers(1, 4),
    normalize=st.booleans(),
    mean=st.lists(st.floats(0, 1), min_size=3, max_size=3),
    std=st.lists(st.floats(0.05, 2), min_size=3, max_size=3),
    seed=seeds,
)
@example(w=900, h=2, soft=70, patch=16, k=3, normalize=False, mean=[0] * 3, std=[1] * 3, seed=1)
@example(w=3, h=3, soft=1120, patch=2, k=1, normalize=True, mean=[0.5] * 3, std=[0.5] * 3, seed=2)
def test_random_configs_bit_identical(
    backend: str,
    w: int,
    h: int,
    soft: int,
    patch: int,
    k: int,
    normalize: bool,
    mean: list[float],
    std: list[float],
    seed: int,
) -> None:
    layout = Layout.preset(
        "gemma4",
        backend=backend,
        max_soft_tokens=soft,
        patch_size=patch,
        pooling_kernel_size=k,
        do_normalize=normalize,
        image_mean=mean,
        image_std=std,
    )
    same(layout, make_image("RGB", w, h, "noise", seed))


def test_knobs_are_checked() -> None:
    with pytest.raises(LayoutError, match="max_soft_tokens must be one of"):
        Layout.preset("gemma4", max_soft_tokens=100)
    with pytest.raises(LayoutError, match="do_normalize must be a bool"):
        Layout.preset("gemma4", do_normalize=1)
    with pytest.raises(LayoutError, match="unknown"):
        Layout.preset("qwen3_vl", do_normalize=False)  # a knob only Gemma 4 has
    with pytest.raises(LayoutError, match="video image_mean must be three numbers"):
        Layout.preset("gemma4", video={"image_mean": "zero"})
    # Rescale only and normalising with mean 0, std 1 are different layouts on torchvision.
    a = Layout.preset("gemma4")
    b = a.replace(do_normalize=True)
    assert a.fingerprint != b.fingerprint and "do_normalize=false" in a.fingerprint_text
    assert "do_normalize" not in Layout.preset("qwen3_vl").fingerprint_text


def test_configs_and_family_detection(tmp_path: Path) -> None:
    # What `Gemma4ImageProcessor().save_pretrained` writes (transformers' class defaults).
    reference_class("pil")().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert Layout.from_preprocessor_config(cfg) == Layout.preset("gemma4")
    assert Layout.from_preprocessor_config(cfg, backend="pil") == Layout.preset("gemma4", backend="pil")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4"}))
    assert Layout.from_preprocessor_config(tmp_path) == Layout.preset("gemma4")
    # A folder's video_preprocessor_config.json (what Gemma4VideoProcessor saves) sets the video knobs.
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

    Gemma4VideoProcessor(num_frames=16, max_soft_tokens=140).save_pretrained(tmp_path)
    video = Layout.from_preprocessor_config(tmp_path).video_knobs
    assert (video["num_frames"], video["max_soft_tokens"], video["do_normalize"]) == (16, 140, True)
    changed = {**cfg, "max_soft_tokens": 1120, "do_normalize": True, "image_mean": [0.5] * 3}
    layout = Layout.from_preprocessor_config(changed)
    assert layout.knobs["max_soft_tokens"] == 1120 and layout.knobs["do_normalize"] is True
    with pytest.raises(LayoutError, match="unsupported key"):
        Layout.from_preprocessor_config({**cfg, "size": {"height": 224, "width": 224}})
    with pytest.raises(LayoutError, match="resample"):
        Layout.from_preprocessor_config({**cfg, "resample": 2})


def test_placeholders_refs_and_materialize(tmp_path: Path) -> None:
    layout = Layout.preset("gemma4")
    lay = layout.image(640, 480)
    n = lay.num_tokens
    assert n == int(np.prod(lay.grid_thw)) // 9
    assert layout.placeholder_text(lay) == "<|image>" + "<|image|>" * n + "<image|>"
    assert layout.placeholder_token_ids(lay) == [255999, *[258880] * n, 258882]
    assert layout.image_pad_token_id == 258880 and layout.placeholder_length(lay) == n
    store = AssetStore(tmp_path / "store", run_id="gemma")
    adapter = adapter_for(layout)
    im = make_image("RGB", 640, 480, "noise", 7)
    d = adapter.describe(im, store=store)
    ref = adapter.ref(d)
    assert ref.family == "gemma4"
    assert dict(ref.payload) == {"image_grid_thw": (tuple(lay.grid_thw),), "num_soft_tokens": n}
    out = adapter.materialize(ref, store=store)
    want = reference(layout)(images=[im], return_tensors="np")
    assert_same_outputs(out.as_hf_dict(), want)
    # Two images through the Materializer: every image padded to the budget, in order.
    from rawmm import Materializer

    im2 = make_image("RGB", 33, 900, "noise", 8)
    ref2 = adapter.ref(adapter.describe(im2, store=store))
    with Materializer(adapter, store=store, processor_id="gemma4-test") as m:
        batch = m.materialize([ref.to_string(), ref2.to_string()])
    assert_same_outputs(batch.as_hf_dict(), reference(layout)(images=[im, im2], return_tensors="np"))
    with pytest.raises(LayoutError, match="num_soft_tokens"):
        family("gemma4").payload_grid({"image_grid_thw": [[1, 30, 40]], "num_soft_tokens": 0}, None)
    qwen = adapter_for(Layout.preset("qwen3_vl"))
    with pytest.raises(LayoutError, match="family"):
        qwen.materialize(ref, store=store)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_in_processors(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoImageProcessor

    import rawmm.hf

    ref_cls = reference_class(backend)
    ours_cls = getattr(rawmm.hf, ref_cls.__name__)
    assert issubclass(ours_cls, ref_cls)
    ims = [make_image("RGB", 640, 480, "noise", 1), np.asarray(make_image("RGB", 30, 900, "noise", 2))]
    calls: list[dict[str, Any]] = [
        {},
        {"max_soft_tokens": 70},
        {"do_normalize": True, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]},
        {"do_rescale": False, "do_normalize": False},  # uint8 patches (torchvision: rawmm's)
        {"max_soft_tokens": 71},  # transformers' own error
    ]
    ours, ref = ours_cls(), ref_cls()
    for kw in calls:
        for tensors in (None, "np", "pt"):
            try:
                want = ref(images=ims, return_tensors=tensors, **kw)
            except ValueError as e:
                with pytest.raises(ValueError, match="max_soft_tokens"):
                    ours(images=ims, return_tensors=tensors, **kw)
                assert "max_soft_tokens" in str(e)
                continue
            got = ours(images=ims, return_tensors=tensors, **kw)
            assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
            assert_same_outputs(dict(got), dict(want))
    # rawmm's core computes the reproduced calls: with the parent's step broken, they still work.
    monkeypatch.setattr(ref_cls, "_preprocess", lambda *a, **k: pytest.fail("transformers' code ran"))
    ours(images=ims, return_tensors="np")
    ours(images=ims, return_tensors="np", do_normalize=True)
    monkeypatch.undo()
    assert type(pickle.loads(pickle.dumps(ours))) is ours_cls
    ours.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4"}))
    rawmm.hf.register()
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend=backend)) is ours_cls
    layout = Layout.from_preprocessor_config(tmp_path, backend=backend)
    want = ours(images=ims[:1], return_tensors="np")
    got = rawmm.hf.ImageProcessor(layout)(ims[:1])
    assert_same_outputs(got, dict(want))


GEMMA_SPECIAL = [
    "<bos>",
    "<eos>",
    "<|turn>",
    "<turn|>",
    "<|channel>",
    "<channel|>",
    "<|think|>",
    "<|tool>",
    "<tool|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    "<|image>",
    "<|image|>",
    "<image|>",
]


def test_renderer_prompt_ids_with_grid_processor(tmp_path: Path) -> None:
    """renderers 0.1.12's Gemma4Renderer renders the same prompt ids with transformers'
    processor, rawmm's drop-in and rawmm's GridProcessor (no pixels); the descriptors then
    materialize to the processor's pixels."""
    import renderers

    from rawmm.hf import Gemma4ImageProcessorPil
    from rawmm.renderer import GridProcessor, attach_refs
    from test_renderers import conversation, small_tokenizer

    layout = Layout.preset("gemma4", backend="pil")
    tokenizer, messages = small_tokenizer(GEMMA_SPECIAL), conversation(tmp_path)

    def render(image_processor: Any) -> Any:
        r = renderers.Gemma4Renderer(tokenizer, processor=SimpleNamespace(image_processor=image_processor))
        return r.render(messages, add_generation_prompt=True)

    ref = render(reference(layout))
    ours = render(Gemma4ImageProcessorPil())
    light = render(GridProcessor(layout).image_processor)
    assert ours.token_ids == ref.token_ids == light.token_ids
    assert light.multi_modal_data.mm_placeholders == ref.multi_modal_data.mm_placeholders
    ref_items = ref.multi_modal_data.mm_items["image"]
    assert len(ref_items) == 3
    for r_item, o_item, l_item in zip(
        ref_items,
        ours.multi_modal_data.mm_items["image"],
        light.multi_modal_data.mm_items["image"],
        strict=True,
    ):
        assert_same_outputs(o_item, r_item)
        assert np.array_equal(l_item["image_position_ids"], r_item["image_position_ids"])
    store = AssetStore(tmp_path / "run", allowed_roots=[tmp_path], run_id="run_g")
    adapter = adapter_for(layout)
    mm = attach_refs(light.multi_modal_data, messages, adapter, store)
    image_id = tokenizer.convert_tokens_to_ids("<|image|>")
    for holder, ref_text, r_item in zip(
        mm["mm_placeholders"]["image"], mm["refs"]["image"], ref_items, strict=True
    ):
        ids = light.token_ids[holder["offset"] : holder["offset"] + holder["length"]]
        assert ids == [image_id] * holder["length"]
        got = adapter.materialize(ref_text, store=store).as_hf_dict()
        assert np.array_equal(got["pixel_values"], r_item["pixel_values"])
        assert np.array_equal(got["image_position_ids"], r_item["image_position_ids"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint8_rows_and_normalize(backend: str) -> None:
    """uint8 rows are transformers' output without rescale; `normalize` turns them into the
    float32 rows bit for bit (numpy in Rust, torch by table), channels interleaved."""
    require_torch()
    import torch

    layout = Layout.preset("gemma4", backend=backend)
    ims = [make_image("RGB", 500, 300, "noise", 3), make_image("RGB", 20, 700, "noise", 4)]
    raw = layout.pixel_values(ims, dtype="uint8")
    if backend == "torchvision":
        want = reference_class(backend)()(
            images=ims, return_tensors="np", do_rescale=False, do_normalize=False
        )
        assert np.array_equal(raw.pixel_values.reshape(want["pixel_values"].shape), want["pixel_values"])
    floats = layout.pixel_values(ims).pixel_values
    assert np.array_equal(layout.normalize(raw.pixel_values).view(np.uint32), floats.view(np.uint32))
    on_torch = layout.normalize(torch.from_numpy(raw.pixel_values)).numpy()
    assert np.array_equal(on_torch.view(np.uint32), floats.view(np.uint32))
    with pytest.raises(LayoutError, match="padding rows"):
        layout.replace(do_normalize=True).normalize(raw.pixel_values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_describe_and_materialize(tmp_path: Path, backend: str) -> None:
    im = make_image("RGB", 500, 300, "noise", 9)
    want = dict(reference(Layout.preset("gemma4", backend=backend))(images=[im], return_tensors="np"))
    line = cli_round_trip(tmp_path, "gemma4", im, want, backend)
    assert line["family"] == "gemma4" and line["num_tokens"] == line["payload"]["num_soft_tokens"]


def video_reference(layout: Layout) -> Any:
    require_torch()
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

    v = layout.video_knobs
    keys = (
        "num_frames",
        "do_sample_frames",
        "patch_size",
        "max_soft_tokens",
        "pooling_kernel_size",
        "do_normalize",
    )
    return Gemma4VideoProcessor(
        **{k: v[k] for k in keys}, image_mean=v["image_mean"], image_std=v["image_std"]
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    want=st.integers(1, 40),
    sample=st.booleans(),
    soft=st.sampled_from(SOFT_TOKENS[:3]),
    normalize=st.booleans(),
    fps=st.sampled_from([1.0, 7.5, 24.0, 29.97]),
    seed=seeds,
)
@example(n=40, w=320, h=240, want=32, sample=True, soft=70, normalize=True, fps=10.0, seed=1)  # the defaults
@example(n=5, w=64, h=64, want=8, sample=True, soft=70, normalize=True, fps=24.0, seed=2)  # too few frames
@example(n=3, w=1, h=200, want=1, sample=False, soft=140, normalize=False, fps=1.0, seed=3)  # all frames
def test_video_bit_identical(
    n: int, w: int, h: int, want: int, sample: bool, soft: int, normalize: bool, fps: float, seed: int
) -> None:
    """`Layout.video` (frame indices, sizes, the timestamped prompt) and `video_pixel_values`
    against `Gemma4VideoProcessor` and `Gemma4Processor.replace_video_token`; the drop-in too."""
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    import rawmm.hf

    video = {
        "num_frames": want,
        "do_sample_frames": sample,
        "max_soft_tokens": soft,
        "do_normalize": normalize,
    }
    layout = Layout.preset("gemma4", video=video)
    frames, call = video_call(n, w, h, fps, seed)
    try:
        ref = video_reference(layout)(**call)
    except ValueError as e:
        assert "exceeds total_num_frames" in str(e)
        with pytest.raises(LayoutError, match="fewer than num_frames"):
            layout.video(n, w, h, fps=fps)
        return
    ours = rawmm.hf.Gemma4VideoProcessor(**video_reference(layout).to_dict())(**call)
    for key in (
        "pixel_values_videos",
        "video_position_ids",
        "num_frames_per_video",
        "num_soft_tokens_per_video",
    ):
        assert np.array_equal(np.asarray(ours[key]), np.asarray(ref[key])), key
    if not sample:  # no frame indices: transformers' processor cannot time the frames
        with pytest.raises(ValueError, match="timestamps"):
            ref["video_metadata"][0].timestamps  # noqa: B018
        with pytest.raises(LayoutError, match="do_sample_frames"):
            layout.video(n, w, h, fps=fps)
        return
    v = layout.video(n, w, h, fps=fps)
    assert v.frame_indices == [int(i) for i in ref["video_metadata"][0].frames_indices]
    tokens = Gemma4Processor.replace_video_token(
        SimpleNamespace(boi_token="<|image>", eoi_token="<image|>", video_token="<|video|>"), ref, 0
    )
    assert v.placeholder_text == tokens and v.num_tokens == tokens.count("<|video|>")
    got = layout.video_pixel_values(list(frames), fps=fps)
    assert np.array_equal(
        got.pixel_values.reshape(ref["pixel_values_videos"].shape), ref["pixel_values_videos"]
    )
