"""Kimi K2.5 pixel_values against an independent reference built from the spec with Pillow
and numpy (Moonshot's processor is not installable here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from images import make_image, seeds
from rawmm import Layout
from rawmm.hf import ImageProcessor

P, M, LIMIT, SIDE = 14, 2, 16384, 512


def kimi_reference(im: Image.Image, limit: int = LIMIT) -> tuple[np.ndarray, list[int]]:
    """layout.md §6 and pixels.md §5, transcribed: navit resize, zero pad, normalise, raster."""
    w, h = im.size
    nw, nh = max(1.0, w // P), max(1.0, h // P)
    s = min(1.0, math.sqrt(limit / (nw * nh)), SIDE * P / w, SIDE * P / h)
    rw, rh = min(max(1, int(w * s)), SIDE * P), min(max(1, int(h * s)), SIDE * P)
    if (rw, rh) != (w, h):
        im = im.resize((rw, rh), Image.Resampling.BICUBIC)
    f = M * P
    pw, ph = rw + (f - rw % f) % f, rh + (f - rh % f) % f
    arr = np.zeros((ph, pw, 3), np.uint8)
    arr[:rh, :rw] = np.asarray(im)
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    y = (x - np.float32(0.5)) / np.float32(0.5)
    gh, gw = ph // P, pw // P
    patches = y.reshape(gh, P, gw, P, 3).transpose(0, 2, 4, 1, 3).reshape(gh * gw, 3, P, P)
    return patches, [1, gh, gw]


def composite(im: Image.Image) -> Image.Image:
    """transformers' PIL-path rule (the preset's `composite_white`)."""
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return im.convert("RGB")


@settings(max_examples=60)
@given(
    w=st.integers(1, 1500),
    h=st.integers(1, 1500),
    mode=st.sampled_from(["RGB", "RGBA", "L", "P+tRNS", "LA"]),
    seed=seeds,
)
@example(w=10, h=10, mode="RGB", seed=0)  # padded to 28×28, −1.0 padding
@example(w=1024, h=1024, mode="RGB", seed=1)
@example(w=8000, h=100, mode="RGB", seed=2)  # per-side limit 7168
@example(w=4000, h=3000, mode="RGB", seed=3)  # downscaled by the patch budget
@example(w=1, h=1, mode="L", seed=4)
def test_kimi_bit_identical(w: int, h: int, mode: str, seed: int) -> None:
    layout = Layout.preset("kimi_k25")
    im = make_image(mode, w, h, "noise", seed)
    want, grid = kimi_reference(composite(im))
    out = layout.pixel_values(im)
    assert out.pixel_values.shape == want.shape and out.pixel_values.dtype == np.float32
    assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
    assert out.grid_thw.tolist() == [grid]
    assert out.num_tokens == [grid[1] * grid[2] // 4]
    # Moonshot's own processor drops alpha: alpha_policy="drop" and the drop-in processor
    dropped, _ = kimi_reference(im.convert("RGB"))
    assert np.array_equal(layout.replace(alpha_policy="drop").pixel_values(im).pixel_values, dropped)
    hf = ImageProcessor(layout)(images=[im], return_tensors="np")
    assert set(hf) == {"pixel_values", "grid_thws"} and np.array_equal(hf["pixel_values"], dropped)


def test_kimi_padding_is_minus_one_and_batches_concatenate() -> None:
    layout = Layout.preset("kimi_k25")
    ims = [make_image("RGB", 10, 10, "flat", 0), make_image("RGB", 300, 47, "noise", 1)]
    out = layout.pixel_values(ims)
    first = out.pixel_values[:4]
    assert (first[3] == -1.0).all()  # bottom-right patch of a 10×10 image padded to 28×28
    parts = [kimi_reference(im)[0] for im in ims]
    assert np.array_equal(out.pixel_values, np.concatenate(parts))
    assert out.grid_thw.tolist() == [[1, 2, 2], [1, 4, 22]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kimi_dtypes(dtype: str) -> None:
    out = Layout.preset("kimi_k25").pixel_values(make_image("RGB", 64, 64, "noise", 3), dtype=dtype)
    assert out.pixel_values.dtype == (np.float32 if dtype == "float32" else np.uint16)
    assert out.pixel_values.shape == (36, 3, 14, 14)


KIMI_SPECIAL = [
    "<|im_user|>",
    "<|im_assistant|>",
    "<|im_system|>",
    "<|im_middle|>",
    "<|im_end|>",
    "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>",
    "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>",
    "<|tool_call_end|>",
    "<|media_begin|>",
    "<|media_content|>",
    "<|media_pad|>",
    "<|media_end|>",
    "<|endoftext|>",
    "<think>",
    "</think>",
]


def kimi_tokenizer():  # type: ignore[no-untyped-def]
    """A byte-level tokenizer (lossless on any text) with Kimi K2.5's special tokens."""
    from test_renderers import small_tokenizer

    return small_tokenizer(KIMI_SPECIAL)


class _MoonshotReference:
    """The image-processor interface of Moonshot's processor, computed by the spec transcription
    above (alpha dropped, no EXIF: what Moonshot's code does with the PIL image it is given)."""

    def preprocess(self, medias: list[dict], return_tensors: str | None = None) -> dict:
        parts = [kimi_reference(m["image"].convert("RGB")) for m in medias]
        return {
            "pixel_values": np.concatenate([p for p, _ in parts]),
            "grid_thws": np.array([g for _, g in parts], dtype=np.int64),
        }

    def media_tokens_calculator(self, media: dict) -> int:
        _, (_, gh, gw) = kimi_reference(media["image"].convert("RGB"))
        return gh * gw // (M * M)


def test_renderers_kimi_k25_renderer_runs_on_rawmm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """renderers 0.1.12's KimiK25Renderer, unchanged, with rawmm's Kimi processor: the same token
    ids, placeholders and bit-identical pixels as with Moonshot's processor interface."""
    from types import SimpleNamespace

    from renderers.kimi_k25 import KimiK25Renderer

    from images import encode
    from rawmm.hf import KimiK25ImageProcessor, KimiK25Processor

    paths = []
    for name, im in (
        ("a.png", make_image("RGBA", 320, 240, "noise", 1)),
        ("b.png", make_image("RGB", 900, 40, "blocks", 2)),
    ):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(encode(im))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image", "image": str(paths[0])},
                {"type": "image", "image": str(paths[1])},
            ],
        }
    ]
    tok = kimi_tokenizer()
    ours = KimiK25Renderer(tok, processor=KimiK25Processor()).render(messages, add_generation_prompt=True)
    ref = KimiK25Renderer(tok, processor=SimpleNamespace(image_processor=_MoonshotReference())).render(
        messages, add_generation_prompt=True
    )
    assert ours.token_ids == ref.token_ids
    mm_ours, mm_ref = ours.multi_modal_data, ref.multi_modal_data
    assert mm_ours.mm_placeholders == mm_ref.mm_placeholders
    items_ours, items_ref = mm_ours.mm_items["image"], mm_ref.mm_items["image"]
    assert len(items_ours) == len(items_ref) == 2
    for a, b in zip(items_ours, items_ref, strict=True):
        assert np.array_equal(
            np.asarray(a["pixel_values"]).view(np.uint32), np.asarray(b["pixel_values"]).view(np.uint32)
        )
        assert np.array_equal(a["grid_thws"], b["grid_thws"])
    proc = KimiK25ImageProcessor()
    media = {"type": "image", "image": Image.open(paths[1])}
    assert proc.media_tokens_calculator(media) == _MoonshotReference().media_tokens_calculator(media)
    assert proc.media_tokens_calculator(
        {"type": "image", "image": str(paths[1])}
    ) == proc.media_tokens_calculator(media)
    with pytest.raises(ValueError, match="image media"):
        proc.preprocess([{"type": "video", "video": "x.mp4"}])


def test_grid_processor_for_the_kimi_renderer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """GridProcessor(kimi layout) renders the same token ids as the full processor without
    touching a pixel, and attach_refs turns its items into vision_chunk envelopes."""
    from renderers.kimi_k25 import KimiK25Renderer

    from images import encode
    from rawmm.adapters import adapter_for
    from rawmm.hf import KimiK25Processor
    from rawmm.renderer import GridProcessor, attach_refs
    from rawmm.store import AssetStore

    path = tmp_path / "a.png"
    path.write_bytes(encode(make_image("RGB", 700, 300, "gradient", 5)))
    messages = [
        {"role": "user", "content": [{"type": "image", "image": str(path)}, {"type": "text", "text": "?"}]}
    ]
    tok = kimi_tokenizer()
    layout = Layout.preset("kimi_k25")
    full = KimiK25Renderer(tok, processor=KimiK25Processor()).render(messages, add_generation_prompt=True)
    grid = KimiK25Renderer(tok, processor=GridProcessor(layout)).render(messages, add_generation_prompt=True)
    assert grid.token_ids == full.token_ids
    item = grid.multi_modal_data.mm_items["image"][0]
    assert np.array_equal(item["grid_thws"], full.multi_modal_data.mm_items["image"][0]["grid_thws"])
    store = AssetStore(tmp_path / "run", allowed_roots=[tmp_path])
    mm = attach_refs(grid.multi_modal_data, messages, adapter_for(layout), store)
    assert (
        list(mm["mm_items"]) == ["vision_chunk"] and mm["mm_placeholders"]["vision_chunk"][0]["length"] == 1
    )
