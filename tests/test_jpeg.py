"""The Rust JPEG path (libjpeg-turbo through `_core.decode_jpeg` and `jpeg_pixel_values`, used
by `pixels.decode_array`, `stream_pixel_values` and `materialize`) against Pillow 13: the same
pixels on a corpus of every sampling, coding and colour-space case libjpeg writes, and on
files hypothesis builds with Pillow; where it declines (CMYK, damaged data, any libjpeg
warning), Pillow decodes or raises, and rawmm raises the typed error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st
from PIL import Image

from images import pillow_reference
from rawmm import Layout, LayoutError, RawmmError, _core, pixels
from test_png import STREAM_LAYOUTS

CORPUS = sorted((Path(__file__).parent / "corpus" / "jpeg").glob("*.jpg"))
# Files the Rust path leaves to Pillow: CMYK (Pillow's own conversion), and damaged files
# whose decode ends in a libjpeg warning or error; the flipped byte and the junk after EOI
# decode without a warning, in libjpeg and in Pillow alike.
DECLINED = {"cmyk.jpg"} | {p.name for p in CORPUS if p.name.startswith("damaged-")} - {
    "damaged-flipped-byte.jpg",
    "damaged-trailing-junk.jpg",
}
# The PNG stream's layouts: downscales, Pillow 13's vertical-first order, Kimi's padding.
LAYOUTS = STREAM_LAYOUTS


def pillow_or_error(data: bytes, exif: bool = True) -> np.ndarray | None:
    try:
        return pillow_reference(data, exif=exif, composite=True)
    except Exception:
        return None


def check(data: bytes, *, exif: bool = True, rust: bool | None = None) -> None:
    """rawmm's decode equals Pillow's, or both refuse (rawmm with a typed error); `rust`: whether
    the Rust decoder must take (True) or leave (False) the file."""
    want = pillow_or_error(data, exif)
    got = pixels.rust_decode(data, exif=exif, composite=True) if want is not None else None
    if rust is not None and want is not None:
        assert (got is not None) == rust, "the Rust decoder took or left the wrong file"
    if want is None:
        with pytest.raises(RawmmError):
            pixels.decode_array(data, exif=exif, composite=True)
        return
    if got is not None:
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    arr = pixels.decode_array(data, exif=exif, composite=True)
    if isinstance(arr, np.ndarray):  # else a view of Pillow's own image
        assert np.array_equal(arr, want)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_matches_pillow(path: Path) -> None:
    data = path.read_bytes()
    for exif in (True, False):
        check(data, exif=exif, rust=path.name not in DECLINED)


@pytest.mark.parametrize(
    "path",
    [p for p in CORPUS if p.name not in DECLINED and pillow_or_error(p.read_bytes()) is not None],
    ids=lambda p: p.name,
)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_corpus_streams_the_decoded_pixels(path: Path, name: str) -> None:
    """Rows streamed into the resize (one band at a time on one thread, every row first on
    several) give `pixel_values` of Pillow's image, wherever the stream applies."""
    data, layout = path.read_bytes(), LAYOUTS[name]
    want = layout.pixel_values(pillow_reference(data, exif=True, composite=True)).pixel_values
    for threads in (1, None):
        got = pixels.stream_pixel_values(layout, data, threads=threads)
        if pixels.probe(data).transpose is None and not vertical_first(layout, data):
            assert got is not None, "the streaming path declined"
        if got is not None:
            assert np.array_equal(got.pixel_values.view(np.uint32), want.view(np.uint32))


def vertical_first(layout: Layout, data: bytes) -> bool:
    """Pillow 13's pass order for tall downscales, which a row stream cannot feed."""
    w, h = Image.open(io.BytesIO(data)).size
    lay = layout.image(w, h)
    tall = lay.resized_height < h and h - lay.resized_height > 2 * (w - lay.resized_width)
    return tall and layout.knobs.get("backend", "pil") == "pil"


@st.composite
def jpegs(draw: st.DrawFn) -> bytes:
    """Pillow-written JPEGs: every size from one pixel, L and RGB, every quality, subsampling,
    progressive and optimised tables, restart markers, any EXIF orientation."""
    w, h = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    mode = draw(st.sampled_from(["RGB", "L"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    smooth = draw(st.booleans())
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if smooth:  # gradients, as in photos, rather than noise
        arr = np.cumsum(rng.integers(-3, 4, (h, w, 3)), axis=1).astype(np.uint8) + arr // 16
    im = Image.fromarray(arr).convert(mode)
    kw: dict[str, object] = {
        "quality": draw(st.integers(1, 100)),
        "progressive": draw(st.booleans()),
        "optimize": draw(st.booleans()),
    }
    if mode == "RGB":
        kw["subsampling"] = draw(st.sampled_from([0, 1, 2]))
    if draw(st.booleans()):
        kw["restart_marker_blocks"] = draw(st.integers(1, 8))
    orientation = draw(st.integers(1, 8))
    if orientation > 1:
        exif = Image.Exif()
        exif[274] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    try:
        im.save(buf, "JPEG", **kw)
    except OSError:  # Pillow's encoder fails some option sets ("Suspension not allowed here")
        reject()
    return buf.getvalue()


def _jpeg(w: int, h: int, mode: str = "RGB", **kw: object) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(w * 7919 + h)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(buf, "JPEG", **kw)
    return buf.getvalue()


@given(jpegs())
@example(_jpeg(1, 1))
@example(_jpeg(1, 1, "L"))
@example(_jpeg(1, 157, subsampling=2))
@example(_jpeg(157, 1, subsampling=1, progressive=True))
def test_decode_matches_pillow(data: bytes) -> None:
    for exif in (True, False):
        check(data, exif=exif, rust=True)


@given(jpegs(), st.sampled_from(sorted(LAYOUTS)), st.integers(1, 8), st.sampled_from([1, None]))
@example(_jpeg(1, 1), "qwen2_5_vl torchvision", 1, 1)
@example(_jpeg(4, 700), "qwen3_vl pil, small", 1, 1)
@example(_jpeg(700, 4), "qwen2_vl tv, small", 1, None)
def test_streamed_pixel_values_equal_the_decoded_image(
    data: bytes, name: str, scale: int, threads: int | None
) -> None:
    layout = LAYOUTS[name]
    if scale > 1:  # larger images too, re-encoded from the decoded one
        im = Image.open(io.BytesIO(data))
        buf = io.BytesIO()
        im.resize((im.width * scale, im.height * scale + 1)).save(buf, "JPEG", quality=95)
        data = buf.getvalue()
    want = layout.pixel_values(pillow_reference(data, exif=True, composite=True))
    got = pixels.stream_pixel_values(layout, data, threads=threads)
    if pixels.probe(data).transpose is None and not vertical_first(layout, data):
        assert got is not None, "the streaming path declined"
    if got is not None:
        assert np.array_equal(got.grid_thw, want.grid_thw)
        assert np.array_equal(got.pixel_values.view(np.uint32), want.pixel_values.view(np.uint32))


@given(jpegs(), st.data())
def test_damaged_files_decode_as_pillow_or_raise_typed(data: bytes, draw: st.DataObject) -> None:
    """Cut anywhere, or with bytes overwritten: rawmm's pixels are Pillow's, or both refuse."""
    cut = draw.draw(st.integers(2, len(data)))
    damaged = bytearray(data[:cut])
    for _ in range(draw.draw(st.integers(0, 3))):
        damaged[draw.draw(st.integers(0, len(damaged) - 1))] = draw.draw(st.integers(0, 255))
    check(bytes(damaged))


def test_bad_arguments_and_mismatched_headers() -> None:
    """A file whose header is not the size and mode the caller read (its caps were checked on
    that) is declined before decoding; arguments no caller may pass are typed errors."""
    data = _jpeg(40, 30)
    assert _core.decode_jpeg(data, (40, 30), "RGB") is not None
    for size, mode in (((41, 30), "RGB"), ((40, 29), "RGB"), ((40, 30), "L"), ((40, 30), "CMYK")):
        assert _core.decode_jpeg(data, size, mode) is None
    assert _core.decode_jpeg(b"", (40, 30), "RGB") is None
    assert _core.decode_jpeg(data[:-50], (40, 30), "RGB") is None  # a fake EOI is a warning
    with pytest.raises(ValueError, match="transpose"):
        _core.decode_jpeg(data, (40, 30), "RGB", transpose=7)
    with pytest.raises(ValueError, match="threads"):
        _core.decode_jpeg(data, (40, 30), "RGB", threads=0)
    layout = Layout.preset("qwen2_5_vl")
    assert layout._core.jpeg_pixel_values(data, (40, 31), "RGB") is None
    with pytest.raises(ValueError, match="dtype"):
        layout._core.jpeg_pixel_values(data, (40, 30), "RGB", dtype="float16")
    with pytest.raises(LayoutError, match="shape"):
        pixels.stream_pixel_values(layout, data, out=np.empty((3, 1176), np.float32))


def test_encoded_pixel_values_decode_jpeg_in_rust(monkeypatch: pytest.MonkeyPatch) -> None:
    """`encoded_pixel_values` (what `materialize` runs) of a JPEG goes through libjpeg-turbo,
    not Pillow's decoder: with Pillow's JPEG decoder gone, the pixels are still Pillow's."""
    data = _jpeg(300, 200, quality=90)
    layout = Layout.preset("qwen2_5_vl")
    want = layout.pixel_values(pillow_reference(data, exif=True, composite=True)).pixel_values
    monkeypatch.delattr(Image.core, "jpeg_decoder")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()
    for threads in (1, None):
        assert np.array_equal(pixels.encoded_pixel_values(layout, data, threads=threads).pixel_values, want)


@given(jpegs(), st.booleans())
@example(_jpeg(1, 1, "L"), True)
def test_decode_rgb_is_pillows_rgb(data: bytes, exif: bool) -> None:
    """`decode_rgb` (what the vLLM connector hands vLLM's processor) of a JPEG, decoded in
    Rust: exactly Pillow's decode, EXIF transpose and RGB conversion."""
    from PIL import ImageOps

    im = Image.open(io.BytesIO(data))
    want = np.asarray((ImageOps.exif_transpose(im) if exif else im).convert("RGB"))
    got = pixels.decode_rgb(data, exif=exif, composite=True)
    assert got.dtype == np.uint8 and got.flags.c_contiguous and np.array_equal(got, want)


def _shared(data: bytes, cut: int) -> np.ndarray | None:
    """`decode_jpeg` with a second decompressor taking over at row `cut` (0: one decoder)."""
    im = Image.open(io.BytesIO(data))
    return _core.decode_jpeg(data, im.size, im.mode, split=cut)


@given(jpegs(), st.integers(0, 2**16), st.integers(0, 2**20), st.binary(max_size=4))
@example(_jpeg(1, 1), 0, 0, b"")
@example(_jpeg(3, 300, subsampling=2, restart_marker_blocks=1), 151, 0, b"")
@example(_jpeg(300, 33, subsampling=1), 17, 900, b"\xff")
def test_two_decompressors_decode_what_one_does(data: bytes, row: int, cut: int, junk: bytes) -> None:
    """Large images are decoded by two decompressors at once, the second skipping to a row
    (`jpeg_skip_scanlines`: entropy-decoded, no pixels). Wherever it takes over, even inside
    an MCU row, and on files cut short (`cut`, then `junk`), the result is one decompressor's:
    the same pixels, or a refusal (then Pillow decides)."""
    if cut:
        data = data[: 2 + cut % len(data)] + junk
    try:
        im = Image.open(io.BytesIO(data))
    except OSError:
        return
    if im.mode not in ("L", "RGB"):
        return
    one = _shared(data, 0)
    for k in {1, im.height // 2, im.height - 1, row % (im.height + 2)}:
        got = _shared(data, k)
        assert (got is None) == (one is None), f"cut at {k}"
        if one is not None:
            assert np.array_equal(got, one), f"cut at {k}"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_two_decompressors(path: Path) -> None:
    """Every sampling, coding, restart interval and damage of the corpus, cut at every row."""
    data = path.read_bytes()
    try:
        im = Image.open(io.BytesIO(data))
    except OSError:  # 12-bit: Pillow cannot open it, nor does rawmm decode it
        return
    if im.mode not in ("L", "RGB"):
        return
    one = _shared(data, 0)
    for cut in range(im.height + 1):
        got = _shared(data, cut)
        assert (got is None) == (one is None) and (one is None or np.array_equal(got, one)), cut


@pytest.mark.parametrize(
    "kw",
    [
        {"subsampling": 0},
        {"subsampling": 1, "restart_marker_blocks": 5},
        {"subsampling": 2, "quality": 97},
        {"subsampling": 2, "progressive": True},
        {"mode": "L"},
    ],
    ids=str,
)
def test_large_images_are_shared_and_stay_pillows(kw: dict[str, object]) -> None:
    """Above the size where two decompressors share an image (64 Ki pixels, on a pool of two
    threads or more), the decode, `decode_rgb` and the multi-threaded stream are still
    Pillow's pixels, for an odd size whose cut falls inside an MCU row."""
    mode = str(kw.pop("mode", "RGB"))
    rng = np.random.default_rng(3)
    arr = np.cumsum(rng.integers(-4, 5, (411, 389, 3)), axis=0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "JPEG", **kw)
    data = buf.getvalue()
    want = pillow_reference(data, exif=True, composite=True)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(pixels.decode_rgb(data, exif=True, composite=True), rgb)
    assert np.array_equal(pixels.decode_array(data, exif=True, composite=True), want)
    layout = Layout.preset("qwen2_5_vl", backend="torchvision")
    ref = layout.pixel_values(want).pixel_values
    for threads in (None, 2, 1):
        got = pixels.stream_pixel_values(layout, data, threads=threads)
        assert got is not None and np.array_equal(got.pixel_values.view(np.uint32), ref.view(np.uint32))
