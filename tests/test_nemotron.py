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
from images import encode, make_image, modes, seeds, sides
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


def assert_same_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for key in want:
        g, w = np.asarray(got[key]), np.asarray(want[key])
        assert g.dtype == w.dtype and g.shape == w.shape, key
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8)), key


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
    with pytest.raises(LayoutError, match="video layouts are not supported"):
        Layout.preset("nemotron_h_omni").video(4, 64, 64)
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
    from click.testing import CliRunner

    from rawmm.cli import main

    im = make_image("RGB", 333, 120, "noise", 9)
    path = tmp_path / "a.png"
    path.write_bytes(encode(im, "PNG"))
    store, out = tmp_path / "run", tmp_path / "out.npz"
    common = ["--model", "nemotron_h_omni", "--store", str(store)]
    res = CliRunner().invoke(main, ["describe", *common, str(path)])
    assert res.exit_code == 0, res.output
    line = json.loads(res.output.strip().splitlines()[-1])
    assert line["family"] == "nemotron_h_omni"
    res = CliRunner().invoke(main, ["materialize", line["ref"], *common, "-o", str(out)])
    assert res.exit_code == 0, res.output
    want = reference(Layout.preset("nemotron_h_omni"))(images=[im], return_tensors="np")
    with np.load(out) as z:
        assert_same_outputs({k: z[k] for k in z.files}, dict(want))
