"""Assets in object storage (S3, GCS, Azure) through obstore, the Python binding of Apache
Arrow's Rust `object_store`: request signing, credentials from the standard environment, retries
with backoff, and the GIL released while requests run. Keys are `<prefix>/<asset id>`; writes
are create-only (If-None-Match), so writers on many machines never overwrite each other."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._uris import split_object_uri
from .errors import AssetNotFoundError, LimitExceededError, RawmmError, UnsafePathError

#: obstore's client-level option keys (everything else is the store's own configuration).
_CLIENT_KEYS = {
    "allow_http",
    "allow_invalid_certificates",
    "connect_timeout",
    "default_content_type",
    "http1_only",
    "http2_only",
    "pool_idle_timeout",
    "pool_max_idle_per_host",
    "proxy_url",
    "timeout",
    "user_agent",
}
# Deadlines (the README explains them): an attempt may take `timeout` (a 64 MiB asset, the
# byte cap, at 3.4 MB/s), new attempts start within `retry_timeout` of the first, so a read
# fails within about their sum. `deadline` (rawmm's key, seconds) sets both to half of it.
DEFAULT_TIMEOUT_S = 20.0
_CLIENT_DEFAULTS = {"timeout": f"{DEFAULT_TIMEOUT_S:g}s", "connect_timeout": "5s"}
_RETRY = {
    "max_retries": 5,
    "retry_timeout": timedelta(seconds=DEFAULT_TIMEOUT_S),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
}


def object_error(e: Exception, what: str) -> RawmmError:
    """obstore's errors as rawmm's, with what was being done."""
    from obstore import exceptions as ox

    if isinstance(e, ox.NotFoundError | FileNotFoundError):
        return AssetNotFoundError(f"no such object: {what}", what)
    if isinstance(e, ox.PermissionDeniedError | ox.UnauthenticatedError | PermissionError):
        return UnsafePathError(f"access denied (check the credentials): {type(e).__name__}", what)
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "NoSuchBucket" in str(e):
        return AssetNotFoundError(f"no such bucket: {what}", what)
    return RawmmError(f"object store error on {what}: {text}")


class ObjectBackend:
    """One prefix of a bucket. `storage_options` are obstore's keys (S3Config and client
    options such as `allow_http`, `timeout`), plus `max_retries` and `retry_timeout` (seconds)
    for its retries and `deadline` (seconds, retries included); anything not given comes from
    the standard environment."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        scheme, bucket, prefix = split_object_uri(url.rstrip("/"))
        self.scheme, self.bucket, self.prefix = scheme, bucket, prefix.strip("/")
        self.location = f"{scheme}://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._options = dict(storage_options or {})
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.store = self._client(bucket)

    def _client(self, bucket: str) -> Any:
        """A client for a bucket (the store's own, or another allowed one), made once."""
        with self._lock:
            client = self._clients.get(bucket)
            if client is None:
                from obstore.store import from_url

                client_opts: dict[str, Any] = {**_CLIENT_DEFAULTS}
                # obstore reads the store's variables from the environment, not the client's.
                allow = os.environ.get("AWS_ALLOW_HTTP") if self.scheme == "s3" else None
                if allow:
                    client_opts["allow_http"] = allow.lower() in ("1", "true", "yes")
                config: dict[str, Any] = {}
                options = dict(self._options)
                if "deadline" in options:
                    half = _seconds("deadline", options.pop("deadline")) / 2
                    client_opts["timeout"] = client_opts["connect_timeout"] = f"{half * 1000:.0f}ms"
                    options.setdefault("retry_timeout", half)
                for key, value in options.items():
                    (client_opts if key in _CLIENT_KEYS else config)[key] = value
                retry = {**_RETRY}
                for key in ("max_retries", "retry_timeout"):  # rawmm's keys for obstore's retry_config
                    if key in config:
                        value = config.pop(key)
                        retry[key] = (
                            int(value) if key == "max_retries" else timedelta(seconds=_seconds(key, value))
                        )
                kwargs: dict[str, Any] = {"client_options": client_opts, "retry_config": retry}
                if config:
                    kwargs["config"] = config
                try:
                    client = from_url(f"{self.scheme}://{bucket}", **kwargs)
                except Exception as e:
                    raise RawmmError(f"cannot configure {self.scheme}://{bucket}: {e}") from None
                self._clients[bucket] = client
            return client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri(self, name: str) -> str:
        return f"{self.location}/{name}"

    def path(self, name: str) -> Path | None:
        return None

    def _get(self, client: Any, key: str, max_bytes: int, what: str) -> bytes:
        import obstore

        try:
            result = obstore.get(client, key)
            size = result.meta["size"]
            if size > max_bytes:
                raise LimitExceededError(f"{what}: {size} bytes exceed the cap of {max_bytes}")
            data = bytes(result.bytes())
        except RawmmError:
            raise
        except Exception as e:
            raise object_error(e, what) from None
        if len(data) > max_bytes:
            raise LimitExceededError(f"{what}: more than {max_bytes} bytes")
        return data

    def read(self, name: str, max_bytes: int) -> bytes:
        return self._get(self.store, self._key(name), max_bytes, self.uri(name))

    def read_uri(self, uri: str, max_bytes: int, roots: Sequence[str]) -> bytes:
        """An object URI lying under one of `roots` (URIs of the same scheme)."""
        scheme, bucket, key = split_object_uri(uri)
        if scheme != self.scheme or not any(_under(uri, root) for root in roots):
            raise UnsafePathError("outside the allowed roots", uri)
        return self._get(self._client(bucket), key, max_bytes, uri)

    def size(self, name: str) -> int | None:
        import obstore

        try:
            return int(obstore.head(self.store, self._key(name))["size"])
        except Exception as e:
            err = object_error(e, self.uri(name))
            if isinstance(err, AssetNotFoundError):
                return None
            raise err from None

    def write(self, name: str, data: bytes) -> None:
        """Create-only. An existing object is left alone when it holds these exact bytes (every
        writer of a name writes the same bytes); a corrupt one is replaced by the right bytes."""
        import obstore
        from obstore import exceptions as ox

        key, what = self._key(name), self.uri(name)
        try:
            obstore.put(self.store, key, data, mode="create", use_multipart=False)
            return
        except ox.AlreadyExistsError:
            pass
        except Exception as e:
            raise object_error(e, what) from None
        try:
            existing = self._get(self.store, key, len(data), what)
        except (AssetNotFoundError, LimitExceededError):
            existing = None
        if existing == data:
            return
        try:
            obstore.put(self.store, key, data, mode="overwrite", use_multipart=False)
        except Exception as e:
            raise object_error(e, what) from None

    def entries(self) -> Iterator[tuple[str, str | None]]:
        import obstore

        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            for batch in obstore.list(self.store, prefix or None):
                for meta in batch:
                    rest = meta["path"][len(prefix) :]
                    if "/" not in rest:  # deeper keys belong to other prefixes
                        yield rest, None
        except Exception as e:
            raise object_error(e, self.location) from None

    def sweep(self, older_than_s: float) -> int:
        """Nothing to sweep: object writes are atomic, with no temp objects."""
        return 0


def _seconds(key: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 1e6:
        raise RawmmError(f"storage option {key} must be a positive number of seconds, got {value!r}")
    return seconds


def _under(uri: str, root: str) -> bool:
    root = root.rstrip("/")
    return uri == root or uri.startswith(root + "/")
