"""The fuzz harness (tests/fuzz) in the suite: every committed corpus input replays, then a
bounded mutation run per target drawn by hypothesis. `python -m tests.fuzz --minutes N` is the
long run; RAWMM_FUZZ_EXAMPLES sets this one's size."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import struct
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fuzz.targets import CORPUS, RUN, TARGETS, Context, images, mutate, seeds

EXAMPLES = int(os.environ.get("RAWMM_FUZZ_EXAMPLES", "400"))


_CTX = Context.create()
atexit.register(shutil.rmtree, _CTX.root, ignore_errors=True)


@pytest.fixture
def ctx() -> Iterator[Context]:
    yield _CTX


CASES = [(t, p.name) for t in TARGETS for p in sorted((CORPUS / t).iterdir())]


def test_corpus_is_committed() -> None:
    assert all(len(seeds(t)) >= 3 for t in TARGETS)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("target", "name"), CASES, ids=[f"{t}-{n}" for t, n in CASES])
def test_corpus_replays(ctx: Context, target: str, name: str) -> None:
    RUN[target]((CORPUS / target / name).read_bytes(), ctx)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("target", TARGETS)
def test_mutations(ctx: Context, target: str) -> None:
    pool = seeds(target)

    # A materializer schedule runs threads for a fraction of a second: fewer of them.
    @settings(max_examples=EXAMPLES // 20 if target == "materializer" else EXAMPLES, database=None)
    @given(rng=st.randoms(use_true_random=False), index=st.integers(0, len(pool) - 1))
    def run(rng, index) -> None:  # type: ignore[no-untyped-def]
        RUN[target](mutate(rng, pool[index], pool), ctx)

    run()


# Structured generation: every place Pillow finds an orientation, in random combinations.
_ORIENT = st.integers(0, 9)


@st.composite
def _png_metadata(draw: st.DrawFn) -> bytes:
    from fuzz.make_corpus import _chunk, _exif, _exif_be, _png_parts, _xmp

    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    head, body, end = _png_parts(Image.new("RGB", size, (9, 99, 199)))
    before: list[bytes] = []
    after: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        o = draw(_ORIENT)
        kind = draw(st.sampled_from(["exif", "exif_prefixed", "exif_be", "raw_text", "raw_ztxt", "xmp"]))
        ex = _exif_be(o) if kind == "exif_be" else _exif(o)
        raw = f"\nexif\n{len(ex):8}\n{ex.hex()}\n".encode()
        chunk = {
            "exif": _chunk(b"eXIf", ex),
            "exif_prefixed": _chunk(b"eXIf", b"Exif\0\0" + ex),
            "exif_be": _chunk(b"eXIf", ex),
            "raw_text": _chunk(b"tEXt", b"Raw profile type exif\0" + raw),
            "raw_ztxt": _chunk(b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(raw)),
            "xmp": _chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + _xmp(o, attr=draw(st.booleans()))),
        }[kind]
        (after if draw(st.booleans()) else before).append(chunk)
    return head + b"".join(before) + b"".join(body) + b"".join(after) + end


@st.composite
def _jpeg_metadata(draw: st.DrawFn) -> bytes:
    from fuzz.make_corpus import _exif, _exif_be, _xmp

    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, "JPEG")
    jpg = buf.getvalue()
    sof, sos = jpg.index(b"\xff\xc0"), jpg.index(b"\xff\xda")
    pre: list[bytes] = []
    post: list[bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        o = draw(_ORIENT)
        if draw(st.booleans()):
            ex = _exif_be(o) if draw(st.booleans()) else _exif(o)
            body = b"Exif\0\0" + ex
        else:
            body = b"http://ns.adobe.com/xap/1.0/\0" + _xmp(o, attr=draw(st.booleans()))
        seg = b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body
        if draw(st.booleans()):
            seg = draw(st.binary(max_size=3).filter(lambda b: b"\xff" not in b)) + seg
        (post if draw(st.booleans()) else pre).append(seg)
    return jpg[:sof] + b"".join(pre) + jpg[sof:sos] + b"".join(post) + jpg[sos:]


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=EXAMPLES // 2, database=None)
@given(data=st.one_of(_png_metadata(), _jpeg_metadata()))
def test_orientation_sources_agree(data: bytes) -> None:
    images(data, _CTX)
