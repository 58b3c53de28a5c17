"""Refs (`mmraw:v2` and the historical forms) and the `prime_raw_mm_item` envelope (refs.md §3, §4)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._ingress import decode_data_url
from ._uris import uri_basename
from .errors import LayoutError, LimitExceededError, RefFormatError, show
from .families import FAMILIES

__all__ = [
    "RawMMItem",
    "RawMMRef",
    "cjson",
    "descriptor_only",
    "normalize_run_id",
    "parse_raw_mm_item",
    "raw_mm_item",
]

MAX_REF_CHARS = 65_536
MAX_JSON_DEPTH = 16
#: Bound of a grid entry: far above any image the caps admit (an aspect ratio of 200 at the
#: pixel cap is 13,500 patches long), and low enough that placeholder counts fit 64 bits.
MAX_GRID = 1 << 20

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_FINGERPRINT = re.compile(r"[a-f0-9]{16,64}")
_MM_HASH = re.compile(r"[a-f0-9]{16,128}")
_B64U = re.compile(r"[A-Za-z0-9_-]*")
_READ_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")
_WRITE_ID = re.compile(r"[0-9a-f]{64}\.(png|jpg|webp|gif|bmp|tiff|img)")
_VERSION = re.compile(r"v[0-9]+:")

MARKER_KEY = "_prime_rl_image_ref"
MARKER = "raw_image"
KIND = "prime_raw_mm_item"
_REF_KEYS = ("raw_uri", "raw_image_id", MARKER_KEY)
_TENSOR_KEYS = {"pixel_values", "image_embeds", "image_features", "pixel_values_videos", "video_embeds"}


def cjson(value: Any) -> str:
    """Compact canonical JSON: sorted keys, no whitespace, ASCII only, Python float repr."""
    try:
        return json.dumps(
            _thaw(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise RefFormatError(f"not plain JSON: {e}") from None


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding: no `=`, no stray characters, zero trailing bits."""
    if not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise RefFormatError("payload is not unpadded base64url")
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(padded.translate(str.maketrans("-_", "+/")), validate=True)
    except binascii.Error as e:
        raise RefFormatError(f"payload is not valid base64url: {e}") from None
    if b64u_encode(data) != text:  # non-zero trailing bits decode leniently; re-encoding catches them
        raise RefFormatError("payload base64url has non-zero trailing bits")
    return data


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RefFormatError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise RefFormatError(f"JSON constant {name} is not allowed")


def strict_json_object(text: str | bytes) -> dict[str, Any]:
    """A JSON object with no duplicate keys, no NaN/Infinity, depth <= 16."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise LimitExceededError(f"JSON nesting deeper than {MAX_JSON_DEPTH}") from None
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, RefFormatError):
            raise
        raise RefFormatError(f"payload is not valid UTF-8 JSON: {e}") from None
    if not isinstance(value, dict):
        raise RefFormatError("payload must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise LimitExceededError(f"JSON nesting deeper than {MAX_JSON_DEPTH}")
    return value


def normalize_run_id(run_id: str) -> str:
    """Strips one leading `run_`; the rest must match `^[A-Za-z0-9_.-]+$`."""
    if not isinstance(run_id, str):
        raise RefFormatError(f"run_id must be a string, got {type(run_id).__name__}")
    out = run_id[4:] if run_id.startswith("run_") else run_id
    if not _NAME.fullmatch(out):
        raise RefFormatError(f"invalid run_id {show(run_id)}")
    return out


def _check(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RefFormatError(f"invalid {name} {show(value)}")
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _check_plain(value: Any, where: str, depth: int = 1) -> None:
    """Plain JSON only: str keys; list, str, int, finite float, bool, None (refs.md §4.3), at
    most `MAX_JSON_DEPTH` deep (so a cyclic value is refused too)."""
    if isinstance(value, Mapping | list | tuple) and depth > MAX_JSON_DEPTH:
        raise LimitExceededError(f"{where}: nested deeper than {MAX_JSON_DEPTH}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise RefFormatError(f"{where}: non-string key {show(k)}")
            if k in _TENSOR_KEYS:
                raise RefFormatError(f"{where}: processed tensors ({k}) are not allowed in a raw item")
            _check_plain(v, where, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_plain(v, where, depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RefFormatError(f"{where}: non-finite number")
    elif value is not None and not isinstance(value, str | int | bool):
        raise RefFormatError(f"{where}: {type(value).__name__} values are not allowed")


class RawMMRef:
    """A parsed ref; immutable. `==` and `hash()` compare the fields, the payload by CJSON."""

    __slots__ = (
        "family",
        "fingerprint",
        "mm_hash",
        "modality",
        "payload",
        "raw_image_data",
        "raw_image_id",
        "raw_image_uri",
        "run_id",
    )

    run_id: str | None
    family: str | None
    fingerprint: str | None
    modality: str
    mm_hash: str
    raw_image_id: str | None
    payload: Mapping[str, Any]
    raw_image_uri: str | None
    raw_image_data: str | None

    def __init__(
        self,
        run_id: str | None,
        family: str | None,
        fingerprint: str | None,
        modality: str,
        mm_hash: str,
        raw_image_id: str | None,
        payload: Mapping[str, Any],
        raw_image_uri: str | None = None,
        *,
        raw_image_data: str | None = None,
    ) -> None:
        if not isinstance(payload, Mapping):
            raise RefFormatError("payload must be a JSON object")
        _check_plain(payload, "payload")
        values = {
            "run_id": None if run_id is None else normalize_run_id(run_id),
            "family": None if family is None else _check("family", family, _NAME),
            "fingerprint": None if fingerprint is None else _check("fingerprint", fingerprint, _FINGERPRINT),
            "modality": _check("modality", modality, _NAME),
            "mm_hash": _check("mm_hash", mm_hash, _MM_HASH),
            "raw_image_id": None,
            "payload": _freeze(payload),
            "raw_image_uri": None,
            "raw_image_data": None,
        }
        if raw_image_id is not None:
            _check("raw_image_id", raw_image_id, _NAME)
            values["raw_image_id"] = _check("raw_image_id", raw_image_id, _READ_ID)
        if raw_image_uri is not None:
            base = uri_basename(raw_image_uri)
            if raw_image_id is not None and base != raw_image_id:
                raise RefFormatError(
                    f"raw_image_uri {raw_image_uri!r} does not name raw_image_id {raw_image_id!r}"
                )
            values["raw_image_uri"] = raw_image_uri
        if raw_image_data is not None:
            decode_data_url(raw_image_data, max_bytes=64 << 20)
            values["raw_image_data"] = raw_image_data
        if raw_image_id is None and raw_image_uri is None and raw_image_data is None:
            raise RefFormatError("a ref needs raw_image_id, raw_image_uri or raw_image_data")
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RawMMRef is immutable")

    def _key(self) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.family,
            self.fingerprint,
            self.modality,
            self.mm_hash,
            self.raw_image_id,
            cjson(self.payload),
            self.raw_image_uri,
            self.raw_image_data,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawMMRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"RawMMRef({self.to_string() if self._v2_ready() else self.to_string('json')!r})"

    def _v2_ready(self) -> bool:
        return None not in (self.run_id, self.family, self.fingerprint, self.raw_image_id)

    @property
    def payload_dict(self) -> dict[str, Any]:
        """A mutable deep copy of the payload."""
        return _thaw(self.payload)  # type: ignore[no-any-return]

    # -- writing ----------------------------------------------------------------------------

    def to_string(self, format: str = "v2", *, include_fingerprint: bool = False) -> str:
        """`mmraw:v2:…` (what rawmm writes), or `format="json"`: the unwrapped form."""
        if format == "v2":
            if not self._v2_ready():
                raise RefFormatError("v2 needs run_id, family, fingerprint and raw_image_id")
            assert self.raw_image_id is not None
            if len(self.mm_hash) not in (64, 32):
                raise RefFormatError("rawmm writes 64-hex (or legacy 32-hex) mm_hash values only")
            if len(self.mm_hash) == 64 and not (
                _WRITE_ID.fullmatch(self.raw_image_id) and self.raw_image_id.startswith(self.mm_hash + ".")
            ):
                raise RefFormatError(f"raw_image_id {self.raw_image_id!r} is not mm_hash + extension")
            payload = b64u_encode(cjson(self.payload).encode("ascii"))
            fields = [
                self.run_id,
                self.family,
                self.fingerprint,
                self.modality,
                self.mm_hash,
                self.raw_image_id,
            ]
            return "mmraw:v2:" + ":".join(str(f) for f in fields) + ":" + payload
        if format == "json":
            obj: dict[str, Any] = {
                "family": self.family,
                "modality": self.modality,
                "mm_hash": self.mm_hash,
                "payload": _thaw(self.payload),
            }
            if self.family is None:
                raise RefFormatError("the json form needs a family")
            if self.raw_image_data is not None:
                obj["raw_image_data"] = self.raw_image_data
            elif self.raw_image_uri is not None:
                obj["raw_image_uri"] = self.raw_image_uri
            else:
                raise RefFormatError("the json form needs raw_image_uri or raw_image_data")
            if include_fingerprint and self.fingerprint is not None:
                obj["fingerprint"] = self.fingerprint
            return "mmraw:" + cjson(obj)
        raise RefFormatError(f"unknown ref format {format!r}")

    # -- reading ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> RawMMRef:
        """Every supported form (refs.md §3.2, §3.3), checked field by field. No file access."""
        if not isinstance(text, str):
            raise RefFormatError(f"a ref is a string, got {type(text).__name__}")
        if len(text) > MAX_REF_CHARS:
            raise LimitExceededError(f"ref longer than {MAX_REF_CHARS} characters")
        if text.startswith("mmfile:"):
            raise RefFormatError("mmfile refs (processed feature files) are not supported")
        if not text.startswith("mmraw:"):
            raise RefFormatError("not an mmraw ref")
        rest = text[len("mmraw:") :]
        if rest.startswith("{"):
            return cls._from_json(strict_json_object(rest), "unwrapped")
        if rest.startswith("v2:"):
            return cls._parse_v2(text)
        if rest.startswith("v1:"):
            return cls._parse_v1(text)
        if rest.startswith("v3:"):
            return cls._from_json(strict_json_object(b64u_decode(rest[3:])), "v3")
        if _VERSION.match(rest):
            raise RefFormatError(f"unsupported ref version {rest.split(':', 1)[0]!r}")
        if rest and _B64U.fullmatch(rest):
            return cls._from_json(strict_json_object(b64u_decode(rest)), "unversioned")
        raise RefFormatError("malformed mmraw ref")

    @classmethod
    def _parse_v2(cls, text: str) -> RawMMRef:
        fields = text.split(":")
        if len(fields) != 9:
            raise RefFormatError(f"mmraw:v2 has 9 ':'-separated fields, got {len(fields)}")
        _, _, run_id, family, fingerprint, modality, mm_hash, raw_image_id, payload = fields
        _check("payload", payload, _B64U)
        return cls(
            run_id,
            family,
            fingerprint,
            modality,
            mm_hash,
            raw_image_id,
            strict_json_object(b64u_decode(payload)),
        )

    @classmethod
    def _parse_v1(cls, text: str) -> RawMMRef:
        fields = text.split(":")
        if len(fields) != 8:
            raise RefFormatError(f"mmraw:v1 has 8 ':'-separated fields, got {len(fields)}")
        _, _, run_id, fingerprint, modality, mm_hash, raw_image_id, thw = fields
        if modality != "image":
            raise RefFormatError("mmraw:v1 refs carry images only")
        dims = thw.split("x")
        if len(dims) != 3 or not all(
            d.isdigit() and d.isascii() and len(d) <= 9 and int(d) >= 1 for d in dims
        ):
            raise RefFormatError(f"invalid mmraw:v1 grid {show(thw)}")
        grid = [int(d) for d in dims]
        return cls(run_id, None, fingerprint, modality, mm_hash, raw_image_id, {"image_grid_thw": [grid]})

    @classmethod
    def _from_json(cls, obj: dict[str, Any], form: str) -> RawMMRef:
        required, optional = {
            "v3": (
                {"family", "fingerprint", "modality", "mm_hash", "payload"},
                {"run_id", "raw_image_id", "raw_uri"},
            ),
            "unversioned": (
                {"family", "fingerprint", "modality", "mm_hash", "payload", "raw_image_uri"},
                set(),
            ),
            "unwrapped": (
                {"family", "modality", "mm_hash", "payload"},
                {"fingerprint", "raw_image_uri", "raw_image_data"},
            ),
        }[form]
        keys = set(obj)
        if not required <= keys or not keys <= required | optional:
            unknown = sorted(keys - required - optional)
            raise RefFormatError(f"{form} ref keys: missing {sorted(required - keys)}, unknown {unknown}")
        if not isinstance(obj["payload"], dict):
            raise RefFormatError("payload must be a JSON object")
        for key in obj.keys() - {"payload"}:  # null is not an absent field
            if not isinstance(obj[key], str):
                raise RefFormatError(f"{key} must be a string, got {type(obj[key]).__name__}")
        if form == "v3":
            if "raw_image_id" not in obj and "raw_uri" not in obj:
                raise RefFormatError("v3 refs need raw_image_id or raw_uri")
            return cls(
                obj.get("run_id"),
                obj["family"],
                obj["fingerprint"],
                obj["modality"],
                obj["mm_hash"],
                obj.get("raw_image_id"),
                obj["payload"],
                obj.get("raw_uri"),
            )
        if form == "unwrapped" and ("raw_image_uri" in obj) == ("raw_image_data" in obj):
            raise RefFormatError("unwrapped refs need exactly one of raw_image_uri and raw_image_data")
        return cls(
            None,
            obj["family"],
            obj.get("fingerprint"),
            obj["modality"],
            obj["mm_hash"],
            None,
            obj["payload"],
            obj.get("raw_image_uri"),
            raw_image_data=obj.get("raw_image_data"),
        )


# -- envelopes ----------------------------------------------------------------------------------


def raw_mm_item(
    *,
    modality: str,
    family: str,
    layout_fingerprint: str,
    payload: Mapping[str, Any],
    vllm_modality: str | None = None,
    raw_uri: str | None = None,
    raw_image_id: str | None = None,
) -> dict[str, Any]:
    """The `prime_raw_mm_item` envelope; the ref keys come together or not at all."""
    item: dict[str, Any] = {
        "kind": KIND,
        "version": 1,
        "modality": _check("modality", modality, _NAME),
        "family": _check("family", family, _NAME),
        "layout_fingerprint": _check("layout_fingerprint", layout_fingerprint, _FINGERPRINT),
        "payload": _thaw(payload),
    }
    _check_plain(item["payload"], "payload")
    if vllm_modality is not None:
        item["vllm_modality"] = _check("vllm_modality", vllm_modality, _NAME)
    if (raw_uri is None) != (raw_image_id is None):
        raise RefFormatError("raw_uri and raw_image_id come together")
    if raw_uri is not None and raw_image_id is not None:
        _check("raw_image_id", raw_image_id, _READ_ID)
        if uri_basename(raw_uri) != raw_image_id:
            raise RefFormatError("raw_uri's basename must equal raw_image_id")
        item.update({"raw_uri": raw_uri, "raw_image_id": raw_image_id, MARKER_KEY: MARKER})
    return item


@dataclass(frozen=True, slots=True)
class RawMMItem:
    """A validated envelope (refs.md §4.3)."""

    kind: str
    version: int
    modality: str
    family: str
    layout_fingerprint: str | None
    payload: Mapping[str, Any]
    vllm_modality: str | None
    raw_uri: str | None
    raw_image_id: str | None
    has_ref: bool

    @property
    def feature_modality(self) -> str:
        return self.vllm_modality or self.modality


_ITEM_KEYS = {
    "kind",
    "version",
    "modality",
    "family",
    "layout_fingerprint",
    "payload",
    "vllm_modality",
    *_REF_KEYS,
}
_PRUNED_KEYS = {"kind", "family", "payload", "vllm_modality", "raw_image_uri"}


def parse_raw_mm_item(obj: Any, *, accept_pruned: bool = False, modality: str | None = None) -> RawMMItem:
    """Validates an envelope (refs.md §4.3). `modality` is the mm_items key, needed for the
    pruned form that later upstream revisions wrote (`accept_pruned=True`)."""
    if not isinstance(obj, Mapping):
        raise RefFormatError(f"an envelope is a dict, got {type(obj).__name__}")
    for key, value in obj.items():
        if (
            key in _TENSOR_KEYS
            or isinstance(value, bytes | bytearray | memoryview)
            or hasattr(value, "__array__")
        ):
            raise RefFormatError(
                f"processed tensors or binary values ({key!r}) are not allowed in a raw item"
            )
    if obj.get("kind") != KIND:
        raise RefFormatError(f"kind must be {KIND!r}")
    keys = set(obj)
    pruned = "version" not in keys and "raw_image_uri" in keys
    if pruned:
        if not accept_pruned:
            raise RefFormatError("pruned envelopes need accept_pruned=True")
        if not keys <= _PRUNED_KEYS or "payload" not in keys or "family" not in keys:
            raise RefFormatError(f"pruned envelope keys: {sorted(keys)}")
        if modality is None:
            raise RefFormatError("a pruned envelope needs modality= (its mm_items key)")
        uri = obj["raw_image_uri"]
        raw_uri, raw_image_id, version, fingerprint, has_ref = uri, uri_basename(uri), 1, None, True
        item_modality = _check("modality", modality, _NAME)
    else:
        unknown = keys - _ITEM_KEYS
        missing = {"kind", "version", "modality", "family", "layout_fingerprint", "payload"} - keys
        if unknown or missing:
            raise RefFormatError(f"envelope keys: missing {sorted(missing)}, unknown {sorted(unknown)}")
        version = obj["version"]
        if type(version) is not int or version != 1:
            raise RefFormatError(f"version must be the int 1, got {show(version)}")
        item_modality = _check("modality", obj["modality"], _NAME)
        fingerprint = _check("layout_fingerprint", obj["layout_fingerprint"], _FINGERPRINT)
        present = [k in keys for k in _REF_KEYS]
        if any(present) and not all(present):
            raise RefFormatError("raw_uri, raw_image_id and the marker come together")
        has_ref = all(present)
        raw_uri = raw_image_id = None
        if has_ref:
            if obj[MARKER_KEY] != MARKER:
                raise RefFormatError(f"{MARKER_KEY} must be {MARKER!r}")
            raw_uri = obj["raw_uri"]
            raw_image_id = _check("raw_image_id", obj["raw_image_id"], _READ_ID)
            if uri_basename(raw_uri) != raw_image_id:
                raise RefFormatError("raw_uri's basename must equal raw_image_id")
    family = _check("family", obj["family"], _NAME)
    payload = obj["payload"]
    if not isinstance(payload, Mapping):
        raise RefFormatError("payload must be a mapping")
    _check_plain(payload, "payload")
    vllm_modality = obj.get("vllm_modality")
    if vllm_modality is not None:
        _check("vllm_modality", vllm_modality, _NAME)
    item = RawMMItem(
        kind=KIND,
        version=version,
        modality=item_modality,
        family=family,
        layout_fingerprint=fingerprint,
        payload=_freeze(payload),
        vllm_modality=vllm_modality,
        raw_uri=raw_uri,
        raw_image_id=raw_image_id,
        has_ref=has_ref,
    )
    payload_grid(family, payload, vllm_modality)
    return item


def payload_grid(
    family: str, payload: Mapping[str, Any], vllm_modality: str | None = None
) -> tuple[int, int, int]:
    """The family's payload keys and shapes (refs.md §4.2); returns the image grid."""
    fam = FAMILIES.get(family) if isinstance(family, str) else None
    if fam is None:
        raise LayoutError(f"unknown family {show(family)}")
    grid = fam.payload_grid(payload, vllm_modality)
    if (
        not isinstance(grid, list | tuple)
        or len(grid) != 1
        or not isinstance(grid[0], list | tuple)
        or len(grid[0]) != 3
        or not all(type(v) is int and 1 <= v <= MAX_GRID for v in grid[0])
        or grid[0][0] != 1
    ):
        raise LayoutError(
            f"an image payload holds one grid [[1, h, w]] of ints in 1..{MAX_GRID}, got {show(grid)}"
        )
    return (grid[0][0], grid[0][1], grid[0][2])


def descriptor_only(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an envelope without the ref keys (and without any pixel_values)."""
    return {k: v for k, v in item.items() if k not in _REF_KEYS and k != "pixel_values"}
