"""Layouts against transformers 5.24 (Qwen), Moonshot's golden data (Kimi) and the spec."""

from __future__ import annotations

import json
import math
from pathlib import Path

import blake3
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as hf_qwen

import rawmm
from conftest import QWEN_PRESETS, qwen_reference, reference_function
from rawmm import Layout, LayoutError

ref_smart_resize = hf_qwen.smart_resize


def ref_layout(layout: Layout, w: int, h: int) -> tuple[int, int, tuple[int, int, int], int]:
    """Resized size, grid and tokens from transformers' own smart_resize."""
    k = layout.knobs
    p, m = k["patch_size"], k["merge_size"]
    rh, rw = ref_smart_resize(h, w, factor=p * m, min_pixels=k["min_pixels"], max_pixels=k["max_pixels"])
    gh, gw = rh // p, rw // p
    return rw, rh, (1, gh, gw), gh * gw // (m * m)


def got_layout(layout: Layout, w: int, h: int) -> tuple[int, int, tuple[int, int, int], int]:
    im = layout.image(w, h)
    return im.resized_width, im.resized_height, im.grid_thw, im.num_tokens


side = st.integers(1, 30000)


def _ties(f: int) -> list[int]:
    return [f // 2 * k for k in (1, 3, 5, 7, 9, 31, 71, 145, 713)]


@pytest.mark.parametrize("name", QWEN_PRESETS)
@given(w=side, h=side)
@example(w=70, h=70)  # tie, F = 28 → 56
@example(w=1022, h=126)
@example(w=1918, h=1078)
@example(w=1280, h=720)  # tie, F = 32 → 704
@example(w=700, h=14)  # zero side after rounding → min branch
@example(w=1, h=1)
@example(w=1, h=200)  # ratio exactly 200
@example(w=200, h=1)
@example(w=30000, h=150)  # ratio 200, huge
@example(w=8000, h=100)
@example(w=8192, h=8192)  # max branch
@example(w=20, h=30)  # min branch
@example(w=16, h=3200)
def test_qwen_image_matches_transformers(name: str, w: int, h: int) -> None:
    layout = Layout.preset(name)
    try:
        want = ref_layout(layout, w, h)
    except ValueError as e:
        with pytest.raises(LayoutError) as info:
            layout.image(w, h)
        assert str(info.value) == str(e)
        return
    assert got_layout(layout, w, h) == want


@pytest.mark.parametrize("name", QWEN_PRESETS)
def test_qwen_ties_and_small_sides_dense(name: str) -> None:
    """Every tie (odd multiples of F/2) and every side up to 2F, in both orientations."""
    layout = Layout.preset(name)
    f = layout.knobs["patch_size"] * layout.knobs["merge_size"]
    sides = sorted({*range(1, 2 * f + 1), *_ties(f), *(f // 2 * k for k in range(1, 200, 2))})
    for a in sides:
        for b in (1, f // 2, f, 3 * f // 2, 100, 1000, 4001):
            for w, h in ((a, b), (b, a)):
                if max(w, h) / min(w, h) > 200:
                    continue
                assert got_layout(layout, w, h) == ref_layout(layout, w, h), (w, h)


@pytest.mark.parametrize("name", QWEN_PRESETS)
@given(w=st.integers(1, 700), h=st.integers(1, 700))
@example(w=14, h=700)
@example(w=1, h=1)
@example(w=70, h=70)
def test_qwen_grid_matches_processor_output(name: str, w: int, h: int) -> None:
    """The grid the reference processor returns when it really processes an image."""
    layout = Layout.preset(name)
    if max(w, h) / min(w, h) > 200:
        return
    out = qwen_reference(layout)(images=[Image.new("RGB", (w, h))], return_tensors="np")
    grid = tuple(int(v) for v in out["image_grid_thw"][0])
    im = layout.image(w, h)
    assert im.grid_thw == grid
    assert im.num_tokens == out["pixel_values"].shape[0] // layout.knobs["merge_size"] ** 2


def test_worked_examples_from_spec() -> None:
    q25, q3 = Layout.preset("qwen2_5_vl"), Layout.preset("qwen3_vl")
    assert got_layout(q25, 1024, 1024) == (1036, 1036, (1, 74, 74), 1369)
    assert got_layout(q25, 700, 14) == (420, 28, (1, 2, 30), 15)
    assert got_layout(q3, 1280, 720) == (1280, 704, (1, 44, 80), 880)
    assert got_layout(q3, 8192, 8192) == (4096, 4096, (1, 256, 256), 16384)
    # transformers' class default max (1,003,520) differs from the hub preset
    assert got_layout(q25.replace(max_pixels=1003520), 1024, 1024) == (980, 980, (1, 70, 70), 1225)


@pytest.mark.parametrize("name", [*QWEN_PRESETS, "kimi_k25"])
def test_bad_sizes_raise_layout_error(name: str) -> None:
    layout = Layout.preset(name)
    for w, h in ((0, 10), (10, 0), (-5, 10), (10, -1)):
        with pytest.raises(LayoutError, match="positive"):
            layout.image(w, h)
    with pytest.raises(LayoutError):
        layout.image(rawmm._core.MAX_SIDE + 1, 10)
    if name != "kimi_k25":
        with pytest.raises(
            LayoutError, match=r"^absolute aspect ratio must be smaller than 200, got 210\.0$"
        ):
            layout.image(2100, 10)
        with pytest.raises(LayoutError, match=r"got 333\.3333333333333$"):
            layout.image(1000, 3)
        assert isinstance(LayoutError("x"), ValueError)


@pytest.mark.parametrize("name", [*QWEN_PRESETS, "kimi_k25"])
@given(sizes=st.lists(st.tuples(st.integers(1, 20000), st.integers(1, 20000)), min_size=1, max_size=50))
def test_images_equals_image_row_by_row(name: str, sizes: list[tuple[int, int]]) -> None:
    layout = Layout.preset(name)
    ok = [s for s in sizes if name == "kimi_k25" or max(s) / min(s) <= 200]
    if not ok:
        return
    out = layout.images(np.array(ok))
    assert out.dtype == np.int64 and out.shape == (len(ok), 6)
    for row, (w, h) in zip(out, ok, strict=True):
        im = layout.image(w, h)
        assert tuple(row) == (im.resized_width, im.resized_height, *im.grid_thw, im.num_tokens)


def test_images_names_first_bad_row() -> None:
    layout = Layout.preset("qwen3_vl")
    with pytest.raises(LayoutError, match=r"^row 2: absolute aspect ratio"):
        layout.images([[100, 100], [200, 200], [2100, 10], [0, 1]])
    with pytest.raises(LayoutError, match=r"^row 1: image size must be positive"):
        layout.images(np.array([[100, 100], [0, 5]], dtype=np.int32))
    with pytest.raises(LayoutError):
        layout.images([[1.5, 2.0]])
    with pytest.raises(LayoutError):
        layout.images([1, 2, 3])
    assert layout.images(np.zeros((0, 2), dtype=np.int64)).shape == (0, 6)


def test_kimi_matches_every_golden_case(kimi_golden: dict) -> None:
    cfg = kimi_golden["config"]
    layout = Layout.preset("kimi_k25")
    k = layout.knobs
    assert (k["patch_size"], k["merge_kernel_size"], k["in_patch_limit"], k["patch_limit_on_one_side"]) == (
        cfg["patch_size"],
        cfg["merge_kernel_size"],
        cfg["in_patch_limit"],
        cfg["patch_limit_on_one_side"],
    )
    cases = kimi_golden["cases"]
    assert len(cases) == 1500
    sizes = np.array([[c["width"], c["height"]] for c in cases])
    rows = layout.images(sizes)
    for c, row in zip(cases, rows, strict=True):
        im = layout.image(c["width"], c["height"])
        got = (
            im.resized_width,
            im.resized_height,
            im.padded_width,
            im.padded_height,
            list(im.grid_thw),
            im.num_tokens,
        )
        want = (
            c["resized_width"],
            c["resized_height"],
            c["padded_width"],
            c["padded_height"],
            c["grid_thw"],
            c["num_tokens"],
        )
        assert got == want, c
        assert list(row) == [c["resized_width"], c["resized_height"], *c["grid_thw"], c["num_tokens"]]
    # the golden set includes grids above the patch budget and the per-side limit
    assert max(c["grid_thw"][1] * c["grid_thw"][2] for c in cases) > cfg["in_patch_limit"]


def test_kimi_fixed_output_tokens_changes_only_tokens() -> None:
    layout = Layout.preset("kimi_k25", fixed_output_tokens=256)
    a, b = layout.image(1024, 768), Layout.preset("kimi_k25").image(1024, 768)
    assert a.num_tokens == 256 and a.grid_thw == b.grid_thw and a.padded_width == b.padded_width


# -- fingerprints, knobs, round trips ----------------------------------------------------


def test_fingerprints_match_spec() -> None:
    """hashing.md §5.5's values are those of "pil" layouts, which the backend knob leaves as
    they were; a "torchvision" layout adds `backend="torchvision"` to the text."""
    q3 = Layout.preset("qwen3_vl", backend="pil")
    assert q3.fingerprint == "f9befd6e9938d4aabeff6b1025313139"
    assert q3.fingerprint_text == (
        'rawmm-layout:v1:qwen_vl:alpha_policy="composite_white";exif_policy="apply";'
        "image_mean=[0.5,0.5,0.5];image_std=[0.5,0.5,0.5];max_pixels=16777216;merge_size=2;"
        'min_pixels=65536;patch_size=16;resample="bicubic";rescale_factor=0.00392156862745098;'
        'resize_compat="pillow13";temporal_patch_size=2'
    )
    assert Layout.preset("qwen2_5_vl", backend="pil").fingerprint == "69a42a62e3c05bd59af9e65022fe6eb0"
    assert Layout.preset("kimi_k25").fingerprint == "6458b2b215d334c0385058a4d628ed3f"
    # Qwen3.5 shares the Qwen3-VL image knobs, so the same fingerprint
    assert Layout.preset("qwen3_5", backend="pil").fingerprint == q3.fingerprint
    tv = Layout.preset("qwen3_vl")  # the default backend
    assert tv.knobs["backend"] == "torchvision"
    assert tv.fingerprint_text == q3.fingerprint_text.replace(
        'alpha_policy="composite_white";', 'alpha_policy="composite_white";backend="torchvision";'
    )
    assert tv.fingerprint == blake3.blake3(tv.fingerprint_text.encode()).hexdigest()[:32] != q3.fingerprint


def test_backend_knob() -> None:
    tv = Layout.preset("qwen2_5_vl")
    pil = tv.replace(backend="pil")
    assert Layout(**tv.to_dict()) == tv and Layout(**pil.to_dict()) == pil
    assert tv.to_dict()["backend"] == "torchvision" and pil.to_dict()["backend"] == "pil"
    # A knob set written before the knob existed meant Pillow, and keeps its fingerprint.
    legacy = {k: v for k, v in pil.to_dict().items() if k != "backend"}
    assert Layout(**legacy) == pil and Layout(**legacy).fingerprint == "69a42a62e3c05bd59af9e65022fe6eb0"
    for bad in ("torch", "PIL", None, 1):
        with pytest.raises(LayoutError, match="backend"):
            Layout.preset("qwen3_vl", backend=bad)
    with pytest.raises(LayoutError, match="Moonshot"):
        Layout.preset("kimi_k25", backend="torchvision")
    assert "backend" not in Layout.preset("kimi_k25").to_dict()


@given(
    mean=st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3),
    std=st.lists(st.floats(1e-6, 10), min_size=3, max_size=3),
)
def test_fingerprint_text_prints_floats_like_python(mean: list[float], std: list[float]) -> None:
    layout = Layout.preset("qwen2_vl", image_mean=mean, image_std=std)
    text = layout.fingerprint_text
    want = "image_mean=[" + ",".join(repr(float(v)) for v in mean) + "]"
    assert want in text
    assert "image_std=[" + ",".join(repr(float(v)) for v in std) + "]" in text
    import blake3

    assert layout.fingerprint == blake3.blake3(text.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"patch_size": 16.0}, "patch_size must be an int"),
        ({"patch_size": True}, "patch_size must be an int"),
        ({"min_pixels": 0}, "min_pixels must be positive"),
        ({"image_mean": [0.5, float("nan"), 0.5]}, "finite"),
        ({"image_mean": [0.5, 0.5]}, "three numbers"),
        ({"image_std": [0.5, 0.0, 0.5]}, "must not contain 0"),
        ({"rescale_factor": 0.004}, "rescale_factor"),
        ({"resample": "bilinear"}, "resample"),
        ({"resize_compat": "pillow11"}, "resize_compat"),
        ({"exif_policy": "maybe"}, "exif_policy"),
        ({"alpha_policy": "black"}, "alpha_policy"),
        ({"bogus": 1}, "unknown"),
        ({"merge_kernel_size": 2}, "unknown"),
    ],
)
def test_bad_knobs_raise(knobs: dict, match: str) -> None:
    with pytest.raises(LayoutError, match=match):
        Layout.preset("qwen3_vl", **knobs)


def test_layout_constructor_needs_every_knob() -> None:
    d = Layout.preset("qwen2_5_vl").to_dict()
    d.pop("model")
    d.pop("max_pixels")
    with pytest.raises(LayoutError, match="missing"):
        Layout("qwen2_5_vl", **d)
    with pytest.raises(LayoutError, match="unknown preset"):
        Layout.preset("qwen9")
    with pytest.raises(LayoutError, match="unknown model"):
        Layout("qwen9", **d)
    kimi = Layout.preset("kimi_k25", merge_kernel_size=[2, 2])
    assert kimi.knobs["merge_kernel_size"] == 2
    with pytest.raises(LayoutError):
        Layout.preset("kimi_k25", merge_kernel_size=[2, 3])
    with pytest.raises(LayoutError, match=r"0\.5"):
        Layout.preset("kimi_k25", image_mean=[0.48145466, 0.4578275, 0.40821073])


@pytest.mark.parametrize("name", [*QWEN_PRESETS, "kimi_k25"])
def test_to_dict_round_trips(name: str) -> None:
    layout = Layout.preset(name)
    d = layout.to_dict()
    assert json.loads(json.dumps(d)) == d
    again = Layout(**d)
    assert again == layout and again.fingerprint == layout.fingerprint and hash(again) == hash(layout)
    assert d["model"] == name and layout.model == name
    assert layout.family == ("kimi_k25" if name == "kimi_k25" else "qwen_vl")
    changed = layout.replace(resize_compat="pillow12")
    assert changed.fingerprint != layout.fingerprint
    assert changed.to_dict()["video"] == d["video"]
    with pytest.raises(AttributeError):
        layout.foo = 1  # type: ignore[attr-defined]


def test_video_knobs_are_outside_the_fingerprint() -> None:
    q3 = Layout.preset("qwen3_vl")
    kept = q3.replace(video={"video_wrapper": "keep_outer"})
    assert kept.fingerprint == q3.fingerprint
    assert kept.to_dict()["video"]["video_wrapper"] == "keep_outer"
    assert kept.to_dict()["video"]["fps"] == 2.0
    with pytest.raises(LayoutError):
        q3.replace(video={"video_wrapper": "both"})
    with pytest.raises(LayoutError):
        q3.replace(video={"nope": 1})
    with pytest.raises(LayoutError):
        Layout.preset("kimi_k25", video={"in_patch_limit_video": 100})
    with pytest.raises(LayoutError):
        Layout.preset("kimi_k25", video={"timestamp_mode": "seconds"})


# -- placeholders -------------------------------------------------------------------------


class WordTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert not add_special_tokens
        return [ord(c) for c in text]


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("qwen2_vl", (151652, 151655, 151653)),
        ("qwen2_5_vl", (151652, 151655, 151653)),
        ("qwen3_vl", (151652, 151655, 151653)),
        ("qwen3_5", (248053, 248056, 248054)),
    ],
)
def test_qwen_placeholders(name: str, ids: tuple[int, int, int]) -> None:
    layout = Layout.preset(name)
    im = layout.image(640, 480)
    text = layout.placeholder_text(im)
    assert text == "<|vision_start|>" + "<|image_pad|>" * im.num_tokens + "<|vision_end|>"
    assert layout.placeholder_text(im, expanded=False) == "<|vision_start|><|image_pad|><|vision_end|>"
    start, pad, end = ids
    assert layout.placeholder_token_ids(im) == [start, *[pad] * im.num_tokens, end]
    assert layout.placeholder_token_ids(im, expanded=False) == [start, pad, end]
    assert layout.placeholder_length(im) == im.num_tokens
    assert layout.image_pad_token_id == pad


def test_kimi_placeholders() -> None:
    layout = Layout.preset("kimi_k25")
    im = layout.image(1024, 1024)
    assert layout.placeholder_text(im, expanded=False) == (
        "<|media_begin|>image<|media_content|><|media_pad|><|media_end|>"
    )
    assert layout.placeholder_text(im).count("<|media_pad|>") == 1369
    with pytest.raises(LayoutError, match="tokenizer"):
        layout.placeholder_token_ids(im)
    ids = layout.placeholder_token_ids(im, expanded=False, tokenizer=WordTokenizer())
    assert ids == [163602, *map(ord, "image"), 163603, 163605, 163604]
    assert layout.placeholder_length(im) == 1


# -- video ----------------------------------------------------------------------------------


def test_qwen2_video_examples() -> None:
    v = Layout.preset("qwen2_vl").video(16, 1920, 1080)
    assert (v.resized_width, v.resized_height, v.grid_thw, v.num_tokens) == (1932, 1092, (8, 78, 138), 21528)
    assert v.second_per_grid_ts is None and v.frame_indices == list(range(16))
    assert v.placeholder_text == "<|vision_start|>" + "<|video_pad|>" * 21528 + "<|vision_end|>"
    v = Layout.preset("qwen2_5_vl").video(5, 640, 480, fps=30)
    assert (v.grid_thw, v.num_tokens) == ((3, 34, 46), 1173)
    assert v.second_per_grid_ts == 2 / 30
    cls = Layout.preset("qwen2_vl", video={"min_pixels": 100352, "max_pixels": 602112})
    assert cls.video(16, 1920, 1080).grid_thw == (8, 40, 72)


@pytest.mark.parametrize(
    ("t", "w", "h", "rw", "rh", "grid", "tokens"),
    [
        (16, 1920, 1080, 1664, 928, (8, 58, 104), 12064),
        (64, 1920, 1080, 832, 448, (32, 28, 52), 11648),
        (3, 640, 480, 640, 480, (2, 30, 40), 600),
        (768, 1280, 720, 224, 128, (384, 8, 14), 10752),
        (8, 20, 600, 32, 960, (4, 60, 2), 120),
    ],
)
def test_qwen3_video_examples(t: int, w: int, h: int, rw: int, rh: int, grid: tuple, tokens: int) -> None:
    # every frame sampled: the source rate equals the sampling rate
    v = Layout.preset("qwen3_vl").video(t, w, h, fps=2.0)
    assert (v.resized_width, v.resized_height, v.grid_thw, v.num_tokens) == (rw, rh, grid, tokens)


@given(t=st.integers(2, 800), w=st.integers(1, 5000), h=st.integers(1, 5000), cap=st.booleans())
@example(t=2, w=1, h=1, cap=False)
@example(t=3, w=20, h=600, cap=False)
@example(t=768, w=1280, h=720, cap=True)
def test_qwen3_video_resize_matches_transformers_source(t: int, w: int, h: int, cap: bool) -> None:
    """Against transformers 5.24's own video smart_resize, compiled from its source (the
    module imports torch, which is not installed)."""
    ref = reference_function(_qwen3_video_path(), "smart_resize")
    layout = Layout.preset("qwen3_vl", video={"do_sample_frames": False, "cap_pixels_per_frame": cap})
    vk = layout.to_dict()["video"]
    lo, hi = vk["min_pixels"], vk["max_pixels"]
    if cap:
        hi = max(min(768 * 32 * 32, hi // t), int(lo * 1.05)) * t
    try:
        rh, rw = ref(
            num_frames=t, height=h, width=w, temporal_factor=2, factor=32, min_pixels=lo, max_pixels=hi
        )
    except ValueError as e:
        with pytest.raises(LayoutError) as info:
            layout.video(t, w, h)
        assert str(info.value) == str(e)
        return
    v = layout.video(t, w, h)
    assert (v.resized_width, v.resized_height) == (rw, rh)
    assert v.grid_thw == (math.ceil(t / 2), rh // 16, rw // 16)


def _qwen3_video_path() -> str:
    import transformers

    return str(Path(transformers.__file__).parent / "models" / "qwen3_vl" / "video_processing_qwen3_vl.py")


@given(total=st.integers(1, 3000), src_fps=st.sampled_from([1.0, 23.976, 24.0, 25.0, 29.97, 30.0, 60.0]))
def test_qwen3_frame_sampling_matches_numpy(total: int, src_fps: float) -> None:
    layout = Layout.preset("qwen3_vl")
    n = min(max(int(total / src_fps * 2.0), 4), 768, total)
    want = np.linspace(0, total - 1, n).round().astype(int).tolist()
    if n < 2:
        with pytest.raises(LayoutError, match="t:1 must be larger than temporal_factor:2"):
            layout.video(total, 64, 64, fps=src_fps)
        return
    assert layout.video(total, 64, 64, fps=src_fps).frame_indices == want


def test_qwen3_timestamps_both_wrappers() -> None:
    layout = Layout.preset("qwen3_vl", video={"fps": None, "min_frames": 5, "max_frames": 5})
    v = layout.video(300, 64, 96, fps=30)
    assert v.frame_indices == [0, 75, 150, 224, 299]
    gt, gh, gw = v.grid_thw
    block = "<|vision_start|>" + "<|video_pad|>" * (gh * gw // 4) + "<|vision_end|>"
    want = f"<1.2 seconds>{block}<6.2 seconds>{block}<10.0 seconds>{block}"
    assert gt == 3 and v.placeholder_text == want
    kept = layout.replace(video={"video_wrapper": "keep_outer"}).video(300, 64, 96, fps=30)
    assert kept.placeholder_text == f"<|vision_start|>{want}<|vision_end|>"


def test_kimi_video_chunks() -> None:
    layout = Layout.preset("kimi_k25")
    v = layout.video(300, 1920, 1080, fps=30)
    assert v.grid_thw is None and v.chunks is not None
    assert len(v.frame_indices) == 20 and v.frame_indices[:5] == [0, 16, 31, 47, 63]
    assert [c[1] for c in v.chunks] == [
        "00:00:00.000",
        "00:00:02.100",
        "00:00:04.200",
        "00:00:06.299",
        "00:00:08.400",
    ]
    assert v.chunks[0][2] == (4, 48, 86) and v.chunks[0][3] == 1032
    assert (v.resized_width, v.resized_height) == (1196, 672)
    assert v.num_tokens == 5 * 1032
    pad = "<|media_pad|>" * 1032
    assert v.placeholder_text.startswith(
        f"00:00:00.000<|media_begin|>video<|media_content|>{pad}<|media_end|>00:00:02.100"
    )
    assert layout.video(300, 1280, 720, fps=30).chunks[0][3] == 1075
    tail = layout.video(10, 64, 64, fps=30)  # 1 sampled frame → one short chunk
    assert tail.chunks is not None and tail.chunks[-1][2][0] == len(tail.chunks[-1][0])


def test_video_errors() -> None:
    for name in (*QWEN_PRESETS, "kimi_k25"):
        layout = Layout.preset(name)
        for args in ((0, 64, 64), (4, 0, 64)):
            with pytest.raises(LayoutError):
                layout.video(*args)
        with pytest.raises(LayoutError):
            layout.video(8, 64, 64, fps=0)
        with pytest.raises(LayoutError):
            layout.video(8, 64, 64, fps=float("nan"))
