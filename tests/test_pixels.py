"""pixel_values bit-identical to transformers 5.24's Qwen image processor of each backend:
`Qwen2VLImageProcessor` (torchvision 0.29 / torch 2.15) and `Qwen2VLImageProcessorPil` (Pillow 13.0.0)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import BACKENDS, QWEN_PRESETS, have_torch, qwen_reference, require_torch
from images import encode, kinds, make_image, modes, seeds, sides
from rawmm import ImageDecodeError, Layout, LayoutError


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32) if a.dtype == np.float32 else a


def assert_same(ref: dict, got: object) -> None:
    pv, grid = ref["pixel_values"], ref["image_grid_thw"]
    assert got.pixel_values.dtype == np.float32 == pv.dtype  # type: ignore[attr-defined]
    assert got.pixel_values.shape == pv.shape  # type: ignore[attr-defined]
    assert np.array_equal(bits(got.pixel_values), bits(pv))  # type: ignore[attr-defined]
    assert got.grid_thw.dtype == np.int64 and np.array_equal(got.grid_thw, grid)  # type: ignore[attr-defined]


def fits(w: int, h: int) -> bool:
    return max(w, h) / min(w, h) <= 200


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", QWEN_PRESETS)
@settings(max_examples=100)
@given(w=sides, h=sides, mode=modes, kind=kinds, seed=seeds)
@example(w=1024, h=1024, mode="RGB", kind="noise", seed=1)  # 1024² → 1036² (Qwen2) / unchanged (Qwen3)
@example(w=720, h=477, mode="RGB", kind="gradient", seed=2)  # Pillow 13 vertical-first order
@example(w=333, h=517, mode="RGB", kind="noise", seed=3)
@example(w=70, h=70, mode="RGBA", kind="noise", seed=4)  # tie
@example(w=1, h=1, mode="L", kind="flat", seed=5)
@example(w=1, h=200, mode="LA", kind="noise", seed=6)  # ratio exactly 200, 1-pixel side
@example(w=700, h=14, mode="P+tRNS", kind="blocks", seed=7)  # zero side after rounding
@example(w=2100, h=11, mode="RGB", kind="noise", seed=8)
@example(w=200, h=1, mode="RGB", kind="noise", seed=9)  # 1-pixel height, ratio 200
@example(w=1036, h=1036, mode="RGB", kind="noise", seed=10)  # aligned: no resize (Qwen2 family)
@example(w=20, h=30, mode="RGB", kind="noise", seed=11)  # strong upscale
@example(w=2500, h=2500, mode="RGB", kind="gradient", seed=12)  # downscale, many taps
def test_pil_inputs_bit_identical(
    name: str, backend: str, w: int, h: int, mode: str, kind: str, seed: int
) -> None:
    if not fits(w, h):
        return
    layout = Layout.preset(name, backend=backend)
    im = make_image(mode, w, h, kind, seed)
    assert_same(qwen_reference(layout)(images=[im], return_tensors="np"), layout.pixel_values(im))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", QWEN_PRESETS)
@settings(max_examples=60)
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    lo=st.integers(1, 200_000),
    span=st.integers(0, 300_000),
    mode=modes,
    seed=seeds,
)
@example(w=640, h=480, lo=3136, span=20_000, mode="RGB", seed=0)  # strong downscale
@example(w=9, h=13, lo=190_000, span=10, mode="RGBA", seed=1)  # strong upscale
@example(w=601, h=3, lo=1, span=1, mode="RGB", seed=2)  # F clamp at an extreme ratio
def test_strong_resizes_bit_identical(
    name: str, backend: str, w: int, h: int, lo: int, span: int, mode: str, seed: int
) -> None:
    """Narrow min/max bounds force strong down- and upscales on small, fast images."""
    if not fits(w, h):
        return
    layout = Layout.preset(name, min_pixels=lo, max_pixels=lo + span, backend=backend)
    im = make_image(mode, w, h, "noise", seed)
    assert_same(qwen_reference(layout)(images=[im], return_tensors="np"), layout.pixel_values(im))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
@settings(max_examples=40)
@given(w=st.integers(1, 500), h=st.integers(1, 500), c=st.sampled_from([1, 3, 4]), seed=seeds)
def test_numpy_inputs_bit_identical(name: str, backend: str, w: int, h: int, c: int, seed: int) -> None:
    if not fits(w, h):
        return
    layout = Layout.preset(name, backend=backend)
    im = make_image({1: "L", 3: "RGB", 4: "RGBA"}[c], w, h, "noise", seed)
    arr = np.asarray(im)
    # transformers takes (H, W, 1) arrays for grey; rawmm also takes plain (H, W)
    ref_in = arr[:, :, None] if arr.ndim == 2 else arr
    if backend == "torchvision" and c == 4:
        # rawmm keeps one alpha rule per layout (pixels.md §1.1: Pillow's integer composite, as
        # for PIL input); transformers' torchvision ndarray path blends in float instead, so the
        # reference gets the same pixels as a PIL image.
        ref_in = im
    # channels_last: tiny arrays like (1, 1, 3) are otherwise ambiguous to transformers
    kw = {} if isinstance(ref_in, Image.Image) else {"input_data_format": "channels_last"}
    ref = qwen_reference(layout)(images=[ref_in], return_tensors="np", **kw)
    assert_same(ref, layout.pixel_values(arr))
    assert_same(ref, layout.pixel_values(np.ascontiguousarray(ref_in)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_concatenate_in_order(backend: str) -> None:
    layout = Layout.preset("qwen2_5_vl", backend=backend)
    ims = [
        make_image(m, w, h, "gradient", i)
        for i, (m, w, h) in enumerate(
            [("RGB", 300, 200), ("RGBA", 57, 400), ("L", 28, 28), ("P", 640, 480), ("RGB", 1, 1)]
        )
    ]
    ref = qwen_reference(layout)(images=ims, return_tensors="np")
    out = layout.pixel_values(ims)
    assert_same(ref, out)
    assert out.num_tokens == [int(np.prod(g)) // 4 for g in ref["image_grid_thw"]]
    for threads in (1, 2, 3):
        assert np.array_equal(
            bits(layout.pixel_values(ims, threads=threads).pixel_values), bits(out.pixel_values)
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoded_inputs_follow_the_layout_policies(tmp_path, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Bytes and paths decode with Pillow, EXIF applied and alpha composited (the presets)."""
    layout = Layout.preset("qwen3_vl", backend=backend)
    im = make_image("RGBA", 123, 77, "noise", 9)
    data = encode(im)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    want = layout.pixel_values(im)
    for source in (data, bytearray(data), memoryview(data), str(path), path):
        got = layout.pixel_values(source)
        assert np.array_equal(bits(got.pixel_values), bits(want.pixel_values))
    dropped = layout.replace(alpha_policy="drop").pixel_values(data)
    ref = qwen_reference(layout)(images=[im.convert("RGB")], return_tensors="np")
    assert_same(ref, dropped)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(orientation: int, backend: str) -> None:
    layout = Layout.preset("qwen2_5_vl", backend=backend)
    im = make_image("RGB", 100, 60, "gradient", orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(im, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = Image.open(__import__("io").BytesIO(data))
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(decoded)
    ref = qwen_reference(layout)(images=[upright], return_tensors="np")
    assert_same(ref, layout.pixel_values(data))
    if orientation >= 5:
        assert tuple(ref["image_grid_thw"][0]) == (1, 8, 4)  # 100×60 turned on its side
    raw = qwen_reference(layout)(images=[Image.open(__import__("io").BytesIO(data))], return_tensors="np")
    assert_same(raw, layout.replace(exif_policy="ignore").pixel_values(data))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30)
@given(seed=seeds)
def test_bfloat16_is_round_to_nearest_even(backend: str, seed: int) -> None:
    layout = Layout.preset("qwen2_vl", backend=backend)
    im = make_image("RGB", 97, 61, "noise", seed)
    f32 = layout.pixel_values(im).pixel_values
    bf = layout.pixel_values(im, dtype="bfloat16").pixel_values
    assert bf.dtype == np.uint16 and bf.shape == f32.shape
    u = f32.view(np.uint32).astype(np.uint64)
    want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    assert np.array_equal(bf, want)
    assert np.array_equal(bf.view(ml_dtypes.bfloat16), f32.astype(ml_dtypes.bfloat16))
    if have_torch():  # torch's own float32 → bfloat16 cast of the reference output
        import torch

        ref = qwen_reference(layout)(images=[im], return_tensors="pt")["pixel_values"]
        assert np.array_equal(bf.view(np.int16), ref.to(torch.bfloat16).view(torch.int16).numpy())


def unpatchify(pv: np.ndarray, gh: int, gw: int, p: int, m: int = 2, t: int = 2) -> np.ndarray:
    """Inverse of pixels.md §4's closed form: (gh·gw, 3·T·p²) rows → (T, 3, H, W)."""
    x = pv.reshape(gh // m, gw // m, m, m, 3, t, p, p)
    return x.transpose(5, 4, 0, 2, 6, 1, 3, 7).reshape(t, 3, gh * p, gw * p)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "mean_std", [None, ([0.1, 0.2, 0.3], [0.7, 0.013, 3.0]), ([0.0, 1.0, 0.5], [1.0, 0.25, 1e-3])]
)
def test_normalisation_of_every_byte_value(backend: str, mean_std: tuple | None) -> None:
    """All 256 values per channel (the presets' CLIP and 0.5/0.5, and custom mean/std) as bits,
    on an aligned image (no resize) so every output element maps back to one input byte.
    PIL backend: numpy's f32 ops as pixels.md §3 writes them; torchvision backend: torch's own
    ops as transformers 5.24 fuses them (mean·(1/rescale), then normalize's sub_ and div_)."""
    if backend == "torchvision":
        require_torch()
    for name in ("qwen2_5_vl", "qwen3_vl"):
        layout = Layout.preset(name, min_pixels=1, backend=backend)
        if mean_std is not None:
            layout = layout.replace(image_mean=mean_std[0], image_std=mean_std[1])
        k = layout.knobs
        p = k["patch_size"]
        v = np.arange(224 * 224, dtype=np.int64).reshape(224, 224)
        img = np.stack([v % 256, (v * 7 + 3) % 256, 255 - v % 256], axis=-1).astype(np.uint8)
        out = layout.pixel_values(img)
        _, gh, gw = out.grid_thw[0]
        if backend == "torchvision":
            import torch
            import torchvision.transforms.v2.functional as tvF

            m = torch.tensor(k["image_mean"]) * (1.0 / k["rescale_factor"])
            s = torch.tensor(k["image_std"]) * (1.0 / k["rescale_factor"])
            chw = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32)
            want = tvF.normalize(chw, m.tolist(), s.tolist()).numpy()
        else:
            x = (img.astype(np.float64) * (1 / 255)).astype(np.float32)
            mean, std = np.array(k["image_mean"], np.float32), np.array(k["image_std"], np.float32)
            want = ((x - mean) / std).transpose(2, 0, 1)
        frames = unpatchify(out.pixel_values, gh, gw, p)
        assert np.array_equal(bits(frames[0]), bits(want)) and np.array_equal(bits(frames[1]), bits(want))


def test_bad_inputs_raise_typed_errors() -> None:
    layout = Layout.preset("qwen2_5_vl")
    for bad in (
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((2, 2, 2, 3), np.uint8),
        b"",
        b"not an image at all",
        12345,
    ):
        with pytest.raises(ImageDecodeError):
            layout.pixel_values(bad)  # type: ignore[arg-type]
    with pytest.raises(ImageDecodeError):
        layout.pixel_values([])
    with pytest.raises(LayoutError):
        layout.pixel_values(np.zeros((1, 300, 3), np.uint8))  # ratio 300
    with pytest.raises(ValueError, match="dtype"):
        layout.pixel_values(np.zeros((8, 8, 3), np.uint8), dtype="float16")
    with pytest.raises(ValueError, match="threads"):
        layout.pixel_values(np.zeros((8, 8, 3), np.uint8), threads=0)
    jpeg = encode(make_image("RGB", 64, 64, "noise", 1), "JPEG")
    with pytest.raises(ImageDecodeError):
        layout.pixel_values(jpeg[: len(jpeg) // 2])  # truncated
    with pytest.raises(ImageDecodeError, match="format"):
        layout.pixel_values(encode(make_image("RGB", 8, 8), "PPM"))  # outside the allow-list


def png_header(width: int, height: int, crc_ok: bool = True) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) if crc_ok else 0
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", crc)
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )


@pytest.mark.parametrize("crc_ok", [True, False])
def test_decompression_bomb_is_refused_before_decoding(crc_ok: bool) -> None:
    from rawmm import LimitExceededError

    with pytest.raises(LimitExceededError):
        Layout.preset("qwen3_vl").pixel_values(png_header(200_000, 200_000, crc_ok))


def test_non_contiguous_and_readonly_arrays() -> None:
    layout = Layout.preset("qwen3_vl")
    base = make_image("RGB", 200, 150, "noise", 1)
    arr = np.asarray(base)
    want = layout.pixel_values(arr.copy()).pixel_values
    strided = np.asarray(make_image("RGB", 400, 150, "noise", 1))[:, ::2]
    assert not strided.flags.c_contiguous
    assert layout.pixel_values(strided).pixel_values.shape[1] == want.shape[1]
    ro = arr.copy()
    ro.flags.writeable = False
    assert np.array_equal(layout.pixel_values(ro).pixel_values, want)


def test_zero_copy_boundary() -> None:
    """Contiguous uint8 input is borrowed as is; the output owns the Rust buffer."""
    from rawmm.pixels import _array_input

    arr = np.zeros((64, 64, 3), np.uint8)
    assert _array_input(arr) is arr
    out = Layout.preset("qwen3_vl").pixel_values(arr).pixel_values
    assert out.flags.c_contiguous and not out.flags.owndata
    owner = out.base
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert type(owner).__name__ == "PySliceContainer"


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_image_multi_block_pillow_falls_back(backend: str) -> None:
    """Pillow stores very large images in several blocks (no Arrow export): still exact."""
    layout = Layout.preset("qwen3_vl", backend=backend)
    im = make_image("RGB", 2900, 2100, "gradient", 3)  # 24 MB of RGBX, above one 16 MB block
    ref = qwen_reference(layout)(images=[im], return_tensors="np")
    assert_same(ref, layout.pixel_values(im))


def test_grid_tokens_match_layout() -> None:
    for name in QWEN_PRESETS:
        layout = Layout.preset(name)
        out = layout.pixel_values(np.zeros((50, 90, 3), np.uint8))
        im = layout.image(90, 50)
        assert tuple(out.grid_thw[0]) == im.grid_thw and out.num_tokens == [im.num_tokens]
        assert out.pixel_values.shape == (math.prod(im.grid_thw), 3 * 2 * layout.knobs["patch_size"] ** 2)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(
    w=st.integers(1, 600),
    h=st.integers(1, 600),
    patch=st.integers(7, 28),
    merge=st.integers(1, 3),
    temporal=st.integers(1, 3),
    lo=st.integers(1, 150_000),
    span=st.integers(0, 400_000),
    mean=st.lists(st.floats(-1, 2, allow_nan=False), min_size=3, max_size=3),
    std=st.lists(st.floats(0.01, 3), min_size=3, max_size=3),
    mode=modes,
    seed=seeds,
)
def test_random_configs_bit_identical(
    backend: str,
    w: int,
    h: int,
    patch: int,
    merge: int,
    temporal: int,
    lo: int,
    span: int,
    mean: list[float],
    std: list[float],
    mode: str,
    seed: int,
) -> None:
    """Any Qwen geometry and normalisation the processors accept, against the reference."""
    if not fits(w, h):
        return
    layout = Layout.preset(
        "qwen2_5_vl",
        backend=backend,
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=temporal,
        min_pixels=lo,
        max_pixels=lo + span,
        image_mean=mean,
        image_std=std,
    )
    im = make_image(mode, w, h, "noise", seed)
    assert_same(qwen_reference(layout)(images=[im], return_tensors="np"), layout.pixel_values(im))
