"""The content-addressed asset store (refs.md §2, §6).

Every image is stored once as its exact bytes under `<mm_hash><ext>`; writes are atomic and
idempotent, every read is verified. The store's logic (naming, verification, caps, containment,
the read-through cache) is written once here, over the one `Backend` interface that both the
local directory (`_local.py`) and object storage (`_objects.py`) implement.
"""

from __future__ import annotations

import os
import posixpath
import re
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ._cache import ReadCache
from ._files import read_regular
from ._ingress import array_to_image, decode_data_url, encode_png, extension_of
from ._local import TEMP_MAX_AGE_S, LocalBackend
from ._uris import check_file_uri, is_object_uri, split_object_uri
from .errors import (
    AssetNotFoundError,
    ImageDecodeError,
    LimitExceededError,
    RawmmError,
    RefFormatError,
    UnsafePathError,
    show,
)
from .hashing import fingerprint_bytes, verify
from .refs import normalize_run_id

__all__ = ["Asset", "AssetStore", "Backend", "LocalBackend", "decode_data_url"]

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_PIXELS = 178_956_970
EXTENSIONS = ("png", "jpg", "webp", "gif", "bmp", "tiff", "img")
_READ_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")
_RAWMM_ID = re.compile(r"([0-9a-f]{64})\.(png|jpg|webp|gif|bmp|tiff|img)")


@dataclass(frozen=True, slots=True)
class Asset:
    """A stored asset; `path` is None in object storage."""

    asset_id: str
    mm_hash: str
    uri: str
    path: Path | None
    size: int


class Backend(Protocol):
    """Where asset bytes live. Names are already validated asset ids."""

    location: str  # the images directory, or the object prefix's URL

    def uri(self, name: str) -> str: ...
    def path(self, name: str) -> Path | None: ...
    def read(self, name: str, max_bytes: int) -> bytes: ...
    def read_uri(self, uri: str, max_bytes: int, roots: Sequence[str]) -> bytes: ...
    def size(self, name: str) -> int | None: ...
    def write(self, name: str, data: bytes) -> None: ...
    def entries(self) -> Iterator[tuple[str, str | None]]: ...
    def sweep(self, older_than_s: float) -> int: ...


class AssetStore:
    """Content-addressed image store. The constructor's defaults are constants; only
    `from_env` reads the environment."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        images_subdir: str = "assets/images",
        allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        allow_http: bool = False,
        run_id: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int = 8 << 30,
    ) -> None:
        """`root`: a directory or an object-store URL (`s3://bucket/prefix`, `gs://`, `az://`).
        `storage_options`: obstore's option keys for object stores (the standard environment
        supplies the rest). `cache_dir`: a local read-through cache of verified object-store
        assets, LRU-bounded to `cache_bytes`."""
        self.backend: Backend
        if isinstance(root, str) and is_object_uri(root):
            from ._objects import ObjectBackend

            url = root.rstrip("/") + (f"/{images_subdir.strip('/')}" if images_subdir else "")
            self.backend = ObjectBackend(url, storage_options)
        else:
            if storage_options:
                raise RawmmError("storage_options apply to object-store URLs only")
            root_path = Path(os.path.realpath(root))
            images_dir = Path(os.path.realpath(root_path / images_subdir)) if images_subdir else root_path
            self.backend = LocalBackend(images_dir)
        # Roots may mix local directories (sources, file:// refs) and object-store URIs.
        roots = list(allowed_roots) if allowed_roots else [self.backend.location]
        self._object_roots = [str(r).rstrip("/") for r in roots if is_object_uri(r)]
        for r in self._object_roots:
            split_object_uri(r)
        self._roots = [os.path.realpath(r) for r in roots if not is_object_uri(r)]
        self.allowed_roots: list[Path | str] = [*map(Path, self._roots), *self._object_roots]
        self.location = self.backend.location
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self.allow_http = allow_http
        self.run_id = None if run_id is None else normalize_run_id(run_id)
        if cache_dir is not None and self.is_local:
            raise RawmmError("cache_dir is a read-through cache for object stores; this store is local")
        self.cache = None if cache_dir is None else ReadCache(Path(cache_dir), int(cache_bytes))

    @property
    def images_dir(self) -> Path:
        """The local images directory (object stores have none: see `location`)."""
        if not isinstance(self.backend, LocalBackend):
            raise RawmmError(f"{self.location} is an object store; it has no local directory")
        return self.backend.images_dir

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def __repr__(self) -> str:
        return f"AssetStore({self.location!r})"

    @staticmethod
    def env_caps() -> dict[str, int]:
        """`max_bytes` / `max_pixels` from RAWMM_MAX_ASSET_BYTES / RAWMM_MAX_IMAGE_PIXELS, where set;
        a value that is not an integer is a `RawmmError`, never silently ignored."""
        caps = {}
        for var, key in (("RAWMM_MAX_ASSET_BYTES", "max_bytes"), ("RAWMM_MAX_IMAGE_PIXELS", "max_pixels")):
            value = os.environ.get(var)
            if value:
                try:
                    caps[key] = int(value)
                except ValueError:
                    raise RawmmError(f"{var} must be an integer, got {value!r}") from None
        return caps

    @classmethod
    def from_env(cls, *, run_id: str | None = None, **options: Any) -> AssetStore:
        """Upstream's location rules (refs.md §2.1) and the RAWMM_MAX_* caps; `options` win."""
        env = {k: v for k, v in os.environ.items() if v}
        options = {**cls.env_caps(), **options}
        offload, run_dir = env.get("VF_RENDERER_IMAGE_OFFLOAD_DIR"), env.get("PRIME_RL_RUN_DIR")
        rid = run_id or env.get("RUN_ID")
        if offload:
            m = re.search(r"run_([A-Za-z0-9_.-]+)/assets/images/?$", offload)
            ref_run = rid or (_basename(run_dir) if run_dir else None) or (m.group(1) if m else "explicit")
            return cls(offload, images_subdir="", run_id=ref_run, **options)
        if run_dir:
            return cls(run_dir, run_id=rid or _basename(run_dir), **options)
        if rid:
            norm = normalize_run_id(rid)
            return cls(f"/data/outputs/run_{norm}", run_id=norm, **options)
        raise RawmmError(
            "no asset store location: set VF_RENDERER_IMAGE_OFFLOAD_DIR, PRIME_RL_RUN_DIR or RUN_ID"
        )

    # -- writing ---------------------------------------------------------------------------

    def put(self, source: Any) -> Asset:
        """Stores bytes, a PIL image, a numpy array, a data: URL or a file under the allowed
        roots, as its exact bytes (in-memory images as lossless PNG)."""
        data = self.source_bytes(source)
        mm_hash = fingerprint_bytes(data)
        name = f"{mm_hash}.{extension_of(data)}"
        self.backend.write(name, data)
        if self.cache is not None:
            self.cache.put(name, data)
        return self._asset(name, mm_hash, len(data))

    def source_bytes(self, source: Any) -> bytes:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        elif isinstance(source, Image.Image):
            data = encode_png(source)
        elif isinstance(source, np.ndarray):
            data = encode_png(array_to_image(source))
        elif isinstance(source, str) and source.startswith("data:"):
            data = decode_data_url(source, max_bytes=self.max_bytes)
        elif isinstance(source, str) and source.startswith(("http://", "https://")):
            data = self._fetch(source)
        elif isinstance(source, str | os.PathLike):
            data = self.read_allowed(source)
        else:
            raise ImageDecodeError(f"cannot store a {type(source).__name__}")
        if len(data) > self.max_bytes:
            raise LimitExceededError(f"{len(data)} bytes exceed the cap of {self.max_bytes}")
        return data

    def _fetch(self, url: str) -> bytes:
        if not self.allow_http:
            raise UnsafePathError(f"http(s) sources need allow_http=True: {url}", url)
        with urllib.request.urlopen(url, timeout=30) as resp:
            data: bytes = resp.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise LimitExceededError(f"{url}: more than {self.max_bytes} bytes")
        return data

    # -- reading ---------------------------------------------------------------------------

    def _local_path(self, path_or_uri: Any) -> str:
        """The file path a source path or `file://` URI names (its containment is not yet known)."""
        if isinstance(path_or_uri, str) and path_or_uri.startswith("file://"):
            try:
                return check_file_uri(path_or_uri)
            except RefFormatError as e:
                raise UnsafePathError(str(e), path_or_uri) from None
        if not isinstance(path_or_uri, str | os.PathLike):
            raise UnsafePathError(f"not a path: {show(path_or_uri)}")
        return os.fspath(path_or_uri)

    def read_allowed(self, path_or_uri: str | os.PathLike[str]) -> bytes:
        """The bytes of a source: a local file physically under the allowed roots (`_files.walk`:
        no symlink swapped in, and no look-alike name, can lead out), or an object URI under
        them. Unverified: the caller hashes them."""
        if is_object_uri(path_or_uri):
            return self.backend.read_uri(str(path_or_uri), self.max_bytes, self._object_roots)
        return read_regular(self._local_path(path_or_uri), self.max_bytes, self._roots)

    def read(self, asset_id_or_uri: str, *, expected_hash: str | None = None) -> bytes:
        """Verified bytes of an asset id, or of a `file://` / object URI under the allowed
        roots. Object-store reads go through the read-through cache when there is one."""
        if isinstance(asset_id_or_uri, str) and "://" in asset_id_or_uri:
            return self.read_asset(None, asset_id_or_uri, expected_hash=expected_hash)
        return self.read_asset(asset_id_or_uri, None, expected_hash=expected_hash)

    def read_asset(
        self, asset_id: str | None, uri: str | None = None, *, expected_hash: str | None = None
    ) -> bytes:
        """Verified bytes of a ref's asset (refs.md §5.4 step 4): by its id in this store, else,
        when it is not there (or there is no id), by its URI under the allowed roots. This is
        the one place that decides what a ref may read."""
        if asset_id is None and uri is None:
            raise AssetNotFoundError("the ref names no asset id or URI")
        if asset_id is not None:
            try:
                return self._read_named(asset_id, expected_hash)
            except AssetNotFoundError:
                if uri is None:
                    raise
        assert uri is not None
        return self._read_uri(uri, expected_hash)

    def _read_named(self, name: str, expected_hash: str | None) -> bytes:
        if not isinstance(name, str) or not _READ_ID.fullmatch(name):
            raise UnsafePathError(f"invalid asset id {show(name)}", name if isinstance(name, str) else None)
        return self._verified(name, expected_hash, lambda: self.backend.read(name, self.max_bytes))

    def _read_uri(self, uri: str, expected_hash: str | None) -> bytes:
        if not isinstance(uri, str):
            raise UnsafePathError(f"not an asset id or URI: {show(uri)}")
        if is_object_uri(uri):
            try:
                name = posixpath.basename(split_object_uri(uri)[2])
            except RefFormatError as e:
                raise UnsafePathError(str(e), uri) from None
            return self._verified(name, expected_hash, lambda: self.read_allowed(uri))
        if not uri.startswith("file://"):
            raise UnsafePathError(f"not a file:// or object-store URI: {show(uri)}", uri)
        path = self._local_path(uri)
        read = lambda: read_regular(path, self.max_bytes, self._roots)  # noqa: E731
        return self._verified(posixpath.basename(path), expected_hash, read)

    def _verified(self, name: str, expected_hash: str | None, read: Callable[[], bytes]) -> bytes:
        """`read()`'s bytes verified against `expected_hash`, else the stem of a rawmm id (a
        cache hit first, where there is a cache)."""
        if expected_hash is None and (match := _RAWMM_ID.fullmatch(name)) is not None:
            expected_hash = match.group(1)
        if expected_hash is not None and (hit := self._cached(name, expected_hash)) is not None:
            return hit
        data = read()
        if expected_hash is None:  # after the containment checks, which come first
            raise RefFormatError(f"{name!r} is not a rawmm asset id; pass expected_hash to verify it")
        verify(data, expected_hash)
        if self.cache is not None:
            self.cache.put(name, data)
        return data

    def _cached(self, name: str, expected_hash: str) -> bytes | None:
        """A cache hit, verified like every read (a corrupt cache entry is dropped)."""
        if self.cache is None:
            return None
        data = self.cache.get(name, self.max_bytes)
        if data is None:
            return None
        try:
            verify(data, expected_hash)
        except RawmmError:
            self.cache.drop(name)
            return None
        return data

    def find(self, mm_hash: str) -> Asset | None:
        """The asset stored under this 64-hex hash, probing every extension."""
        if not isinstance(mm_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", mm_hash):
            return None
        for ext in EXTENSIONS:
            name = f"{mm_hash}.{ext}"
            size = self.backend.size(name)
            if size is not None:
                return self._asset(name, mm_hash, size)
        return None

    def _asset(self, name: str, mm_hash: str, size: int) -> Asset:
        uri, path = self.backend.uri(name), self.backend.path(name)
        return Asset(asset_id=name, mm_hash=mm_hash, uri=uri, path=path, size=size)

    # -- maintenance -----------------------------------------------------------------------

    def verify(self) -> list[str]:
        """One message per problem found; empty when healthy. Entries that vanish meanwhile
        (writers' temp files) are skipped; unreadable ones are reported."""
        if self.is_local and not self.images_dir.is_dir() and os.path.lexists(self.images_dir):
            return [f"{self.location}: not a directory"]
        problems = []
        for name, problem in self.backend.entries():
            if problem is not None:
                problems.append(f"{name}: {problem}")
                continue
            match = _RAWMM_ID.fullmatch(name)
            if match is None:
                problems.append(f"{name}: foreign name, cannot verify")
                continue
            try:
                data = self.backend.read(name, 1 << 62)  # the cap guards reads, not the audit
            except AssetNotFoundError:
                continue
            except RawmmError as e:
                problems.append(f"{name}: {e}")
                continue
            if fingerprint_bytes(data) != match.group(1):
                problems.append(f"{name}: content does not match its hash")
            elif extension_of(data) != match.group(2):
                problems.append(f"{name}: extension does not match its content")
        return problems

    def sweep_temp(self, older_than_s: float = TEMP_MAX_AGE_S) -> int:
        """Removes orphaned temp files of interrupted local writes; returns how many. Writes
        also do this on their own every few minutes. Object stores have none."""
        return self.backend.sweep(older_than_s)


def _basename(location: str) -> str:
    return posixpath.basename(location.rstrip("/"))
