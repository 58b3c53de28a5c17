"""Refs and envelopes (refs.md §3, §4): the worked example, round trips, every malformed field."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawmm import LayoutError, LimitExceededError, RefFormatError
from rawmm.refs import RawMMRef, cjson, descriptor_only, parse_raw_mm_item, raw_mm_item

H = "f531b9e47004fccda30d996ca0bf046cd4f94241ab04843cb055cbc72bec0810"
FP = "f9befd6e9938d4aabeff6b1025313139"
REF = f"mmraw:v2:demo01:qwen_vl:{FP}:image:{H}:{H}.png:eyJpbWFnZV9ncmlkX3RodyI6W1sxLDE2LDE2XV19"
URI = f"file:///data/outputs/run_demo01/assets/images/{H}.png"


def example() -> RawMMRef:
    return RawMMRef("run_demo01", "qwen_vl", FP, "image", H, f"{H}.png", {"image_grid_thw": [[1, 16, 16]]})


def b64u(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_worked_example_is_byte_identical() -> None:
    ref = example()
    assert ref.run_id == "demo01"
    assert ref.to_string() == REF and len(REF) == 237
    assert RawMMRef.parse(REF) == ref and hash(RawMMRef.parse(REF)) == hash(ref)
    kimi = RawMMRef(
        "demo01",
        "kimi_k25",
        "6458b2b215d334c0385058a4d628ed3f",
        "vision_chunk",
        H,
        f"{H}.png",
        {"grid_thws": [[1, 2, 2]], "num_media_tokens": 1},
    )
    assert kimi.to_string().endswith(":eyJncmlkX3Rod3MiOltbMSwyLDJdXSwibnVtX21lZGlhX3Rva2VucyI6MX0")


def test_ref_is_immutable_and_payload_frozen() -> None:
    ref = example()
    with pytest.raises(AttributeError):
        ref.mm_hash = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ref.payload["image_grid_thw"] = []  # type: ignore[index]
    assert ref.payload_dict == {"image_grid_thw": [[1, 16, 16]]}


@given(
    run=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
    grid=st.tuples(st.just(1), st.integers(1, 500), st.integers(1, 500)),
    ext=st.sampled_from(["png", "jpg", "webp", "gif", "bmp", "tiff", "img"]),
)
def test_v2_round_trip(run: str, grid: tuple[int, int, int], ext: str) -> None:
    if run in ("run_",) or (run.startswith("run_") and len(run) == 4):
        return
    ref = RawMMRef(run, "qwen_vl", FP, "image", H, f"{H}.{ext}", {"image_grid_thw": [list(grid)]})
    text = ref.to_string()
    assert text.count(":") == 8 and RawMMRef.parse(text) == ref


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (REF.replace("mmraw:v2:demo01", "mmraw:v2:demo 01"), RefFormatError),
        (REF.replace(":qwen_vl:", ":qwen/vl:"), RefFormatError),
        (REF.replace(FP, FP.upper()), RefFormatError),
        (REF.replace(FP, FP[:10]), RefFormatError),
        (REF.replace(":image:", "::"), RefFormatError),
        (REF.replace(f":{H}:", f":{H.upper()}:"), RefFormatError),
        (REF.replace(f":{H}.png:", ":../etc/passwd:"), RefFormatError),
        (REF.replace(f":{H}.png:", f":.{H}.png:"), RefFormatError),
        (REF + "=", RefFormatError),
        (REF + "A", RefFormatError),  # length % 4 == 1
        (REF.rsplit(":", 1)[0] + ":eyJhIjoxfR", RefFormatError),  # '{"a":1}' with non-zero trailing bits
        (REF + ":x", RefFormatError),
        (REF.rsplit(":", 1)[0] + ":" + b64u([1, 2]), RefFormatError),  # not an object
        (
            REF.rsplit(":", 1)[0] + ":" + base64.urlsafe_b64encode(b'{"a":1,"a":2}').rstrip(b"=").decode(),
            RefFormatError,
        ),
        (
            REF.rsplit(":", 1)[0] + ":" + base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode(),
            RefFormatError,
        ),
        (REF.rsplit(":", 1)[0] + ":" + b64u({"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}), LimitExceededError),
        ("mmraw:v9:abc", RefFormatError),
        ("mmfile:v1:abc", RefFormatError),
        ("mmraw:", RefFormatError),
        ("mmraw:$$$", RefFormatError),
        ("hello", RefFormatError),
        ("mmraw:v2:" + "a" * 70_000, LimitExceededError),
    ],
)
def test_malformed_refs(bad: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        RawMMRef.parse(bad)


def test_depth_limit_is_sixteen() -> None:
    ok = {"a": 1}
    for _ in range(15):
        ok = {"a": ok}
    prefix = REF.rsplit(":", 1)[0]
    RawMMRef.parse(prefix + ":" + b64u(ok))
    with pytest.raises(LimitExceededError):
        RawMMRef.parse(prefix + ":" + b64u({"a": ok}))
    with pytest.raises(LimitExceededError):
        RawMMRef.parse("mmraw:" + '{"a":' * 10_000 + "1" + "}" * 10_000)  # deeper than the parser


def test_legacy_forms() -> None:
    v1 = RawMMRef.parse(f"mmraw:v1:run_abc:{FP}:image:{H[:32]}:{H[:16]}.png:1x16x16")
    assert (v1.family, v1.run_id, v1.payload_dict) == (None, "abc", {"image_grid_thw": [[1, 16, 16]]})
    with pytest.raises(RefFormatError):
        RawMMRef.parse(f"mmraw:v1:abc:{FP}:video:{H}:{H}.png:1x16x16")
    with pytest.raises(RefFormatError):
        RawMMRef.parse(f"mmraw:v1:abc:{FP}:image:{H}:{H}.png:1x0x16")
    obj = {
        "family": "qwen_vl",
        "fingerprint": FP,
        "modality": "image",
        "mm_hash": H,
        "payload": {"image_grid_thw": [[1, 16, 16]]},
        "raw_uri": URI,
    }
    v3 = RawMMRef.parse("mmraw:v3:" + b64u(obj))
    assert v3.raw_image_uri == URI and v3.run_id is None and v3.raw_image_id is None
    assert (
        RawMMRef.parse("mmraw:v3:" + b64u({**obj, "raw_image_id": f"{H}.png", "run_id": "r"})).run_id == "r"
    )
    with pytest.raises(RefFormatError):
        RawMMRef.parse("mmraw:v3:" + b64u({**obj, "raw_image_id": "other.png"}))  # URI does not name the id
    with pytest.raises(RefFormatError):
        RawMMRef.parse("mmraw:v3:" + b64u({**obj, "extra": 1}))
    unv = {**{k: v for k, v in obj.items() if k != "raw_uri"}, "raw_image_uri": URI}
    assert RawMMRef.parse("mmraw:" + b64u(unv)).raw_image_uri == URI
    unwrapped = {k: v for k, v in unv.items() if k != "fingerprint"}
    ref = RawMMRef.parse("mmraw:" + json.dumps(unwrapped))
    assert ref.fingerprint is None and ref.to_string("json") == "mmraw:" + cjson(unwrapped)
    assert RawMMRef.parse(ref.to_string("json")) == ref
    data = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    inline = RawMMRef.parse(
        "mmraw:"
        + json.dumps({**{k: v for k, v in unwrapped.items() if k != "raw_image_uri"}, "raw_image_data": data})
    )
    assert inline.raw_image_data == data
    for bad_uri in ("http://x/a.png", "file://host/a.png", "file:///a.png?x=1", "file://relative.png"):
        with pytest.raises(RefFormatError):
            RawMMRef.parse("mmraw:" + json.dumps({**unwrapped, "raw_image_uri": bad_uri}))
    with pytest.raises(RefFormatError):
        RawMMRef.parse("mmraw:" + json.dumps({**unwrapped, "raw_image_data": data}))  # both sources
    with pytest.raises(RefFormatError):
        example().to_string("yaml")
    with pytest.raises(RefFormatError):
        v3.to_string()  # v2 needs run_id and raw_image_id


def test_envelope_round_trip_and_validation() -> None:
    item = raw_mm_item(
        modality="image",
        family="qwen_vl",
        layout_fingerprint=FP,
        payload={"image_grid_thw": [[1, 16, 16]]},
        raw_uri=URI,
        raw_image_id=f"{H}.png",
    )
    assert item["_prime_rl_image_ref"] == "raw_image"
    parsed = parse_raw_mm_item(item)
    assert parsed.has_ref and parsed.raw_image_id == f"{H}.png" and parsed.feature_modality == "image"
    bare = descriptor_only(item)
    assert set(bare) == {"kind", "version", "modality", "family", "layout_fingerprint", "payload"}
    assert not parse_raw_mm_item(bare).has_ref
    bad_items = [
        {**item, "version": True},
        {**item, "version": 2},
        {**item, "kind": "other"},
        {**item, "extra": 1},
        {**item, "_prime_rl_image_ref": "yes"},
        {k: v for k, v in item.items() if k != "raw_uri"},
        {**item, "raw_image_id": "other.png"},
        {**item, "pixel_values": [1.0]},
        {**item, "payload": {"image_grid_thw": [[1, 16, 16]], "pixel_values": [0.1]}},
        {**item, "payload": {"image_grid_thw": [[1, 16, float("nan")]]}},
        {**item, "payload": {"x": b"bytes"}},
        {**item, "layout_fingerprint": "XYZ"},
        "not a dict",
    ]
    for bad in bad_items:
        with pytest.raises(RefFormatError):
            parse_raw_mm_item(bad)
    for bad in (
        {**item, "family": "llava"},
        {**item, "payload": {"image_grid_thw": [[1, 16]]}},
        {**item, "payload": {"image_grid_thw": [[1, 16, True]]}},
        {**item, "payload": {"grid": [[1, 16, 16]]}},
        {**item, "family": "kimi_k25", "vllm_modality": "image", "payload": {"grid_thws": [[1, 2, 2]]}},
    ):
        with pytest.raises(LayoutError):
            parse_raw_mm_item(bad)
    with pytest.raises(RefFormatError):
        raw_mm_item(modality="image", family="qwen_vl", layout_fingerprint=FP, payload={}, raw_uri=URI)


def test_pruned_envelopes() -> None:
    pruned = {
        "kind": "prime_raw_mm_item",
        "family": "kimi_k25",
        "vllm_modality": "vision_chunk",
        "payload": {"grid_thws": [[1, 2, 2]]},
        "raw_image_uri": URI,
    }
    with pytest.raises(RefFormatError):
        parse_raw_mm_item(pruned)
    with pytest.raises(RefFormatError):
        parse_raw_mm_item(pruned, accept_pruned=True)
    item = parse_raw_mm_item(pruned, accept_pruned=True, modality="vision_chunk")
    assert (item.version, item.layout_fingerprint, item.raw_image_id) == (1, None, f"{H}.png")
