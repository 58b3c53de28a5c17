"""A real client: renderers 0.1.12's Qwen3VLRenderer with the reference processor, with
rawmm's drop-in processor, and with rawmm descriptors instead of pixels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import renderers

from conftest import qwen_reference
from images import encode, make_image
from rawmm import Layout
from rawmm.adapters import adapter_for
from rawmm.hf import ImageProcessor
from rawmm.renderer import GridProcessor, attach_refs, describe_for_renderer
from rawmm.store import AssetStore

SPECIAL = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def small_tokenizer(special: list[str] = SPECIAL):  # type: ignore[no-untyped-def]
    """A byte-level tokenizer (every text encodes losslessly) with `special` tokens (Qwen's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": special})
    return fast


def conversation(tmp_path: Path) -> list[dict]:
    paths = []
    for name, im, fmt in (
        ("a.png", make_image("RGB", 320, 240, "gradient", 1), "PNG"),
        ("b.jpg", make_image("RGB", 517, 333, "noise", 2), "JPEG"),
        ("c.png", make_image("RGB", 40, 900, "blocks", 3), "PNG"),
    ):
        p = tmp_path / name
        p.write_bytes(encode(im, fmt))
        paths.append(p)
    return [
        {"role": "system", "content": "You look at pictures."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these: "},
                {"type": "image", "image": str(paths[0])},
                {"type": "image", "image": str(paths[1])},
                {"type": "text", "text": "and say which is brighter."},
            ],
        },
        {"role": "assistant", "content": "The first one."},
        {
            "role": "user",
            "content": [{"type": "image", "image": str(paths[2])}, {"type": "text", "text": "And this?"}],
        },
    ]


def render(tokenizer, processor, messages):  # type: ignore[no-untyped-def]
    r = renderers.Qwen3VLRenderer(tokenizer, processor=SimpleNamespace(image_processor=processor))
    return r.render(messages, add_generation_prompt=True)


@pytest.mark.parametrize("name", ["qwen3_vl", "qwen2_5_vl"])
def test_renderer_with_rawmm_processor_is_identical(tmp_path: Path, name: str) -> None:
    layout = Layout.preset(name)
    tokenizer, messages = small_tokenizer(), conversation(tmp_path)
    ref = render(tokenizer, qwen_reference(layout), messages)
    got = render(tokenizer, ImageProcessor(layout), messages)
    assert got.token_ids == ref.token_ids
    r_mm, g_mm = ref.multi_modal_data, got.multi_modal_data
    assert g_mm.mm_hashes == r_mm.mm_hashes and g_mm.mm_placeholders == r_mm.mm_placeholders
    assert len(r_mm.mm_items["image"]) == 3
    for r_item, g_item in zip(r_mm.mm_items["image"], g_mm.mm_items["image"], strict=True):
        assert np.array_equal(g_item["pixel_values"].view(np.uint32), r_item["pixel_values"].view(np.uint32))
        assert np.array_equal(g_item["image_grid_thw"], r_item["image_grid_thw"])


def test_renderer_with_descriptors(tmp_path: Path) -> None:
    layout = Layout.preset("qwen3_vl")
    adapter = adapter_for(layout)
    store = AssetStore(tmp_path / "run", allowed_roots=[tmp_path], run_id="run_r1")
    tokenizer, messages = small_tokenizer(), conversation(tmp_path)
    ref = render(tokenizer, qwen_reference(layout), messages)
    light = render(tokenizer, GridProcessor(layout).image_processor, messages)
    assert light.token_ids == ref.token_ids
    assert light.multi_modal_data.mm_placeholders == ref.multi_modal_data.mm_placeholders
    mm = attach_refs(light.multi_modal_data, messages, adapter, store)
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for holder, item, ref_text in zip(
        mm["mm_placeholders"]["image"], mm["mm_items"]["image"], mm["refs"]["image"], strict=True
    ):
        ids = light.token_ids[holder["offset"] : holder["offset"] + holder["length"]]
        assert ids == [pad] * holder["length"]
        out = adapter.materialize(ref_text, store=store)
        assert holder["length"] == out.grid_thw[0].prod() // 4  # the descriptor's tokens = placeholder length
        assert item["raw_image_id"] == ref_text.split(":")[7]
    pixels = np.concatenate([adapter.materialize(t, store=store).pixel_values for t in mm["refs"]["image"]])
    want = np.concatenate([i["pixel_values"] for i in ref.multi_modal_data.mm_items["image"]])
    assert np.array_equal(pixels.view(np.uint32), want.view(np.uint32))
    one = describe_for_renderer(adapter, messages[1]["content"][1]["image"], store=store)
    assert one.placeholder_length == one.descriptor.num_tokens
    assert one.placeholder_token_ids[1:-1] == [151655] * one.descriptor.num_tokens


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
@pytest.mark.parametrize("renderer", ["Qwen3VLRenderer", "Qwen35Renderer"])
def test_renderers_run_on_rawmm_hf_processors(tmp_path: Path, renderer: str, backend: str) -> None:
    """renderers' Qwen3-VL and Qwen3.5 renderers, unchanged, with rawmm.hf's transformers
    subclasses: the same ids, placeholders, hashes and pixels as with transformers' classes."""
    from test_hf_processors import classes

    ours_cls, ref_cls = classes(backend)
    cfg = {"patch_size": 16, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "max_pixels": 200_704}
    tokenizer, messages = small_tokenizer(), conversation(tmp_path)
    cls = getattr(renderers, renderer)
    outs = [
        cls(tokenizer, processor=SimpleNamespace(image_processor=c(**cfg))).render(
            messages, add_generation_prompt=True
        )
        for c in (ours_cls, ref_cls)
    ]
    got, ref = outs
    assert got.token_ids == ref.token_ids
    assert got.multi_modal_data.mm_placeholders == ref.multi_modal_data.mm_placeholders
    assert got.multi_modal_data.mm_hashes == ref.multi_modal_data.mm_hashes
    for g, r in zip(
        got.multi_modal_data.mm_items["image"], ref.multi_modal_data.mm_items["image"], strict=True
    ):
        for key in r:
            a, b = np.asarray(g[key]), np.asarray(r[key])
            assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8)), key
