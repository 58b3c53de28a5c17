"""Fuzz targets: each takes bytes and raises AssertionError when an invariant of issue 9 breaks.

- `images`: for every input Pillow decodes (open, load, `exif_transpose`), `describe` gives its
  oriented size, `materialize` of the ref decodes exactly that grid and `Adapter.image` (what
  the vLLM connector hands vLLM) the raster `materialize` resizes; for every input it does not,
  `materialize` raises a typed error. Only `RawmmError`s escape anywhere.
- `refs` / `envelopes`: parsing and materializing hostile refs and envelopes raises only
  `RawmmError`s and never returns bytes from outside the store (a valid image placed next to
  the store, its real hash known, is the bait).

Seeds may hold @STORE@ (the store's images directory), @OUTSIDE@ (a directory next to it),
@SIBLING@ (a file beside it named `<images dir> (deleted)`, the bait inside; `decoy.png` in the
store links to it),
@HASH@ / @OUT_HASH@ (the hashes of the stored asset and of the bait): the context fills them in.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import sys
import tempfile
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

import rawmm
from rawmm import AssetStore, Layout, RawmmError, RawMMRef, _core, adapter_for, pixels
from rawmm.pixels import DECODE_FORMATS, decode_array, stream_pixel_values
from rawmm.refs import parse_raw_mm_item

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, also under `python -m tests.fuzz`
from images import pillow_reference

CORPUS = Path(__file__).parent / "corpus"
TARGETS = ("images", "refs", "envelopes", "materializer")


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 20), color).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Context:
    """A store with one asset, a bait image outside it, and adapters of both families."""

    root: Path
    store: AssetStore
    asset_hash: str
    bait: bytes
    bait_hash: str

    @classmethod
    def create(cls) -> Context:
        root = Path(tempfile.mkdtemp(prefix="rawmm-fuzz-"))
        store = AssetStore(root / "store", max_bytes=1 << 20, max_pixels=1 << 22)
        asset = store.put(_png((1, 2, 3)))
        outside = root / "outside"
        outside.mkdir()
        bait = _png((200, 100, 50))
        bait_hash = rawmm.fingerprint_bytes(bait)
        for name in (f"{bait_hash}.png", "secret.png"):
            (outside / name).write_bytes(bait)
        # A symlink inside the store named for the bait, pointing out of it.
        (store.images_dir / f"{bait_hash}.png").symlink_to(outside / f"{bait_hash}.png")
        # A sibling named as the kernel decorates a removed directory's /proc link (issue 17),
        # and an in-store symlink to it.
        sibling = Path(f"{store.images_dir} (deleted)")
        sibling.write_bytes(bait)
        (store.images_dir / "decoy.png").symlink_to(sibling)
        return cls(root, store, asset.mm_hash, bait, bait_hash)

    def fill(self, data: bytes) -> bytes:
        return (
            data.replace(b"@STORE@", str(self.store.images_dir).encode())
            .replace(b"@SIBLING@", f"{self.store.images_dir} (deleted)".encode())
            .replace(b"@OUTSIDE@", str(self.root / "outside").encode())
            .replace(b"@OUT_HASH@", self.bait_hash.encode())
            .replace(b"@HASH@", self.asset_hash.encode())
        )


_LAYOUTS = {
    name: Layout.preset(name)
    for name in ("qwen2_5_vl", "kimi_k25", "glm46v", "gemma4", "inkling", "nemotron_h_omni")
}
_ADAPTERS = [adapter_for(layout) for layout in _LAYOUTS.values()]


def pillow_size(data: bytes, max_pixels: int, exif: bool = True) -> tuple[int, int] | None:
    """The reference: the size Pillow decodes (frame 0, oriented when `exif`) and transformers
    composites, or None when they cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.format not in DECODE_FORMATS or im.width * im.height > max_pixels:
                return None
            im.load()
            if "A" in im.getbands() or im.info.get("transparency") is not None:
                im.convert("RGBA")  # transformers' convert_to_rgb: a palette it refuses is no image
            return ImageOps.exif_transpose(im).size if exif else im.size
    except Exception:
        return None


def _typed(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The call's result, or the RawmmError it raised; any other exception propagates."""
    try:
        return call(*args, **kwargs)
    except RawmmError as e:
        return e


_NO_EXIF = adapter_for(_LAYOUTS["qwen2_5_vl"].replace(exif_policy="ignore"))


def images(data: bytes, ctx: Context) -> None:
    for adapter in (_ADAPTERS[0], _NO_EXIF):
        _image(data, ctx, adapter)
    rust_formats = (pixels.PNG_SIGNATURE, pixels.JPEG_SIGNATURE)
    if data.startswith(rust_formats) and pillow_size(data, ctx.store.max_pixels) is not None:
        _rust_pixels(data, ctx.store.max_pixels)


def _rust_pixels(data: bytes, max_pixels: int) -> None:
    """The Rust PNG and JPEG decoders, where they do not leave the file to Pillow, give
    Pillow's pixels, decoded whole and streamed (on one thread and on several)."""
    for exif, composite in ((True, True), (False, False)):
        try:
            want = pillow_reference(data, exif=exif, composite=composite)
        except Exception:
            continue  # e.g. a palette Pillow refuses when converting: typed errors are checked above
        got = _typed(decode_array, data, exif=exif, composite=composite, max_pixels=max_pixels)
        if isinstance(got, np.ndarray):  # else Pillow decoded it (a view of Pillow's buffer)
            assert np.array_equal(got, want), "the Rust decoder differs from Pillow"
        if exif and composite:  # rows streamed into the resize, where that path applies
            layout = _LAYOUTS["qwen2_5_vl"]
            for threads in (1, None):
                streamed = _typed(stream_pixel_values, layout, data, max_pixels=max_pixels, threads=threads)
                if streamed is not None and not isinstance(streamed, RawmmError):
                    assert np.array_equal(streamed.pixel_values, layout.pixel_values(want).pixel_values)
    if data.startswith(pixels.JPEG_SIGNATURE):
        _jpeg_shared(data)


def _jpeg_shared(data: bytes) -> None:
    """Two libjpeg decompressors sharing the image (the second skipping to a row, as large
    images are decoded) decode what one does, or both refuse; cut at rows the input picks."""
    with Image.open(io.BytesIO(data)) as im:
        (w, h), mode = im.size, im.mode
    if mode not in ("L", "RGB"):
        return
    one = _core.decode_jpeg(data, (w, h), mode, split=0)
    for cut in {1, h // 2, h - 1, zlib.crc32(data) % (h + 1)}:
        got = _core.decode_jpeg(data, (w, h), mode, split=cut)
        assert (got is None) == (one is None), f"two decompressors (cut {cut}) disagree with one"
        assert one is None or np.array_equal(got, one), f"two decompressors (cut {cut}) differ"


def _image(data: bytes, ctx: Context, adapter: Any) -> None:
    store = ctx.store
    layout = adapter.layout
    expected = pillow_size(data, store.max_pixels, layout.knobs["exif_policy"] == "apply")
    d = _typed(adapter.describe, data, store=store)
    if expected is not None:
        want = _typed(layout.image, *expected)
        if isinstance(want, RawmmError):
            assert isinstance(d, RawmmError), "describe accepted a geometry the layout refuses"
            return
        assert not isinstance(d, RawmmError), f"Pillow decodes {expected}, describe raised {d!r}"
        assert (d.width, d.height) == expected, f"describe {(d.width, d.height)} != Pillow {expected}"
        ref = adapter.ref(d, run_id="fuzz")
        out = _typed(adapter.materialize, ref, store=store)
        assert not isinstance(out, RawmmError), f"describe {expected} ok, materialize raised {out!r}"
        assert tuple(out.grid_thw[0]) == want.grid_thw
        # What the vLLM connector hands vLLM's processor: materialize's raster, exactly.
        raster = _typed(adapter.image, ref, store=store)
        assert not isinstance(raster, RawmmError), f"materialize ok, image raised {raster!r}"
        got = layout.pixel_values(raster.rgb, dtype="uint8").pixel_values
        assert np.array_equal(got, adapter.materialize(ref, store=store, dtype="uint8").pixel_values)
    elif not isinstance(d, RawmmError):
        out = _typed(adapter.materialize, adapter.ref(d, run_id="fuzz"), store=store)
        assert isinstance(out, RawmmError), "rawmm decoded an image Pillow cannot"
    _typed(layout.pixel_values, data)


def refs(data: bytes, ctx: Context) -> None:
    text = ctx.fill(data).decode("utf-8", "surrogateescape")
    ref = _typed(RawMMRef.parse, text)
    if isinstance(ref, RawmmError):
        return
    for form in ("v2", "json"):
        out = _typed(ref.to_string, form)
        if isinstance(out, str):
            assert RawMMRef.parse(out).mm_hash == ref.mm_hash
    for where in (ref.raw_image_uri, ref.raw_image_id):
        if where is not None:
            for expected in (ref.mm_hash, ctx.bait_hash):  # the bait's hash verifies only the bait
                got = _typed(ctx.store.read, where, expected_hash=expected)
                assert got != ctx.bait, f"store.read returned bytes from outside the store: {where!r}"
    for adapter in _ADAPTERS:
        out = _typed(adapter.materialize, ref, store=ctx.store)
        assert isinstance(out, RawmmError) or ref.mm_hash != ctx.bait_hash, "materialized the bait"
        out = _typed(adapter.image, text, store=ctx.store)  # the vLLM connector's read
        assert isinstance(out, RawmmError) or ref.mm_hash != ctx.bait_hash, "decoded the bait"


def envelopes(data: bytes, ctx: Context) -> None:
    try:
        obj = json.loads(ctx.fill(data))
    except (ValueError, RecursionError):
        return
    _typed(parse_raw_mm_item, obj)
    _typed(parse_raw_mm_item, obj, accept_pruned=True, modality="image")
    for adapter in _ADAPTERS:
        out = _typed(adapter.materialize, obj, store=ctx.store)
        bait_id = isinstance(obj, dict) and str(obj.get("raw_image_id", "")).startswith(ctx.bait_hash)
        assert isinstance(out, RawmmError) or not bait_id, "materialized the bait"
        # Verified against the bait's hash, only the bait's bytes (all outside the store) pass.
        out = _typed(adapter.materialize, obj, store=ctx.store, outer_hash=ctx.bait_hash)
        assert isinstance(out, RawmmError), "materialized the bait"


class Shared:
    """Issue 17 §2: one Materializer shared by threads that reuse their own `out=` arrays and
    overwrite them as soon as a call returns (as a trainer reusing pinned buffers does). The
    images, their refs and each one's pixels from `adapter.materialize` alone (the reference);
    Qwen2.5-VL's layout unless another is given."""

    def __init__(self, root: Path, layout: Layout | None = None) -> None:
        self.store = AssetStore(root / "shared", max_bytes=1 << 22, max_pixels=1 << 22)
        self.adapter = _ADAPTERS[0] if layout is None else adapter_for(layout)
        self.refs: list[str] = []
        self.want: list[np.ndarray] = []
        rng = np.random.default_rng(17)
        for i in range(12):  # ~0.5 MB of pixels each: a 3 MB cache evicts
            arr = rng.integers(0, 256, (150 + 7 * i, 170 - 5 * i, 3), dtype=np.uint8)
            d = self.adapter.describe(Image.fromarray(arr), store=self.store)
            self.refs.append(self.adapter.ref(d, run_id="fuzz").to_string())
            self.want.append(self.adapter.materialize(self.refs[-1], store=self.store).pixel_values)
        self.missing = self.adapter.ref(
            dataclasses.replace(d, mm_hash="0" * 64, asset_id="0" * 64 + ".png"), run_id="fuzz"
        ).to_string()

    def run(self, rng: random.Random, threads: int, cache_bytes: int, batches: int) -> int:
        """Wrong images seen (NaN or another image's pixels); callers also check that their
        `out=` arrays are left alone once a call has raised."""
        from rawmm import Materializer

        wrong = [0]
        m = Materializer(self.adapter, self.store, processor_id="fuzz", cache_bytes=cache_bytes, threads=2)
        seeds = [rng.getrandbits(32) for _ in range(threads)]

        def caller(k: int) -> None:
            r = random.Random(seeds[k])
            mine = [np.full_like(w, np.nan) for w in self.want]  # this caller's reused buffers
            for _ in range(batches):
                picks = r.sample(range(len(self.refs)), r.randint(1, 4))
                style = r.choice(["list", "batch", "none", "fail"])
                refs = [self.refs[i] for i in picks]
                if style == "list":
                    out = m.materialize(refs, out=[mine[i] for i in picks]).pixel_values
                    got = [mine[i] for i in picks]
                elif style == "batch":
                    buf = np.empty((sum(len(self.want[i]) for i in picks), self.want[0].shape[1]), np.float32)
                    out = m.materialize(refs, out=buf).pixel_values
                    got = np.split(out, np.cumsum([len(self.want[i]) for i in picks])[:-1])
                elif style == "none":
                    got = np.split(
                        m.materialize(refs).pixel_values, np.cumsum([len(self.want[i]) for i in picks])[:-1]
                    )
                else:  # a batch that fails: no worker may write into its arrays afterwards
                    dest = [mine[i] for i in picks]
                    try:  # the missing asset first: the call raises while the others still run
                        m.materialize([self.missing, *refs], out=[np.empty_like(self.want[-1]), *dest])
                        wrong[0] += 1
                    except RawmmError:
                        pass
                    for a in dest:
                        a.fill(-1.0)
                    time.sleep(0.002)
                    wrong[0] += sum(not (a == -1.0).all() for a in dest)
                    got = []
                for i, g in zip(picks, got, strict=False):
                    wrong[0] += not np.array_equal(g, self.want[i])
                    g.fill(np.nan)  # reuse at once, as a trainer does

        pool = [threading.Thread(target=caller, args=(k,)) for k in range(threads)]
        try:
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        finally:
            m.close()
        return wrong[0]


_SHARED: dict[Path, Shared] = {}


def materializer(data: bytes, ctx: Context) -> None:
    """The input seeds a schedule: 2 or 16 threads, the cache off, tiny or roomy, a few batches
    each."""
    shared = _SHARED.get(ctx.root) or _SHARED.setdefault(ctx.root, Shared(ctx.root))
    rng = random.Random(data)
    threads = rng.choice([2, 16])
    cache = rng.choice([0, 3 << 20, 64 << 20])
    wrong = shared.run(rng, threads, cache, batches=rng.randint(2, 6))
    assert wrong == 0, f"{wrong} wrong images ({threads} threads, cache {cache})"


RUN = {"images": images, "refs": refs, "envelopes": envelopes, "materializer": materializer}

# -- mutation ---------------------------------------------------------------------------------

_INTERESTING = [0, 1, 2, 5, 6, 8, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]
_TOKENS = [b"..", b"/", b"%2e", b"%00", b"\x00", b"file://", b"[", b"@OUTSIDE@", b"@OUT_HASH@", b"\\"]


def seeds(target: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((CORPUS / target).iterdir()) if p.is_file()]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """A few structural mutations: flips, inserts, deletes, copies, splices, integer fields set
    to boundary values, path tokens (mutation fuzzing as in AFL's havoc stage)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(8)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[at : at + rng.randint(1, 32)]
        elif op == 3 and buf:
            start = rng.randrange(len(buf))
            buf[at:at] = buf[start : start + rng.randint(1, 64)]
        elif op == 4 and pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf[at:] = other[cut:]
        elif op in (5, 6):
            size, order = rng.choice([(1, "big"), (2, "big"), (2, "little"), (4, "big"), (4, "little")])
            value = rng.choice(_INTERESTING) & ((1 << (8 * size)) - 1)
            buf[at : at + size] = value.to_bytes(size, order)  # type: ignore[arg-type]
        else:
            buf[at:at] = rng.choice(_TOKENS)
    return bytes(buf)
