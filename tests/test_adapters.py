"""describe → item/ref → string → parse → materialize, against the reference processors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import QWEN_PRESETS, qwen_reference
from images import encode, make_image
from rawmm import (
    AssetNotFoundError,
    ImageDecodeError,
    IntegrityError,
    Layout,
    LayoutError,
    LimitExceededError,
    RefFormatError,
)
from rawmm.adapters import KimiK25Adapter, Materializer, QwenVLAdapter, adapter_for, cache_key
from rawmm.refs import RawMMRef, descriptor_only
from rawmm.store import AssetStore
from test_kimi import composite, kimi_reference
from test_pixels import png_header


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    return AssetStore(tmp_path / "run", allowed_roots=[tmp_path], run_id="run_test")


def files(tmp_path: Path) -> list[Path]:
    out = []
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, im, fmt, kw in (
        ("photo.jpg", make_image("RGB", 333, 517, "gradient", 1), "JPEG", {"quality": 90}),
        ("rotated.jpg", make_image("RGB", 200, 120, "noise", 2), "JPEG", {"exif": exif.tobytes()}),
        ("alpha.png", make_image("RGBA", 640, 480, "blocks", 3), "PNG", {}),
        ("grey.png", make_image("L", 30, 20, "noise", 4), "PNG", {}),
        ("palette.png", make_image("P+tRNS", 100, 90, "blocks", 5), "PNG", {}),
    ):
        p = tmp_path / name
        p.write_bytes(encode(im, fmt, **kw))
        out.append(p)
    return out


def decoded(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return ImageOps.exif_transpose(im)


@pytest.mark.parametrize("name", [*QWEN_PRESETS, "kimi_k25"])
def test_round_trip_equals_reference(tmp_path: Path, store: AssetStore, name: str) -> None:
    layout = Layout.preset(name)
    adapter = adapter_for(layout)
    for path in files(tmp_path):
        d = adapter.describe(path, store=store)
        assert d.asset_id == f"{d.mm_hash}.{path.suffix[1:]}" and store.read(d.asset_id) == path.read_bytes()
        im = decoded(path)
        assert (d.width, d.height) == im.size and (d.raw_width, d.raw_height) == Image.open(path).size
        text = adapter.ref(d).to_string()
        ref = RawMMRef.parse(text)
        item = adapter.item(d)
        for src in (text, ref, item):
            out = adapter.materialize(src, store=store)
            if layout.family == "qwen_vl":
                want = qwen_reference(layout)(images=[im], return_tensors="np")
                assert np.array_equal(out.pixel_values.view(np.uint32), want["pixel_values"].view(np.uint32))
                assert np.array_equal(out.as_hf_dict()["image_grid_thw"], want["image_grid_thw"])
            else:
                want, grid = kimi_reference(composite(im))
                assert np.array_equal(out.pixel_values.view(np.uint32), want.view(np.uint32))
                assert out.as_hf_dict()["grid_thws"].tolist() == [grid]
            assert tuple(out.grid_thw[0]) == d.grid_thw
        n = layout.placeholder_length(d.image_layout)
        assert adapter.placeholder_length(d.grid_thw) == n
        assert n == (1 if name == "kimi_k25" else d.num_tokens)


def test_describe_sources(tmp_path: Path, store: AssetStore) -> None:
    adapter = QwenVLAdapter(Layout.preset("qwen2_5_vl"))
    path = files(tmp_path)[0]
    data = path.read_bytes()
    a = adapter.describe(path, store=store)
    for src in (
        data,
        path.as_uri(),
        str(path),
        "data:image/jpeg;base64," + __import__("base64").b64encode(data).decode(),
    ):
        assert adapter.describe(src, store=store).mm_hash == a.mm_hash
    pil = adapter.describe(make_image("RGB", 64, 48), store=store)
    assert pil.asset_id.endswith(".png") and pil.grid_thw == adapter.layout.image(64, 48).grid_thw
    # an asset already in the store is not written again
    again = adapter.describe(store.images_dir / a.asset_id, store=store)
    assert again.asset_id == a.asset_id
    assert adapter.item(a, with_ref=False) == descriptor_only(adapter.item(a))


def test_describe_errors(tmp_path: Path, store: AssetStore) -> None:
    adapter = QwenVLAdapter(Layout.preset("qwen2_5_vl"))
    jpeg = encode(make_image("RGB", 64, 64, "noise", 1), "JPEG")
    for bad in (b"", b"definitely not an image", jpeg[:2]):
        with pytest.raises(ImageDecodeError):
            adapter.describe(bad, store=store)
    with pytest.raises(LimitExceededError):
        adapter.describe(png_header(200_000, 200_000, crc_ok=False), store=store)
    with pytest.raises(LayoutError, match="aspect ratio"):
        adapter.describe(encode(make_image("L", 2100, 10), "PNG"), store=store)
    outside = Path("/tmp") / "rawmm-outside-test.png"
    outside.write_bytes(encode(make_image("RGB", 8, 8), "PNG"))
    from rawmm import UnsafePathError

    with pytest.raises(UnsafePathError):
        adapter.describe(outside, store=store)
    outside.unlink()
    assert list(store.images_dir.glob("*")) == [] if store.images_dir.exists() else True


def test_materialize_errors(tmp_path: Path, store: AssetStore) -> None:
    layout = Layout.preset("qwen3_vl")
    adapter = QwenVLAdapter(layout)
    photo = files(tmp_path)[0]
    d = adapter.describe(photo, store=store)
    ref = adapter.ref(d)
    with pytest.raises(LayoutError):
        KimiK25Adapter(Layout.preset("kimi_k25")).materialize(ref, store=store)  # family
    with pytest.raises(LayoutError):
        QwenVLAdapter(layout.replace(max_pixels=1_000_000)).materialize(ref, store=store)  # fingerprint
    wrong_grid = RawMMRef(
        ref.run_id,
        ref.family,
        ref.fingerprint,
        "image",
        ref.mm_hash,
        ref.raw_image_id,
        {"image_grid_thw": [[1, 2, 2]]},
    )
    with pytest.raises(LayoutError, match="grid"):
        adapter.materialize(wrong_grid, store=store)
    with pytest.raises(RefFormatError):
        adapter.materialize(adapter.item(d, with_ref=False), store=store)
    asset = store.images_dir / d.asset_id
    asset.chmod(0o644)
    asset.write_bytes(asset.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError):
        adapter.materialize(ref, store=store)
    asset.unlink()
    with pytest.raises(AssetNotFoundError):
        adapter.materialize(ref, store=store)
    v1 = RawMMRef.parse(f"mmraw:v1:x:{d.layout_fingerprint}:image:{d.mm_hash}:{d.asset_id}:1x2x2")
    with pytest.raises(LayoutError):
        KimiK25Adapter(Layout.preset("kimi_k25")).materialize(v1, store=store)
    # a truncated JPEG stored under its own hash verifies, then fails to decode
    bad = encode(make_image("RGB", 64, 64, "noise", 9), "JPEG")[:400]
    a = store.put(bad)
    broken = RawMMRef(
        "x", "qwen_vl", layout.fingerprint, "image", a.mm_hash, a.asset_id, {"image_grid_thw": [[1, 16, 16]]}
    )
    with pytest.raises(ImageDecodeError):
        adapter.materialize(broken, store=store)


def test_materialize_image_refs(tmp_path: Path, store: AssetStore) -> None:
    adapter = QwenVLAdapter(Layout.preset("qwen2_5_vl"))
    paths = files(tmp_path)[:3]
    ds = [adapter.describe(p, store=store) for p in paths]
    items = [adapter.item(d, with_ref=False) for d in ds]
    mm = {
        "mm_items": {"image": items},
        "mm_hashes": {"image": [d.mm_hash for d in ds]},
        "mm_placeholders": {"image": [{"offset": i * 10, "length": d.num_tokens} for i, d in enumerate(ds)]},
    }
    snapshot = repr(mm)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": str(paths[1])}, {"type": "text", "text": "hi"}],
        },
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": paths[0].as_uri()}}]},
    ]  # the third image is only in the store: found by hash
    out = adapter.materialize_image_refs(mm, messages, store=store)
    assert repr(mm) == snapshot  # the input is not mutated
    for d, item in zip(ds, out["mm_items"]["image"], strict=True):
        assert item["raw_image_id"] == d.asset_id and item["_prime_rl_image_ref"] == "raw_image"
        adapter.materialize(item, store=store)
    with pytest.raises(AssetNotFoundError, match="not found"):
        adapter.materialize_image_refs(
            {**mm, "mm_hashes": {"image": ["0" * 64, *mm["mm_hashes"]["image"][1:]]}}, messages, store=store
        )
    with pytest.raises(RefFormatError):
        adapter.materialize_image_refs({**mm, "mm_hashes": {"image": []}}, messages, store=store)
    swapped = {**mm, "mm_items": {"image": [items[1], items[0], items[2]]}}
    with pytest.raises(LayoutError):
        adapter.materialize_image_refs(swapped, messages, store=store)


def test_cache_key_vector() -> None:
    ref = (
        "mmraw:v2:demo01:qwen_vl:f9befd6e9938d4aabeff6b1025313139:image:f531b9e47004fccda30d996ca0bf046cd4f9"
        "4241ab04843cb055cbc72bec0810:f531b9e47004fccda30d996ca0bf046cd4f94241ab04843cb055cbc72bec0810.png:ey"
        "JpbWFnZV9ncmlkX3RodyI6W1sxLDE2LDE2XV19"
    )
    h = "f531b9e47004fccda30d996ca0bf046cd4f94241ab04843cb055cbc72bec0810"
    key = cache_key(ref, "image", h, 64, "Qwen/Qwen3-VL-8B-Instruct", "f9befd6e9938d4aabeff6b1025313139")
    assert key == "db89941cdca95e80eca743df40883006353e17adabd5855652f9c079ae10c21b"


def test_materializer(tmp_path: Path, store: AssetStore) -> None:
    layout = Layout.preset("qwen2_5_vl")
    adapter = adapter_for(layout)
    ds = [adapter.describe(p, store=store) for p in files(tmp_path)]
    refs = [adapter.ref(d).to_string() for d in ds]
    with Materializer(adapter, store, processor_id="Qwen/Qwen2.5-VL-7B-Instruct", threads=2) as m:
        out = m.materialize(refs[::-1] + refs[:2])
        parts = [adapter.materialize(r, store=store) for r in refs[::-1] + refs[:2]]
        assert np.array_equal(out.pixel_values, np.concatenate([p.pixel_values for p in parts]))
        assert np.array_equal(out.grid_thw, np.concatenate([p.grid_thw for p in parts]))
        assert m.misses == 5 and m.hits == 2
        outer = [("image", d.mm_hash, d.num_tokens) for d in ds]
        m.materialize(refs, outer=outer)
        with pytest.raises(RefFormatError):
            m.materialize(refs[:1], outer=[("video", ds[0].mm_hash, ds[0].num_tokens)])
        with pytest.raises(RefFormatError):
            m.materialize(refs[:1], outer=[("image", "0" * 64, ds[0].num_tokens)])
        with pytest.raises(LayoutError):
            m.materialize(refs[:1], outer=[("image", ds[0].mm_hash, 1)])
        items = [adapter.item(d) for d in ds[:2]]
        assert np.array_equal(m.materialize(items).pixel_values, m.materialize(refs[:2]).pixel_values)


def test_materializer_single_flight_and_bounds(tmp_path: Path, store: AssetStore) -> None:
    adapter = adapter_for(Layout.preset("qwen3_vl"))
    d = adapter.describe(files(tmp_path)[2], store=store)
    ref = adapter.ref(d).to_string()
    calls = []
    real = adapter.materialize

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*a, **k)

    adapter.materialize = counting  # type: ignore[method-assign]
    m = Materializer(adapter, store, processor_id="p", threads=4)
    threads = [threading.Thread(target=lambda: m.materialize([ref])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # eight concurrent requests, one computation
    tiny = Materializer(adapter, store, processor_id="p", cache_bytes=0)
    tiny.materialize([ref])
    tiny.materialize([ref])
    assert len(calls) == 3 and tiny.hits == 0
    m.close()
    tiny.close()


def test_materializer_from_env(tmp_path: Path, store: AssetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = adapter_for(Layout.preset("qwen3_vl"))
    monkeypatch.setenv("PRIME_RL_MM_MATERIALIZE_CACHE_GB", "0")
    assert Materializer.from_env(adapter, store, processor_id="p").cache_bytes == 0
    monkeypatch.setenv("PRIME_RL_MM_MATERIALIZE_CACHE_GB", "0.5")
    assert Materializer.from_env(adapter, store, processor_id="p").cache_bytes == 1 << 29


def test_materializer_bad_inputs(tmp_path: Path, store: AssetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from rawmm import RawmmError

    adapter = adapter_for(Layout.preset("qwen3_vl"))
    monkeypatch.setenv("PRIME_RL_MM_MATERIALIZE_CACHE_GB", "plenty")
    with pytest.raises(RawmmError):
        Materializer.from_env(adapter, store, processor_id="p")
    with Materializer(adapter, store, processor_id="p") as m:
        with pytest.raises(RefFormatError):
            m.materialize(["mmraw:v2:x"], outer=[])
        with pytest.raises(RefFormatError):
            m.materialize([42])


def test_backends_do_not_share_refs_or_cache_entries(tmp_path: Path, store: AssetStore) -> None:
    """The backend is part of the layout fingerprint: a ref described for one backend is refused
    by the other's adapter, and the Materializer's cache keys differ between them."""
    tv = adapter_for(Layout.preset("qwen2_5_vl"))
    pil = adapter_for(Layout.preset("qwen2_5_vl", backend="pil"))
    path = files(tmp_path)[0]
    d_tv, d_pil = tv.describe(path, store=store), pil.describe(path, store=store)
    assert d_tv.mm_hash == d_pil.mm_hash and d_tv.grid_thw == d_pil.grid_thw
    assert d_tv.layout_fingerprint != d_pil.layout_fingerprint
    ref_tv = tv.ref(d_tv).to_string()
    with pytest.raises(LayoutError, match="fingerprint"):
        pil.materialize(ref_tv, store=store)
    keys = {
        cache_key(ref_tv, "image", d_tv.mm_hash, d_tv.num_tokens, "m", a.layout.fingerprint)
        for a in (tv, pil)
    }
    assert len(keys) == 2
    with Materializer(tv, store, processor_id="m", threads=1) as m:
        got = m.materialize([ref_tv]).pixel_values
    assert np.array_equal(got, tv.materialize(ref_tv, store=store).pixel_values)
    assert not np.array_equal(got, pil.materialize(pil.ref(d_pil).to_string(), store=store).pixel_values)
