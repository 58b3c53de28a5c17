"""NemotronH Omni (`nemotron_h_omni` family, Nemotron 3.5 Omni) against transformers 5.24's
live `NemotronH_Omni_Reasoning_V3ImageProcessor` (torchvision 0.29 / torch 2.15, its only
backend): the patch grid, torch's float32 antialiased bicubic and the float normalisation bit
for bit, configs, refs, the drop-in class, the CLI and renderers 0.1.12's
`Nemotron35Renderer`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import require_torch
from family_checks import assert_same_outputs, cli_round_trip, video_call
from images import make_image, modes, seeds, sides
from rawmm import AssetStore, Layout, LayoutError, adapter_for
from rawmm.families import family


def reference_class() -> Any:
    require_torch()
    import torch

    torch.set_num_threads(1)
    from transformers.models.nemotron_h_omni.image_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3ImageProcessor,
    )

    return NemotronH_Omni_Reasoning_V3ImageProcessor


def reference(layout: Layout) -> Any:
    k = layout.knobs
    return reference_class()(
        patch_size=k["patch_size"],
        downsample_ratio=k["downsample_ratio"],
        min_num_patches=k["min_num_patches"],
        max_num_patches=k["max_num_patches"],
        max_model_len=k["max_model_len"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


def same(layout: Layout, im: Any) -> None:
    try:
        want = reference(layout)(images=[im], return_tensors="np")
    except (ValueError, ZeroDivisionError, RuntimeError):  # an empty grid: rawmm refuses it, typed
        with pytest.raises(LayoutError, match="patch grid"):
            layout.pixel_values(im)
        return
    got = layout.pixel_values(im)
    assert_same_outputs(family("nemotron_h_omni").hf_outputs(layout, got.pixel_values, got.grid_thw), want)
    lay = layout.image(im.width, im.height)
    m = round(1 / layout.knobs["downsample_ratio"])
    assert got.num_tokens == [lay.num_tokens] == [int(np.prod(lay.grid_thw)) // (m * m)]


@settings(max_examples=60)
@given(w=sides, h=sides, mode=modes, seed=seeds)
@example(w=1, h=1, mode="RGB", seed=0)  # scaled up to the minimum patch count
@example(w=1024, h=1024, mode="RGBA", seed=1)  # already on the grid: not resized
@example(w=1280, h=720, mode="P+tRNS", seed=2)  # one axis resized (720 → 736)
@example(w=4000, h=2, mode="L", seed=3)  # extreme ratio
@example(w=2500, h=2400, mode="RGB", seed=4)  # downscaled to the budget on both axes
def test_pixel_values_bit_identical(w: int, h: int, mode: str, seed: int) -> None:
    same(Layout.preset("nemotron_h_omni"), make_image(mode, w, h, "noise", seed))


@settings(max_examples=40)
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    patch=st.integers(2, 32),
    ratio=st.sampled_from([0.5, 0.25, 1.0, 1 / 3]),
    lo=st.integers(1, 600),
    span=st.integers(0, 4000),
    seed=seeds,
)
@example(w=300, h=200, patch=16, ratio=0.5, lo=64, span=192, seed=1)
@example(w=700, h=3, patch=16, ratio=0.5, lo=64, span=192, seed=2)  # an empty grid
@example(w=9, h=13, patch=4, ratio=0.25, lo=500, span=10, seed=3)  # strong upscale
def test_random_configs_bit_identical(
    w: int, h: int, patch: int, ratio: float, lo: int, span: int, seed: int
) -> None:
    layout = Layout.preset(
        "nemotron_h_omni",
        patch_size=patch,
        downsample_ratio=ratio,
        min_num_patches=lo,
        max_num_patches=lo + span,
        max_model_len=1 << 20,
    )
    same(layout, make_image("RGB", w, h, "noise", seed))


def test_knobs_configs_and_errors(tmp_path: Path) -> None:
    reference_class()().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert Layout.from_preprocessor_config(cfg) == Layout.preset("nemotron_h_omni")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nemotron_h_omni"}))
    assert Layout.from_preprocessor_config(tmp_path) == Layout.preset("nemotron_h_omni")
    # A folder's video_preprocessor_config.json sets the video knobs.
    from transformers.models.nemotron_h_omni.video_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3VideoProcessor,
    )

    NemotronH_Omni_Reasoning_V3VideoProcessor(
        norm_mean=[0.5] * 3, norm_std=[0.25] * 3, video_target_num_patches=256
    ).save_pretrained(tmp_path)
    video = Layout.from_preprocessor_config(tmp_path).video_knobs
    assert (video["norm_mean"], video["norm_std"], video["video_target_num_patches"]) == (
        [0.5] * 3,
        [0.25] * 3,
        256,
    )
    # Released checkpoints name mean and std norm_mean / norm_std.
    legacy = {k: v for k, v in cfg.items() if k not in ("image_mean", "image_std")}
    layout = Layout.from_preprocessor_config({**legacy, "norm_mean": [0.5] * 3, "norm_std": [0.5] * 3})
    assert layout.knobs["image_mean"] == [0.5] * 3
    with pytest.raises(LayoutError, match="depends on the number of images"):
        Layout.preset("nemotron_h_omni", max_model_len=100)
    with pytest.raises(LayoutError, match="torchvision"):
        Layout.from_preprocessor_config(cfg, backend="pil")
    with pytest.raises(LayoutError, match="no uint8 rows"):
        Layout.preset("nemotron_h_omni").pixel_values(np.zeros((40, 40, 3), np.uint8), dtype="uint8")
    with pytest.raises(LayoutError, match="mutually exclusive"):
        Layout.preset("nemotron_h_omni", video={"do_sample_frames": True, "num_frames": 2, "fps": 1.0}).video(
            4, 64, 64
        )
    with pytest.raises(LayoutError, match="video norm_mean must be three numbers"):
        Layout.preset("nemotron_h_omni", video={"norm_mean": None})
    layout = Layout.preset("nemotron_h_omni")
    lay = layout.image(640, 480)
    assert layout.placeholder_text(lay) == "<img>" + "<image>" * lay.num_tokens + "</img>"
    with pytest.raises(LayoutError, match="tokenizer"):
        layout.placeholder_token_ids(lay)


def test_refs_materialize_and_drop_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoImageProcessor

    import rawmm.hf
    from rawmm import Materializer

    layout = Layout.preset("nemotron_h_omni")
    store = AssetStore(tmp_path / "store", run_id="nemo")
    adapter = adapter_for(layout)
    ims = [make_image("RGB", 640, 480, "noise", 7), make_image("RGB", 90, 1300, "noise", 8)]
    refs = [adapter.ref(adapter.describe(im, store=store)) for im in ims]
    assert refs[0].family == "nemotron_h_omni"
    want = reference(layout)(images=ims, return_tensors="np")
    with Materializer(adapter, store=store, processor_id="nemotron-test") as m:
        assert_same_outputs(m.materialize([r.to_string() for r in refs]).as_hf_dict(), dict(want))

    ref_cls, ours_cls = reference_class(), rawmm.hf.NemotronH_Omni_Reasoning_V3ImageProcessor
    assert issubclass(ours_cls, ref_cls)
    arrays = [ims[0], np.asarray(make_image("RGB", 300, 200, "noise", 2))]
    ours, ref = ours_cls(), ref_cls()
    for kw in ({}, {"min_num_patches": 64, "max_num_patches": 512}, {"image_mean": 0.5, "image_std": 0.5}):
        for tensors in (None, "np", "pt"):
            w, g = (
                ref(images=arrays, return_tensors=tensors, **kw),
                ours(images=arrays, return_tensors=tensors, **kw),
            )
            assert {k: type(v) for k, v in g.items()} == {k: type(v) for k, v in w.items()}
            assert_same_outputs(dict(g), dict(w))
    monkeypatch.setattr(ref_cls, "_preprocess", lambda *a, **k: pytest.fail("transformers' code ran"))
    ours(images=arrays, return_tensors="np")
    monkeypatch.undo()
    assert type(pickle.loads(pickle.dumps(ours))) is ours_cls
    ours.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "nemotron_h_omni"}))
    rawmm.hf.register()
    assert type(AutoImageProcessor.from_pretrained(tmp_path / "model")) is ours_cls


SPECIAL = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<img>",
    "</img>",
    "<image>",
]


class _NativeWithTokenCounts:
    """transformers' native processor with the keys the renderer reads from NVIDIA's remote
    processor, each derived as transformers' `NemotronH_Omni_Reasoning_V3Processor` does
    (`num_tokens = grid_h·grid_w // merge²`)."""

    def __init__(self, layout: Layout) -> None:
        self.proc, self.layout = reference(layout), layout

    def __call__(self, images: Any, return_tensors: str = "np") -> dict[str, Any]:
        out = dict(self.proc(images=images, return_tensors=return_tensors))
        grid, m, p = out["image_grid_hw"], 2, self.layout.knobs["patch_size"]
        out.update(
            num_tokens=grid[:, 0] * grid[:, 1] // (m * m),
            num_patches=grid[:, 0] * grid[:, 1],
            imgs_sizes=grid * p,
        )
        return out


def test_renderer_prompt_ids_with_grid_processor(tmp_path: Path) -> None:
    import renderers

    from rawmm.renderer import GridProcessor, attach_refs
    from test_renderers import small_tokenizer

    layout = Layout.preset("nemotron_h_omni")
    tokenizer = small_tokenizer(SPECIAL)
    ims = [make_image("RGB", 320, 240, "noise", 1), make_image("RGB", 517, 333, "noise", 2)]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                *({"type": "image", "image": im} for im in ims),
            ],
        }
    ]

    def render(image_processor: Any) -> Any:
        r = renderers.Nemotron35Renderer(
            tokenizer, processor=SimpleNamespace(image_processor=image_processor)
        )
        return r.render(messages, add_generation_prompt=True)

    ref = render(_NativeWithTokenCounts(layout))
    light = render(GridProcessor(layout).image_processor)
    assert light.token_ids == ref.token_ids
    assert light.multi_modal_data.mm_placeholders == ref.multi_modal_data.mm_placeholders
    store = AssetStore(tmp_path / "run", run_id="run_n")
    adapter = adapter_for(layout)
    mm = attach_refs(light.multi_modal_data, messages, adapter, store)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    for holder, ref_text, im in zip(mm["mm_placeholders"]["image"], mm["refs"]["image"], ims, strict=True):
        assert (
            light.token_ids[holder["offset"] : holder["offset"] + holder["length"]]
            == [image_id] * holder["length"]
        )
        got = adapter.materialize(ref_text, store=store).as_hf_dict()
        assert_same_outputs(got, dict(reference(layout)(images=[im], return_tensors="np")))


def test_cli_describe_and_materialize(tmp_path: Path) -> None:
    im = make_image("RGB", 333, 120, "noise", 9)
    want = dict(reference(Layout.preset("nemotron_h_omni"))(images=[im], return_tensors="np"))
    assert cli_round_trip(tmp_path, "nemotron_h_omni", im, want)["family"] == "nemotron_h_omni"


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 12),
    w=st.integers(1, 200),
    h=st.integers(1, 200),
    sample=st.sampled_from([None, "num_frames", "fps"]),
    aspect=st.booleans(),
    target=st.sampled_from([64, 256, 1024]),
    fps=st.sampled_from([1.0, 2.5, 24.0, 29.97]),
    seed=seeds,
)
@example(n=7, w=320, h=240, sample=None, aspect=True, target=1024, fps=10.0, seed=1)  # the defaults
@example(n=8, w=50, h=100, sample="num_frames", aspect=True, target=256, fps=24.0, seed=2)
@example(n=5, w=1, h=1, sample=None, aspect=False, target=64, fps=2.5, seed=3)  # a square tile
def test_video_bit_identical(
    n: int, w: int, h: int, sample: str | None, aspect: bool, target: int, fps: float, seed: int
) -> None:
    """`Layout.video` (frames, tile, the labelled prompt) and `video_pixel_values` against
    `NemotronH_Omni_Reasoning_V3VideoProcessor` and `NemotronH_Omni_Reasoning_V3Processor.
    replace_video_token`; the drop-in too."""
    from transformers.models.nemotron_h_omni.processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3Processor,
    )
    from transformers.models.nemotron_h_omni.video_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3VideoProcessor,
    )

    import rawmm.hf

    video: dict[str, Any] = {"video_maintain_aspect_ratio": aspect, "video_target_num_patches": target}
    if sample == "num_frames":
        video.update(do_sample_frames=True, num_frames=max(1, n // 2))
    elif sample == "fps":
        video.update(do_sample_frames=True, fps=fps / 2)
    layout = Layout.preset("nemotron_h_omni", video=video)
    k = layout.video_knobs
    kw = {
        key: k[key]
        for key in ("norm_mean", "norm_std", "video_target_num_patches", "video_maintain_aspect_ratio")
    }
    kw.update({key: k[key] for key in ("do_sample_frames", "num_frames", "fps") if k[key] is not None})
    frames, call = video_call(n, w, h, fps, seed)
    ref = NemotronH_Omni_Reasoning_V3VideoProcessor(**kw)(**call)
    v = layout.video(n, w, h, fps=fps)
    sampled = ref["video_metadata"][0].frames_indices
    assert v.frame_indices == (list(range(n)) if sampled is None else [int(i) for i in sampled])
    fake = SimpleNamespace(
        video_processor=SimpleNamespace(patch_size=16, downsample_ratio=0.5),
        image_start_token="<img>",
        image_token="<image>",
        image_end_token="</img>",
        video_temporal_patch_dim=2,
    )
    text = NemotronH_Omni_Reasoning_V3Processor.replace_video_token(fake, ref, 0)
    assert v.placeholder_text == text and v.num_tokens == text.count("<image>")
    got = layout.video_pixel_values(list(frames), fps=fps).pixel_values
    assert np.array_equal(got.view(np.uint32), ref["pixel_values_videos"].view(np.uint32))
    ours = rawmm.hf.NemotronH_Omni_Reasoning_V3VideoProcessor(**kw)(**call)
    assert np.array_equal(
        ours["pixel_values_videos"].view(np.uint32), ref["pixel_values_videos"].view(np.uint32)
    )
    assert list(ours["num_frames"]) == list(ref["num_frames"])
