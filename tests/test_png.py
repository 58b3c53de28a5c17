"""The Rust PNG decoder (`_core.decode_png`, used by `pixels.decode_array`) against Pillow 13:
the same pixels after rawmm's decode rules for every colour type, bit depth, filter, interlace,
palette and transparency case, on PngSuite and on files built here chunk by chunk; and where
it declines, Pillow decodes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from images import pillow_reference
from rawmm import Layout, pixels
from rawmm.errors import ImageDecodeError, RawmmError

CORPUS = sorted((Path(__file__).parent / "corpus" / "png").glob("*.png"))
# Files Pillow decodes but the Rust decoder leaves to it: an APNG, and two with a bad CRC
# that Pillow does not check (the Rust decoder is strict, so such files always go to Pillow).
DECLINED = {"bugfixes-issue_202.png", "bugfixes-x_interlaced_chck.png", "pngsuite-xcsn0g01.png"}


def rust(data: bytes, *, exif: bool, composite: bool) -> np.ndarray | None:
    return pixels.rust_decode(data, exif=exif, composite=composite)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_matches_pillow(path: Path) -> None:
    data = path.read_bytes()
    for composite in (True, False):
        try:
            want = pillow_reference(data, exif=True, composite=composite)
        except Exception:
            with pytest.raises(RawmmError):  # Pillow refuses it: rawmm too, typed
                pixels.decode_array(data, exif=True, composite=composite)
            continue
        got = rust(data, exif=True, composite=composite)
        if path.name in DECLINED:
            assert got is None
            continue
        assert got is not None, "the Rust decoder declined a file Pillow decodes"
        assert got.dtype == np.uint8
        assert np.array_equal(got, want)


# -- PNGs built chunk by chunk ---------------------------------------------------------------

# (colour type, bit depths): every combination PNG allows.
COLOURS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pack_rows(samples: np.ndarray, depth: int) -> list[bytes]:
    """Rows of samples (H, W*C) as PNG bytes: big-endian 16-bit or MSB-first packed bits."""
    if depth == 16:
        return [row.astype(">u2").tobytes() for row in samples]
    if depth == 8:
        return [row.astype(np.uint8).tobytes() for row in samples]
    bits = [np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - depth :] for row in samples]
    return [np.packbits(b).tobytes() for b in bits]


def filtered(rows: list[bytes], bpp: int, kinds: list[int]) -> bytes:
    """Each row with its filter type byte, filtered as the PNG spec defines (the decoder must
    undo all five filters)."""
    out, prev = bytearray(), bytes(len(rows[0]) if rows else 0)
    for row, kind in zip(rows, kinds, strict=True):
        f = bytearray(len(row))
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            f[i] = (x - pred) & 0xFF
        out += bytes([kind]) + f
        prev = row
    return bytes(out)


def build_png(
    samples: np.ndarray,
    colour: int,
    depth: int,
    *,
    interlace: bool,
    filters: list[int],
    plte: bytes | None = None,
    trns: bytes | None = None,
    exif_orientation: int | None = None,
    trns_after_idat: bool = False,
) -> bytes:
    """A PNG from samples (H, W, C) written chunk by chunk."""
    h, w, c = samples.shape
    bpp = max(1, c * depth // 8)
    if interlace:
        body = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                rows = pack_rows(sub.reshape(sub.shape[0], -1), depth)
                body += filtered(rows, bpp, [filters[i % len(filters)] for i in range(len(rows))])
    else:
        rows = pack_rows(samples.reshape(h, -1), depth)
        body = filtered(rows, bpp, [filters[i % len(filters)] for i in range(h)])
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, int(interlace))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None and not trns_after_idat:
        out += chunk(b"tRNS", trns)
    z = zlib.compress(body)
    out += chunk(b"IDAT", z[: len(z) // 2]) + chunk(b"IDAT", z[len(z) // 2 :])  # split across chunks
    if trns is not None and trns_after_idat:
        out += chunk(b"tRNS", trns)
    if exif_orientation is not None:  # after the image data, where Pillow reads it in load_end
        entry = struct.pack(">HHIHH", 0x0112, 3, 1, exif_orientation, 0)
        tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01" + entry
        out += chunk(b"eXIf", tiff + b"\x00\x00\x00\x00")
    return out + chunk(b"IEND", b"")


@st.composite
def pngs(draw: st.DrawFn) -> tuple[bytes, str]:
    colour = draw(st.sampled_from(sorted(COLOURS)))
    depth = draw(st.sampled_from(COLOURS[colour]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    top = (1 << depth) - 1
    # Few distinct values, so colour keys and palette indices actually occur.
    values = draw(st.lists(st.integers(0, top), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    samples = rng.choice(np.array(values), size=(h, w, CHANNELS[colour]))
    if draw(st.booleans()):
        samples = rng.integers(0, top + 1, size=(h, w, CHANNELS[colour]))
    plte = trns = None
    if colour == 3:
        entries = draw(st.integers(1, 256))  # indices past the palette are Pillow's black
        plte = rng.integers(0, 256, 3 * entries, dtype=np.uint8).tobytes()
        if draw(st.booleans()):
            n = draw(st.integers(0, entries))
            simple = draw(st.booleans()) and n > 0  # Pillow's int form: one 0 among 0xff
            alphas = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            trns = (b"\xff" * (n - 1) + b"\x00") if simple else alphas
    elif colour in (0, 2) and draw(st.booleans()):
        # A key equal to a present sample (or not), with junk in the high byte at times.
        key = [int(v) for v in (values * 3)[: CHANNELS[colour]]]
        high = draw(st.sampled_from([0, 0, 1, 0xAB])) if depth < 16 else 0
        trns = b"".join(struct.pack(">H", (high << 8) | k if depth < 16 else k) for k in key)
    data = build_png(
        samples,
        colour,
        depth,
        interlace=draw(st.booleans()),
        filters=draw(st.lists(st.integers(0, 4), min_size=1, max_size=5)),
        plte=plte,
        trns=trns,
        exif_orientation=draw(st.none() | st.integers(1, 8)),
        trns_after_idat=trns is not None and colour != 3 and draw(st.booleans()),
    )
    return data, f"colour {colour} depth {depth} {w}x{h}"


@given(pngs(), st.booleans(), st.booleans())
@example((build_png(np.zeros((1, 1, 1), np.uint8), 0, 1, interlace=False, filters=[0]), "1px"), True, True)
@example(
    (build_png(np.full((1, 9, 3), 65535), 2, 16, interlace=True, filters=[4], trns=b"\xff" * 6), "key"),
    True,
    True,
)
def test_built_pngs_match_pillow(case: tuple[bytes, str], composite: bool, exif: bool) -> None:
    data, label = case
    want = pillow_reference(data, exif=exif, composite=composite)
    got = rust(data, exif=exif, composite=composite)
    assert got is not None, label
    assert got.shape == want.shape, label
    assert np.array_equal(got, want), label
    assert np.array_equal(pixels.decode_array(data, exif=exif, composite=composite), want)


def test_pixel_values_from_png_bytes_equal_the_decoded_image() -> None:
    """End to end: the layout's pixel_values of PNG bytes (Rust decode) equal those of the image
    Pillow decoded (the path every other reference test covers)."""
    from rawmm import Layout

    rng = np.random.default_rng(1)
    layout = Layout.preset("qwen2_5_vl")
    for mode in ("RGB", "RGBA", "L", "P"):
        im = Image.fromarray(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)).convert(mode)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        a = layout.pixel_values(buf.getvalue()).pixel_values
        b = layout.pixel_values(Image.open(io.BytesIO(buf.getvalue()))).pixel_values
        assert np.array_equal(a, b)


def test_declined_files_decode_with_pillow() -> None:
    from rawmm import Layout

    layout = Layout.preset("qwen2_5_vl")
    for name in sorted(DECLINED):
        data = (CORPUS[0].parent / name).read_bytes()
        want = layout.pixel_values(pillow_reference(data, exif=True, composite=True)).pixel_values
        assert np.array_equal(layout.pixel_values(data).pixel_values, want)


# -- rows streamed into the resize ---------------------------------------------------------------

STREAM_LAYOUTS = {
    "qwen2_5_vl torchvision": Layout.preset("qwen2_5_vl"),
    "qwen2_5_vl pil": Layout.preset("qwen2_5_vl", backend="pil"),
    # Small pixel budgets force downscales, tall ones Pillow 13's vertical-first order.
    "qwen3_vl pil, small": Layout.preset("qwen3_vl", backend="pil").replace(
        min_pixels=1024, max_pixels=16384
    ),
    "qwen2_vl tv, small": Layout.preset("qwen2_vl").replace(min_pixels=784, max_pixels=12544),
    "kimi_k25": Layout.preset("kimi_k25"),
    "qwen2_5_vl, alpha dropped": Layout.preset("qwen2_5_vl").replace(alpha_policy="drop"),
}


@given(pngs(), st.sampled_from(sorted(STREAM_LAYOUTS)), st.integers(1, 12), st.sampled_from([1, None]))
def test_streamed_png_pixel_values_equal_the_decoded_image(
    case: tuple[bytes, str], name: str, scale: int, threads: int | None
) -> None:
    """`stream_pixel_values` (rows decoded block by block into the resize, no decoded image
    held; one band at a time on one thread, every row first on several) equals `pixel_values`
    of the image Pillow decodes, wherever it applies; it applies to every non-interlaced,
    unrotated PNG whose resize starts with the horizontal pass."""
    data, label = case
    layout = STREAM_LAYOUTS[name]
    im = Image.open(io.BytesIO(data))
    if scale > 1:  # larger images too, rebuilt from the decoded one in its own mode
        im = im.resize((im.width * scale, im.height * scale + 1))
        buf = io.BytesIO()
        keep = {"transparency": im.info["transparency"]} if "transparency" in im.info else {}
        im.save(buf, "PNG", **keep)
        data = buf.getvalue()
    exif = layout.knobs["exif_policy"] == "apply"
    composite = layout.knobs["alpha_policy"] == "composite_white"
    want = layout.pixel_values(pillow_reference(data, exif=exif, composite=composite))
    got = pixels.stream_pixel_values(layout, data, threads=threads)
    with Image.open(io.BytesIO(data)) as opened:
        w, h = opened.size
        interlaced = bool(opened.info.get("interlace"))
    lay = layout.image(w, h)
    tall = lay.resized_height < h and h - lay.resized_height > 2 * (w - lay.resized_width)
    transposed = pixels.probe(data).transpose is not None
    vertical_first = tall and layout.knobs.get("backend", "pil") == "pil"  # Pillow 13's pass order
    if not (interlaced or transposed or vertical_first):
        assert got is not None, f"{label}: the streaming path declined"
    if got is not None:
        assert np.array_equal(got.grid_thw, want.grid_thw)
        assert np.array_equal(got.pixel_values.view(np.uint32), want.pixel_values.view(np.uint32)), label


def test_bad_arguments_and_bad_bytes() -> None:
    """The Rust entry points: a typed error for arguments no caller may pass; for bytes the Rust
    decoder will not take (truncated, another format, a mode Pillow would not give), None, so the
    caller decodes with Pillow, which then raises the typed error."""
    from rawmm import LayoutError, _core

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(buf, "PNG")
    data = buf.getvalue()
    with pytest.raises(ValueError, match="key or alphas"):
        _core.decode_png(data, "RGB", key=(1, 2, 3), alphas=b"\x00")
    with pytest.raises(ValueError, match="transpose"):
        _core.decode_png(data, "RGB", transpose=7)
    for junk in (data[:-20], b"GIF89a" + data, data.replace(b"IDAT", b"IDAx")):
        assert _core.decode_png(junk, "RGB") is None
    assert _core.decode_png(data, "L") is None and _core.decode_png(data, "CMYK") is None
    layout = Layout.preset("qwen2_5_vl")
    assert layout._core.png_pixel_values(data[:-20], "RGB") is None
    with pytest.raises(ValueError, match="dtype"):
        layout._core.png_pixel_values(data, "RGB", dtype="float16")
    with pytest.raises(LayoutError, match="shape"):
        pixels.stream_pixel_values(layout, data, out=np.empty((3, 1176), np.float32))
    with pytest.raises(LayoutError):
        pixels.stream_pixel_values(layout, data, out=np.empty((4, 1176), np.float64))
    # Only the zlib checksum cut off: Pillow has every row and decodes it, so rawmm does too.
    assert np.array_equal(
        layout.pixel_values(data[:-20]).pixel_values, layout.pixel_values(data).pixel_values
    )
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(noise, "PNG")
    half = noise.getvalue()[: len(noise.getvalue()) // 2]
    assert _core.decode_png(half, "RGB") is None
    with pytest.raises(ImageDecodeError):  # rows missing: Pillow's verdict, typed
        layout.pixel_values(half)
