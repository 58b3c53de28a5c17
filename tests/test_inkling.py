"""Inkling (`inkling` family) against transformers 5.24's live `InklingImageProcessor`
(torchvision 0.29 / torch 2.15, its only backend): tiles, padding and the optional Lanczos
pre-scale bit for bit, configs, refs, placeholders, the drop-in class, the CLI and renderers
0.1.12's `InklingRenderer`."""

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
from family_checks import assert_same_outputs, cli_round_trip
from images import make_image, modes, seeds, sides
from rawmm import AssetStore, Layout, LayoutError, adapter_for
from rawmm.families import family


def reference_class() -> Any:
    require_torch()
    import torch

    torch.set_num_threads(1)
    from transformers.models.inkling.image_processing_inkling import InklingImageProcessor

    return InklingImageProcessor


def reference(layout: Layout) -> Any:
    k = layout.knobs
    return reference_class()(
        size={"height": k["patch_size"], "width": k["patch_size"]},
        rescale_image_frac=k["rescale_image_frac"],
        rescale_image_max_upscaled_long_edge=k["rescale_image_max_upscaled_long_edge"],
        image_mean=k["image_mean"],
        image_std=k["image_std"],
    )


def same(layout: Layout, im: Any) -> None:
    try:
        want = reference(layout)(images=[im], return_tensors="np")
    except (ValueError, RuntimeError):  # a pre-scale to nothing, or torch's 1x1 assertion
        with pytest.raises(LayoutError, match=r"pre-scaled|makes a"):
            layout.pixel_values(im)
        return
    got = layout.pixel_values(im)
    assert_same_outputs(family("inkling").hf_outputs(layout, got.pixel_values, got.grid_thw), want)
    lay = layout.image(im.width, im.height)
    assert got.num_tokens == [lay.num_tokens] == [int(want["num_patches"][0])]


@settings(max_examples=60)
@given(w=sides, h=sides, mode=modes, seed=seeds)
@example(w=1, h=1, mode="RGB", seed=0)  # one tile, almost all padding
@example(w=40, h=40, mode="RGBA", seed=1)  # the extra column: all padding
@example(w=80, h=41, mode="L", seed=2)  # a second row of one pixel
@example(w=2500, h=3, mode="P+tRNS", seed=3)  # extreme ratio
def test_pixel_values_bit_identical(w: int, h: int, mode: str, seed: int) -> None:
    same(Layout.preset("inkling"), make_image(mode, w, h, "noise", seed))


@settings(max_examples=40)
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    patch=st.integers(1, 64),
    frac=st.one_of(st.none(), st.floats(0.05, 4.0)),
    cap=st.one_of(st.none(), st.integers(1, 1500)),
    seed=seeds,
)
@example(w=300, h=200, patch=40, frac=1.5, cap=2048, seed=1)  # upscaled with Lanczos
@example(w=640, h=480, patch=40, frac=0.5, cap=None, seed=2)  # downscaled
@example(w=1000, h=700, patch=40, frac=3.0, cap=1200, seed=3)  # upscale capped
@example(w=9, h=9, patch=40, frac=0.1, cap=None, seed=4)  # to 1x1: torch's assertion
def test_random_configs_bit_identical(
    w: int, h: int, patch: int, frac: float | None, cap: int | None, seed: int
) -> None:
    layout = Layout.preset(
        "inkling", patch_size=patch, rescale_image_frac=frac, rescale_image_max_upscaled_long_edge=cap
    )
    same(layout, make_image("RGB", w, h, "noise", seed))


def test_lanczos_kernel_equals_torch() -> None:
    """The uint8 Lanczos-3 resize alone against torch's `_upsample_lanczos2d_aa`, both ways."""
    require_torch()
    import torch

    from rawmm import _core

    rng = np.random.default_rng(5)
    for (h, w), (oh, ow) in [((97, 131), (300, 41)), ((640, 480), (91, 700)), ((5, 3), (2, 9))]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t = torch.from_numpy(a).permute(2, 0, 1)[None]
        want = torch.nn.functional.interpolate(t, size=(oh, ow), mode="lanczos", antialias=True)
        got = _core.resize_bicubic(a, ow, oh, backend="torchvision", filter="lanczos")
        assert np.array_equal(got, want[0].permute(1, 2, 0).numpy())
    with pytest.raises(LayoutError, match="filter"):
        _core.resize_bicubic(a, 3, 3, backend="pil", filter="lanczos")


def test_knobs_configs_and_errors(tmp_path: Path) -> None:
    reference_class()().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert Layout.from_preprocessor_config(cfg) == Layout.preset("inkling")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "inkling_mm_model"}))
    assert Layout.from_preprocessor_config(tmp_path) == Layout.preset("inkling")
    layout = Layout.from_preprocessor_config(
        {**cfg, "rescale_image_frac": 1.25, "size": {"height": 32, "width": 32}}
    )
    assert (layout.knobs["rescale_image_frac"], layout.knobs["patch_size"]) == (1.25, 32)
    assert (
        'resample="lanczos"' in layout.fingerprint_text
        and "rescale_image_frac=1.25" in layout.fingerprint_text
    )
    with pytest.raises(LayoutError, match="square"):
        Layout.from_preprocessor_config({**cfg, "size": {"height": 32, "width": 40}})
    with pytest.raises(LayoutError, match="LANCZOS"):
        Layout.from_preprocessor_config({**cfg, "resample": 3})
    with pytest.raises(LayoutError, match="torchvision"):
        Layout.from_preprocessor_config(cfg, backend="pil")
    with pytest.raises(LayoutError, match="torchvision backend"):
        Layout.preset("inkling", backend="pil")
    with pytest.raises(LayoutError, match="resample must be 'lanczos'"):
        Layout.preset("inkling", resample="bicubic")
    with pytest.raises(LayoutError, match="rescale_image_frac"):
        Layout.preset("inkling", rescale_image_frac=-1.0)
    with pytest.raises(LayoutError, match="no video"):
        Layout.preset("inkling").video(4, 64, 64)
    layout = Layout.preset("inkling")
    with pytest.raises(LayoutError, match="no uint8 rows"):
        layout.pixel_values(np.zeros((50, 50, 3), np.uint8), dtype="uint8")
    with pytest.raises(LayoutError, match=r"-1\.0"):
        layout.normalize(np.zeros((1, 2, 40, 40, 3), np.uint8))


def test_placeholders_refs_and_materialize(tmp_path: Path) -> None:
    from rawmm import Materializer

    layout = Layout.preset("inkling")
    lay = layout.image(130, 81)
    assert tuple(lay.grid_thw) == (1, 3, 4) and lay.num_tokens == 12
    assert layout.placeholder_text(lay) == "<|content_image|>" + "<|unused_200054|>" * 12
    assert layout.placeholder_token_ids(lay) == [200005, *[200054] * 12]
    assert layout.image_pad_token_id == 200054 and layout.placeholder_length(lay) == 12
    store = AssetStore(tmp_path / "store", run_id="ink")
    adapter = adapter_for(layout)
    ims = [make_image("RGB", 130, 81, "noise", 7), make_image("RGB", 40, 200, "noise", 8)]
    refs = [adapter.ref(adapter.describe(im, store=store)) for im in ims]
    assert refs[0].family == "inkling" and dict(refs[0].payload) == {"image_grid_thw": ((1, 3, 4),)}
    want = reference(layout)(images=ims, return_tensors="np")
    with Materializer(adapter, store=store, processor_id="inkling-test") as m:
        assert_same_outputs(m.materialize([r.to_string() for r in refs]).as_hf_dict(), dict(want))
    one = adapter.materialize(refs[1], store=store).as_hf_dict()
    assert np.array_equal(one["pixel_values"], want["pixel_values"][12:])
    with pytest.raises(LayoutError, match="family"):
        adapter_for(Layout.preset("gemma4")).materialize(refs[0], store=store)


def test_drop_in_processor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoImageProcessor

    import rawmm.hf

    ref_cls = reference_class()
    ours_cls = rawmm.hf.InklingImageProcessor
    assert issubclass(ours_cls, ref_cls)
    ims = [make_image("RGB", 300, 200, "noise", 1), np.asarray(make_image("RGB", 90, 50, "noise", 2))]
    calls: list[dict[str, Any]] = [
        {},
        {"rescale_image_frac": 1.3},
        {"size": {"height": 16, "width": 16}, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]},
        {"do_normalize": False},  # not reproduced: transformers' own code runs
    ]
    ours, ref = ours_cls(), ref_cls()
    for kw in calls:
        for tensors in (None, "np", "pt"):
            want, got = (
                ref(images=ims, return_tensors=tensors, **kw),
                ours(images=ims, return_tensors=tensors, **kw),
            )
            assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
            assert_same_outputs(dict(got), dict(want))
    monkeypatch.setattr(ref_cls, "_preprocess", lambda *a, **k: pytest.fail("transformers' code ran"))
    ours(images=ims, return_tensors="np")
    ours(images=ims, return_tensors="np", rescale_image_frac=0.7)
    monkeypatch.undo()
    assert type(pickle.loads(pickle.dumps(ours))) is ours_cls
    ours.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "inkling_mm_model"}))
    rawmm.hf.register()
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is ours_cls
    layout = Layout.from_preprocessor_config(tmp_path)
    assert_same_outputs(
        rawmm.hf.ImageProcessor(layout)(ims[:1]), dict(ours(images=ims[:1], return_tensors="np"))
    )


INKLING_SPECIAL = [
    "<|message_user|>",
    "<|message_model|>",
    "<|message_system|>",
    "<|message_tool|>",
    "<|content_text|>",
    "<|content_thinking|>",
    "<|content_image|>",
    "<|content_audio_input|>",
    "<|content_xml|>",
    "<|content_invoke_tool_json|>",
    "<|content_invoke_tool_text|>",
    "<|content_model_end_sampling|>",
    "<|end_message|>",
    "<|audio_end|>",
    "<|unused_200054|>",
    "<|unused_200053|>",
    "<|endoftext|>",
]


def test_renderer_prompt_ids_with_grid_processor(tmp_path: Path) -> None:
    """renderers 0.1.12's InklingRenderer renders the same prompt ids with transformers'
    processor, rawmm's drop-in and rawmm's GridProcessor (no pixels); the refs then
    materialize to the processor's tiles."""
    import renderers

    from rawmm.hf import InklingImageProcessor
    from rawmm.renderer import GridProcessor, attach_refs
    from test_renderers import conversation, small_tokenizer

    layout = Layout.preset("inkling")
    tokenizer, messages = small_tokenizer(INKLING_SPECIAL), conversation(tmp_path)

    def render(image_processor: Any) -> Any:
        r = renderers.InklingRenderer(tokenizer, processor=SimpleNamespace(image_processor=image_processor))
        return r.render(messages, add_generation_prompt=True)

    ref = render(reference(layout))
    ours = render(InklingImageProcessor())
    light = render(GridProcessor(layout).image_processor)
    assert ours.token_ids == ref.token_ids == light.token_ids
    assert light.multi_modal_data.mm_placeholders == ref.multi_modal_data.mm_placeholders
    ref_items = ref.multi_modal_data.mm_items["image"]
    assert len(ref_items) == 3
    for r_item, o_item in zip(ref_items, ours.multi_modal_data.mm_items["image"], strict=True):
        assert_same_outputs(o_item, r_item)
    store = AssetStore(tmp_path / "run", allowed_roots=[tmp_path], run_id="run_i")
    adapter = adapter_for(layout)
    mm = attach_refs(light.multi_modal_data, messages, adapter, store)
    pad = tokenizer.convert_tokens_to_ids("<|unused_200054|>")
    for holder, ref_text, r_item in zip(
        mm["mm_placeholders"]["image"], mm["refs"]["image"], ref_items, strict=True
    ):
        ids = light.token_ids[holder["offset"] : holder["offset"] + holder["length"]]
        assert ids == [pad] * holder["length"]
        got = adapter.materialize(ref_text, store=store).as_hf_dict()
        assert np.array_equal(got["pixel_values"], np.asarray(r_item["pixel_values"]))


def test_cli_describe_and_materialize(tmp_path: Path) -> None:
    im = make_image("RGB", 333, 120, "noise", 9)
    want = dict(reference(Layout.preset("inkling"))(images=[im], return_tensors="np"))
    line = cli_round_trip(tmp_path, "inkling", im, want)
    assert line["family"] == "inkling" and line["num_tokens"] == 3 * 9
