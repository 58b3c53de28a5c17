"""Family adapters: describe images without decoding them, build envelopes and refs, and
materialize refs back into model inputs (refs.md §5)."""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._pool import pool
from .errors import (
    AssetNotFoundError,
    LayoutError,
    LimitExceededError,
    RawmmError,
    RefFormatError,
    show,
)
from .families import family
from .hashing import fingerprint_bytes, verify
from .layout import ImageLayout, Layout
from .pixels import Probe, decode_rgb, encoded_pixel_values, output_shape, probe
from .refs import (
    MARKER,
    MARKER_KEY,
    RawMMItem,
    RawMMRef,
    cjson,
    normalize_run_id,
    parse_raw_mm_item,
    payload_grid,
    raw_mm_item,
)
from .store import AssetStore, decode_data_url

__all__ = [
    "Adapter",
    "Descriptor",
    "KimiK25Adapter",
    "Materializer",
    "ModelInputs",
    "QwenVLAdapter",
    "adapter_for",
]


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What travels instead of pixels: hash, asset, layout, payload (api.md)."""

    mm_hash: str
    asset_id: str
    raw_image_uri: str
    family: str
    layout_fingerprint: str
    width: int
    height: int
    raw_width: int
    raw_height: int
    image_layout: ImageLayout
    grid_thw: tuple[int, int, int]
    num_tokens: int
    payload: dict[str, Any]
    #: run id of the store the image went into (the fallback of refs.md §2.2)
    store_run_id: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what `rawmm describe` prints)."""
        return {
            "mm_hash": self.mm_hash,
            "asset_id": self.asset_id,
            "raw_image_uri": self.raw_image_uri,
            "family": self.family,
            "layout_fingerprint": self.layout_fingerprint,
            "width": self.width,
            "height": self.height,
            "raw_width": self.raw_width,
            "raw_height": self.raw_height,
            "resized_width": self.image_layout.resized_width,
            "resized_height": self.image_layout.resized_height,
            "grid_thw": list(self.grid_thw),
            "num_tokens": self.num_tokens,
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class Decoded:
    """A ref's verified encoded bytes and its RGB raster, (H, W, 3) uint8 (`Adapter.image`)."""

    data: bytes
    rgb: np.ndarray


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """Materialized model inputs of one or more images (`pixel_values` is a list of arrays,
    one per image, when the Materializer is given a list `out`)."""

    pixel_values: np.ndarray
    grid_thw: np.ndarray
    layout: Layout | None = field(default=None, repr=False, compare=False)

    def as_hf_dict(self) -> dict[str, Any]:
        """The reference processor's dict (Kimi K2.5: `grid_thws`; Gemma 4: `pixel_values` per
        image, `image_position_ids`, `num_soft_tokens_per_image`)."""
        if self.layout is None:
            return {"pixel_values": self.pixel_values, "image_grid_thw": self.grid_thw}
        return family(self.layout.family).hf_outputs(self.layout, self.pixel_values, self.grid_thw)


def run_id_for_refs(explicit: str | None, store_run_id: str | None) -> str:
    """refs.md §2.2: argument, RUN_ID, PRIME_RL_RUN_DIR's basename, the offload dir's run_X,
    then the store's own."""
    env = {k: v for k, v in os.environ.items() if v}
    if explicit:
        return normalize_run_id(explicit)
    if "RUN_ID" in env:
        return normalize_run_id(env["RUN_ID"])
    if "PRIME_RL_RUN_DIR" in env:
        return normalize_run_id(os.path.basename(os.path.normpath(env["PRIME_RL_RUN_DIR"])))
    import re

    m = re.search(r"run_([A-Za-z0-9_.-]+)/assets/images/?$", env.get("VF_RENDERER_IMAGE_OFFLOAD_DIR", ""))
    if m:
        return normalize_run_id(m.group(1))
    if store_run_id:
        return normalize_run_id(store_run_id)
    raise RawmmError("no run id: pass run_id, set RUN_ID or PRIME_RL_RUN_DIR, or use a store with a run id")


class Adapter:
    """Describe, ref and materialize for any family: what differs between families comes from
    its `Family` (`rawmm.families`). `Adapter(layout)` serves the layout's family; the named
    subclasses accept only theirs."""

    family: str

    def __init__(self, layout: Layout) -> None:
        expected = getattr(type(self), "family", None)
        if expected is not None and layout.family != expected:
            raise LayoutError(f"{type(self).__name__} needs a {expected} layout, got {layout.family}")
        self.family = layout.family
        self.layout = layout
        self._family = family(layout.family)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.layout!r})"

    # -- family specifics ------------------------------------------------------------------

    @property
    def feature_modality(self) -> str:
        return self._family.feature_modality

    @property
    def vllm_modality(self) -> str | None:
        return self._family.vllm_modality

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        return self._family.payload(image_layout)

    def placeholder_length(self, grid: tuple[int, int, int]) -> int:
        return self._family.placeholder_length(self.layout, grid)

    # -- describe ----------------------------------------------------------------------------

    def describe(self, source: Any, *, store: AssetStore | None = None) -> Descriptor:
        """Header read and BLAKE3 of the bytes, no pixel decode; the source is stored (or its
        stored copy verified, and repaired if corrupt) so every ref resolves through the store."""
        store = store if store is not None else AssetStore.from_env()
        data = store.source_bytes(source)
        p = self.probe(data, store)
        lay = self.layout.image(*p.oriented)
        asset = store.put(data)
        return Descriptor(
            mm_hash=asset.mm_hash,
            asset_id=asset.asset_id,
            raw_image_uri=asset.uri,
            family=self.family,
            layout_fingerprint=self.layout.fingerprint,
            width=lay.width,
            height=lay.height,
            raw_width=p.width,
            raw_height=p.height,
            image_layout=lay,
            grid_thw=lay.grid_thw,
            num_tokens=lay.num_tokens,
            payload=self.payload(lay),
            store_run_id=store.run_id or "explicit",
        )

    def probe(self, data: bytes, store: AssetStore) -> Probe:
        """The size and orientation `materialize` will decode, from the header (refs.md §6 rule
        9: caps and layout before any decode)."""
        exif = self.layout.knobs["exif_policy"] == "apply"
        composite = self.layout.knobs["alpha_policy"] == "composite_white"
        return probe(
            data, exif=exif, composite=composite, max_pixels=store.max_pixels, check=self.layout.image
        )

    def item(self, descriptor: Descriptor, *, with_ref: bool = True) -> dict[str, Any]:
        """The `prime_raw_mm_item` envelope."""
        return raw_mm_item(
            modality="image",
            family=self.family,
            layout_fingerprint=descriptor.layout_fingerprint,
            payload=descriptor.payload,
            vllm_modality=self.vllm_modality,
            raw_uri=descriptor.raw_image_uri if with_ref else None,
            raw_image_id=descriptor.asset_id if with_ref else None,
        )

    def ref(self, descriptor: Descriptor, *, run_id: str | None = None) -> RawMMRef:
        return RawMMRef(
            run_id_for_refs(run_id, descriptor.store_run_id),
            self.family,
            descriptor.layout_fingerprint,
            self.feature_modality,
            descriptor.mm_hash,
            descriptor.asset_id,
            descriptor.payload,
        )

    # -- materialize -------------------------------------------------------------------------

    def resolve(self, src: Any) -> tuple[RawMMRef | RawMMItem, str | None]:
        """Parses a ref string, RawMMRef or ref-carrying envelope; returns it with its mm_hash
        (None for an envelope, which is verified by its asset id's stem)."""
        if isinstance(src, str):
            src = RawMMRef.parse(src)
        if isinstance(src, RawMMRef):
            return src, src.mm_hash
        if isinstance(src, RawMMItem | Mapping):
            item = src if isinstance(src, RawMMItem) else parse_raw_mm_item(src)
            if not item.has_ref:
                raise RefFormatError("a descriptor-only envelope cannot be materialized")
            return item, None
        raise RefFormatError(f"cannot materialize a {type(src).__name__}")

    def check(self, src: RawMMRef | RawMMItem) -> tuple[int, int, int]:
        """Family, fingerprint and payload checks; returns the payload grid."""
        if isinstance(src, RawMMRef):
            family, payload, fingerprint, mm_hash = src.family, src.payload, src.fingerprint, src.mm_hash
            if family is None:  # mmraw:v1 carries no family; its payload key is Qwen's
                if self.family != "qwen_vl":
                    raise LayoutError("mmraw:v1 refs are Qwen refs; this adapter is " + self.family)
                family = self.family
        else:
            family, payload, fingerprint, mm_hash = src.family, src.payload, src.layout_fingerprint, None
        if family != self.family:
            raise LayoutError(f"ref family {show(family)} does not match the {self.family} adapter")
        if (
            (mm_hash is None or len(mm_hash) == 64)
            and fingerprint is not None
            and fingerprint != self.layout.fingerprint
        ):
            raise LayoutError(
                f"layout fingerprint {fingerprint} differs from this layout's {self.layout.fingerprint}"
            )
        grid = payload_grid(family, payload, getattr(src, "vllm_modality", None))
        # A claim is bounded before anything is fetched or allocated for it (the decoded
        # image's grid is the exact check).
        if grid[0] * grid[1] * grid[2] > self.layout.max_image_rows:
            raise LayoutError(
                f"the ref's grid {list(grid)} has more patches than any image under this layout "
                f"({self.layout.max_image_rows})"
            )
        return grid

    def materialize(
        self,
        ref_or_item: Any,
        *,
        store: AssetStore,
        outer_hash: str | None = None,
        fetched: Future[bytes] | None = None,
        out: np.ndarray | None = None,
        threads: int | None = None,
        dtype: str = "float32",
    ) -> ModelInputs:
        """Verified bytes → decode → pixel pipeline; the grid must equal the payload's.
        `fetched`: the verified bytes, already being fetched (the Materializer's prefetch).
        `out`, `threads`, `dtype`: for the pixel pipeline, as in `Layout.pixel_values` (threads
        None: all cores)."""
        src, mm_hash = self.resolve(ref_or_item)
        grid = self.check(src)
        data = fetched.result() if fetched is not None else self.fetch(src, mm_hash or outer_hash, store)
        pv = encoded_pixel_values(
            self.layout,
            data,
            max_pixels=store.max_pixels,
            max_bytes=store.max_bytes,
            check=self._header_check(grid),
            out=out,
            threads=threads,
            dtype=dtype,
        )
        self._grid_check(grid, tuple(int(v) for v in pv.grid_thw[0]))
        return ModelInputs(pv.pixel_values, pv.grid_thw, self.layout)

    def image(self, ref_or_item: Any, *, store: AssetStore, max_pixels: int | None = None) -> Decoded:
        """The verified bytes of a ref and the RGB raster `materialize` resizes (EXIF, alpha and
        mode rules applied): what a server's own processor must be handed to compute exactly
        `materialize`'s pixels. Every check of `materialize` applies. `max_pixels`: a further
        cap (the server's own), below the store's."""
        src, mm_hash = self.resolve(ref_or_item)
        grid = self.check(src)
        data = self.fetch(src, mm_hash, store)
        knobs = self.layout.knobs
        rgb = decode_rgb(
            data,
            exif=knobs["exif_policy"] == "apply",
            composite=knobs["alpha_policy"] == "composite_white",
            max_pixels=min(store.max_pixels, max_pixels or store.max_pixels),
            max_bytes=store.max_bytes,
            check=self._header_check(grid),
        )
        self._grid_check(grid, self.layout.image(rgb.shape[1], rgb.shape[0]).grid_thw)
        return Decoded(data, rgb)

    def _header_check(self, grid: tuple[int, int, int]) -> Callable[[int, int], None]:
        def check(w: int, h: int) -> None:
            # Either orientation here: only the decode is sure of it (a PNG's trailing eXIf).
            if grid not in (self.layout.image(w, h).grid_thw, self.layout.image(h, w).grid_thw):
                raise LayoutError(f"a {w}x{h} image cannot have the ref's grid {list(grid)}")

        return check

    @staticmethod
    def _grid_check(claimed: tuple[int, int, int], actual: tuple[int, ...]) -> None:
        if tuple(actual) != claimed:
            raise LayoutError(f"image grid {list(actual)} differs from the ref's {list(claimed)}")

    def fetch(self, src: RawMMRef | RawMMItem, mm_hash: str | None, store: AssetStore) -> bytes:
        """Inline data, else the store by asset id, else the URI under the allowed roots."""
        if isinstance(src, RawMMRef) and src.raw_image_data is not None:
            data = decode_data_url(src.raw_image_data, max_bytes=store.max_bytes)
            if len(data) > store.max_bytes:
                raise LimitExceededError(f"{len(data)} bytes exceed the cap of {store.max_bytes}")
            verify(data, src.mm_hash)
            return data
        uri = src.raw_image_uri if isinstance(src, RawMMRef) else src.raw_uri
        return store.read_asset(src.raw_image_id, uri, expected_hash=mm_hash)

    def materialize_image_refs(
        self, multi_modal_data: Any, messages: Sequence[Mapping[str, Any]], *, store: AssetStore | None = None
    ) -> dict[str, Any]:
        """Upgrades descriptor-only envelopes to ref-carrying ones, matching by hash (refs.md §5.3).
        Returns a new dict; the input is never mutated."""
        store = store if store is not None else AssetStore.from_env()
        mm = _as_mm_dict(multi_modal_data)
        by_hash: dict[str, Descriptor] = {}
        seen: dict[int, Descriptor] = {}
        for part in _image_parts(messages):
            source = _part_source(part)
            key = id(source)
            d = seen.get(key) or self.describe(source, store=store)
            seen[key] = d
            by_hash.setdefault(d.mm_hash, d)
        out: dict[str, Any] = {"mm_items": {}, "mm_hashes": {}, "mm_placeholders": {}}
        missing: list[str] = []
        for fm, items in mm["mm_items"].items():
            hashes, holders = mm["mm_hashes"].get(fm, []), mm["mm_placeholders"].get(fm, [])
            if not (len(items) == len(hashes) == len(holders)):
                raise RefFormatError(f"mm_items, mm_hashes and mm_placeholders differ in length for {fm!r}")
            new_items = []
            for item, h in zip(items, hashes, strict=True):
                if MARKER_KEY in item:
                    new_items.append(dict(item))
                    continue
                parsed = parse_raw_mm_item(item)
                found = by_hash.get(h) or self._from_store(store, h)
                if found is None:
                    missing.append(h)
                    new_items.append(dict(item))
                    continue
                grid = payload_grid(parsed.family, parsed.payload)
                if grid != found.grid_thw or found.family != parsed.family:
                    raise LayoutError(f"image {h}: grid or family differs from the described image")
                ref_keys = {
                    "raw_uri": found.raw_image_uri,
                    "raw_image_id": found.asset_id,
                    MARKER_KEY: MARKER,
                }
                new_items.append({**item, **ref_keys})
            out["mm_items"][fm] = new_items
            out["mm_hashes"][fm] = list(hashes)
            out["mm_placeholders"][fm] = list(holders)
        if missing:
            raise AssetNotFoundError("image hash(es) not found in messages or store: " + ", ".join(missing))
        return out

    def _from_store(self, store: AssetStore, mm_hash: str) -> Descriptor | None:
        if len(mm_hash) != 64:
            return None
        asset = store.find(mm_hash)
        return None if asset is None else self.describe(store.read(asset.asset_id), store=store)


class QwenVLAdapter(Adapter):
    family = "qwen_vl"


class KimiK25Adapter(Adapter):
    family = "kimi_k25"


_NAMED: dict[str, type[Adapter]] = {a.family: a for a in (QwenVLAdapter, KimiK25Adapter)}


def adapter_for(layout: Layout) -> Adapter:
    """The layout's adapter: its family's named class (api.md) where there is one."""
    return _NAMED.get(layout.family, Adapter)(layout)


def _as_mm_dict(mm: Any) -> dict[str, dict[str, list[Any]]]:
    get = mm.get if isinstance(mm, Mapping) else lambda k, d=None: getattr(mm, k, d)
    out = {}
    for key in ("mm_items", "mm_hashes", "mm_placeholders"):
        value = get(key, None) or {}
        if not isinstance(value, Mapping):
            raise RefFormatError(f"{key} must map feature modalities to lists")
        out[key] = {fm: list(v) for fm, v in value.items()}
    return out


def _image_parts(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    parts: list[Mapping[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts.extend(
                p for p in content if isinstance(p, Mapping) and p.get("type") in ("image", "image_url")
            )
    return parts


def _part_source(part: Mapping[str, Any]) -> Any:
    if part.get("type") == "image":
        return part.get("image")
    url = part.get("image_url")
    return url.get("url") if isinstance(url, Mapping) else url


# -- batches ---------------------------------------------------------------------------------------


def cache_key(
    ref_text: str,
    feature_modality: str,
    mm_hash: str,
    placeholder_length: int,
    processor_id: str,
    layout_fp: str,
) -> str:
    """hashing.md §6: BLAKE3 over the framed whole ref text and the outer metadata."""
    chunks = [
        b"rawmm-matcache:v1",
        ref_text.encode("utf-8"),
        feature_modality.encode("utf-8"),
        mm_hash.encode("ascii"),
        placeholder_length.to_bytes(8, "little"),
        processor_id.encode("utf-8"),
        layout_fp.encode("ascii"),
    ]
    framed = b"".join(len(c).to_bytes(8, "little") + c for c in chunks)
    return fingerprint_bytes(framed)


#: The Materializer's output types: transformers' float32, or the patches before rescale.
_DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "uint8": np.uint8}


class Materializer:
    """Materializes batches of refs: images in parallel, a byte-bounded single-flight LRU whose
    key digests the whole ref text and the outer metadata, results in request order."""

    def __init__(
        self,
        adapter: Adapter,
        store: AssetStore,
        *,
        processor_id: str,
        cache_bytes: int = 2 << 30,
        threads: int | None = None,
    ) -> None:
        self.adapter = adapter
        self.store = store
        self.processor_id = processor_id
        self.cache_bytes = int(cache_bytes)
        self.threads = threads or os.cpu_count() or 1
        self._cache: OrderedDict[str, ModelInputs] = OrderedDict()
        self._cached_bytes = 0
        self._inflight: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rawmm-materialize")
        # Reads are I/O (object stores: network round trips, GIL released), so a whole batch is
        # fetched ahead of the decoders by a wider pool.
        self._io = ThreadPoolExecutor(max(8, 4 * self.threads), thread_name_prefix="rawmm-fetch")
        self.hits = self.misses = 0

    @classmethod
    def from_env(
        cls, adapter: Adapter, store: AssetStore, *, processor_id: str, threads: int | None = None
    ) -> Materializer:
        raw = os.environ.get("PRIME_RL_MM_MATERIALIZE_CACHE_GB")
        try:
            gb = 2.0 if not raw else float(raw)
        except ValueError:
            raise RawmmError(f"PRIME_RL_MM_MATERIALIZE_CACHE_GB must be a number, got {raw!r}") from None
        return cls(
            adapter, store, processor_id=processor_id, cache_bytes=int(gb * (1 << 30)), threads=threads
        )

    def close(self) -> None:
        # Reads not yet begun are dropped: closing waits for one read's deadline at most.
        self._io.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Materializer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _text_and_meta(self, src: Any) -> tuple[str, Any, str, str, int, tuple[int, int, int]]:
        """(ref text as received, parsed source, feature modality, mm_hash, placeholder length,
        grid)."""
        if isinstance(src, str):
            text = src
        elif isinstance(src, RawMMRef):
            text = (
                src.to_string()
                if None not in (src.run_id, src.family, src.raw_image_id)
                else src.to_string("json")
            )
        elif isinstance(src, Mapping):
            text = cjson(src)
        else:
            raise RefFormatError(f"cannot materialize a {type(src).__name__}")
        parsed, mm_hash = self.adapter.resolve(src)
        grid = self.adapter.check(parsed)
        if isinstance(parsed, RawMMRef):
            fm = parsed.modality
        else:
            fm = parsed.feature_modality
            stem = (parsed.raw_image_id or "").split(".")[0]
            if len(stem) != 64:
                raise RefFormatError("an envelope's asset id must have a 64-hex stem to be verified")
            mm_hash = stem
        assert mm_hash is not None
        return text, parsed, fm, mm_hash, self.adapter.placeholder_length(grid), grid

    def materialize(
        self,
        refs: Sequence[Any],
        *,
        outer: Sequence[tuple[str, str, int]] | None = None,
        out: np.ndarray | Sequence[np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> ModelInputs:
        """The batch's pixels, each image written straight into its destination (no
        concatenation pass): one new array (in the memory of an earlier batch, of any
        Materializer of the process, that nothing refers to any more: `rawmm._pool`); or
        `out`, either one C-contiguous array of the batch's shape and dtype (e.g. a reused
        pinned buffer) or a list of such arrays, one per ref of that image's shape, which
        `pixel_values` then is. `dtype="uint8"`: the resized patches before rescale and
        normalise (what vLLM's processor emits), for `Layout.normalize` on the consumer's device.

        Reads run ahead on an I/O pool; each worker verifies, decodes and packs one image at a
        time with the GIL released, so at most `threads` decoded images are alive at once."""
        if isinstance(refs, str | bytes | Mapping | RawMMRef) or not isinstance(refs, Sequence):
            raise RefFormatError(f"refs must be a list, got {type(refs).__name__}")
        if not refs:
            raise RefFormatError("no refs to materialize")
        if dtype not in _DTYPES:
            raise LayoutError(f"dtype must be one of {list(_DTYPES)}, got {show(dtype)}")
        if outer is not None and (not isinstance(outer, Sequence) or len(outer) != len(refs)):
            raise RefFormatError("outer must be a list parallel to refs")
        planned = []
        for i, src in enumerate(refs):
            text, parsed, fm, mm_hash, length, grid = self._text_and_meta(src)
            if outer is not None:
                entry = outer[i]
                if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 3:
                    raise RefFormatError(f"outer[{i}] must be (modality, mm_hash, placeholder_length)")
                o_fm, o_hash, o_len = entry
                if o_fm != fm:
                    raise RefFormatError(f"ref {i}: modality {fm!r} differs from the outer {show(o_fm)}")
                if o_hash != mm_hash:
                    raise RefFormatError(f"ref {i}: mm_hash differs from the outer mm_hashes entry")
                if o_len != length:
                    raise LayoutError(f"ref {i}: placeholder length {o_len} differs from the ref's {length}")
            key = cache_key(text, fm, mm_hash, length, self.processor_id, self.adapter.layout.fingerprint)
            if dtype != "float32":  # the same image's uint8 patches are another entry
                key += ":" + dtype
            planned.append((key, parsed, mm_hash, grid))
        rows = [self.adapter.layout.image_rows(g) for *_, g in planned]
        if isinstance(out, list | tuple):
            if len(out) != len(refs):
                raise LayoutError(f"out has {len(out)} arrays for {len(refs)} refs")
            views = [self._destination(n, o, dtype) for n, o in zip(rows, out, strict=True)]
            dest: np.ndarray | Sequence[np.ndarray] = out
        else:
            batch = self._destination(sum(rows), out, dtype)
            bounds = itertools.pairwise(np.cumsum([0, *rows]))
            views = [batch[a:b] for a, b in bounds]
            dest = batch
        # Images run in parallel on the pool, so each image's pixel work gets its share of the
        # threads (no nested all-core pools); a single image gets them all.
        threads = max(1, self.threads // len(refs))
        jobs = [
            (view, *self._get(key, parsed, mm_hash, view, threads, dtype))
            for (key, parsed, mm_hash, _), view in zip(planned, views, strict=True)
        ]
        grids = []
        try:
            for view, flight, leader in jobs:
                result = flight.future.result()
                if not leader:  # a cache hit or another request's result: private memory
                    np.copyto(view, result.pixel_values)
                grids.append(result.grid_thw)
        except BaseException:
            # Returning now hands the caller back memory workers may still write: detach it
            # from every computation not yet started, wait for those under way.
            self._abandon([flight for _, flight, leader in jobs if leader])
            raise
        # With a list `out`, pixel_values is that list (ModelInputs documents it).
        return ModelInputs(dest, np.concatenate(grids), self.adapter.layout)  # type: ignore[arg-type]

    def _destination(self, rows: int, out: object, dtype: str) -> np.ndarray:
        shape = output_shape(self.adapter.layout, rows)
        if out is None:
            return pool().take(shape, _DTYPES[dtype])
        if not isinstance(out, np.ndarray) or out.dtype != _DTYPES[dtype] or out.shape != shape:
            got = (getattr(out, "dtype", type(out).__name__), getattr(out, "shape", None))
            raise LayoutError(f"out must be a {dtype} array of shape {shape}, got {got}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise LayoutError("out must be C-contiguous and writable")
        return out

    def _get(
        self, key: str, parsed: Any, mm_hash: str, view: np.ndarray, threads: int, dtype: str
    ) -> tuple[_Flight, bool]:
        """The computation of `key` and whether this caller leads it (its pixels go straight
        into `view`); a cache hit or a joined computation yields private memory to copy."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                flight = _Flight(None)
                flight.future.set_result(hit)
                return flight, False
            joining = self._inflight.get(key)
            if joining is not None:  # single flight: join the computation under way
                joining.joined = True
                self.hits += 1
                return joining, False
            self.misses += 1
            flight = self._inflight[key] = _Flight(view)
        # The pixel work is queued once the bytes are in, so no decoder waits on a slow read.
        fetched = flight.fetched = self._io.submit(self.adapter.fetch, parsed, mm_hash, self.store)
        fetched.add_done_callback(lambda f: self._queue(key, flight, parsed, mm_hash, f, threads, dtype))
        return flight, True

    def _queue(
        self,
        key: str,
        flight: _Flight,
        parsed: Any,
        mm_hash: str,
        fetched: Future[bytes],
        threads: int,
        dtype: str,
    ) -> None:
        flight.fetched = None  # done; and no flight -> read -> callback -> flight cycle keeps a view
        if fetched.cancelled():  # by `close`, or dropped with its abandoned batch
            self._settle(key, flight, RawmmError("the read was cancelled: the Materializer was closed"))
            return
        try:
            self._pool.submit(self._compute, key, flight, parsed, mm_hash, fetched, threads, dtype)
        except RuntimeError:  # shut down meanwhile
            self._settle(key, flight, RawmmError("the Materializer was closed"))

    def _compute(
        self,
        key: str,
        flight: _Flight,
        parsed: Any,
        mm_hash: str,
        fetched: Future[bytes],
        threads: int,
        dtype: str,
    ) -> None:
        with self._lock:
            flight.started = True
            view, wanted = flight.view, flight.view is not None or flight.joined
        if not wanted:  # its leader gave up and nobody joined
            self._settle(key, flight, RawmmError("abandoned"))
            return
        try:
            # view None: the leader gave up, so the result goes into private memory.
            result = self.adapter.materialize(
                parsed,
                store=self.store,
                outer_hash=mm_hash,
                fetched=fetched,
                out=view,
                threads=threads,
                dtype=dtype,
            )
        except BaseException as e:
            self._settle(key, flight, e)
            return
        # The leader's array is its caller's to reuse once the call returns, which it cannot
        # before this future resolves: what the cache and joiners get is copied before that.
        private = result if view is None else None
        cacheable = 0 < result.pixel_values.nbytes <= self.cache_bytes
        if cacheable and private is None:
            private = _copy(result)
        with self._lock:  # from here on nobody joins: whether anyone did is final
            self._inflight.pop(key, None)
            joined, flight.view = flight.joined, None
            if cacheable and key not in self._cache:
                assert private is not None
                self._cache[key] = private
                self._cached_bytes += private.pixel_values.nbytes
                while self._cached_bytes > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cached_bytes -= old.pixel_values.nbytes
        if joined and private is None:
            private = _copy(result)
        flight.future.set_result(result if private is None else private)

    def _settle(self, key: str, flight: _Flight, error: BaseException) -> None:
        with self._lock:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
        flight.future.set_exception(error)

    def _abandon(self, flights: list[_Flight]) -> None:
        with self._lock:
            running = [f.future for f in flights if f.started]
            idle = [f for f in flights if not f.started]
            for f in idle:
                f.view = None
            # Nobody joins these from now on, so their reads not yet begun can be dropped (a
            # failed batch fails within one read's deadline).
            alone = [f for f in idle if not f.joined]
            self._inflight = {k: v for k, v in self._inflight.items() if v not in alone}
        for f in alone:
            fetched = f.fetched  # None once the read is done
            if fetched is not None:
                fetched.cancel()  # its callback settles the flight (outside the lock)
        wait(running)


def _copy(result: ModelInputs) -> ModelInputs:
    return ModelInputs(result.pixel_values.copy(), result.grid_thw, result.layout)


class _Flight:
    """One computation of a cache key. `view`: where the leader's caller wants the pixels
    (None once that caller has returned); joiners, and the cache, get a private copy."""

    __slots__ = ("fetched", "future", "joined", "started", "view")

    def __init__(self, view: np.ndarray | None) -> None:
        self.future: Future[ModelInputs] = Future()
        self.fetched: Future[bytes] | None = None
        self.view = view
        self.joined = False
        self.started = False
