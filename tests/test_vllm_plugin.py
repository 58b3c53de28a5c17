"""Issue 18, without a server: what the media connector hands vLLM (`Adapter.image`, the RGB raster
`materialize` resizes), the Materializer's uint8 output, the client's prompt collapsing, the
GridProcessor's EXIF rule, and the plugin's import and start-up behaviour. The real-server round
trip is tests/test_vllm_server.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from PIL import Image

from images import encode, kinds, make_image, modes, seeds
from rawmm import (
    AssetStore,
    ImageDecodeError,
    IntegrityError,
    Layout,
    LayoutError,
    LimitExceededError,
    Materializer,
    RefFormatError,
    adapter_for,
)
from rawmm.pixels import decode_rgb
from rawmm.renderer import GridProcessor
from rawmm.vllm import uuid_of
from rawmm.vllm._client import _collapse, _expand
from test_claims import palette_png

LAYOUT = Layout.preset("qwen3_vl")
SAVE_AS = {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF"}


def exif_jpeg(orientation: int, w: int = 90, h: int = 50) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(make_image("RGB", w, h, "gradient", orientation), "JPEG", exif=exif.tobytes(), quality=95)


@given(
    mode=modes,
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    kind=kinds,
    seed=seeds,
    policy=st.sampled_from(["composite_white", "drop"]),
)
@example(mode="RGBA", w=1, h=1, kind="noise", seed=0, policy="composite_white")
@example(mode="P+tRNS", w=1, h=199, kind="blocks", seed=1, policy="composite_white")
@example(mode="LA", w=199, h=1, kind="gradient", seed=2, policy="drop")
@example(mode="I;16", w=3, h=200, kind="noise", seed=3, policy="composite_white")
def test_decode_rgb_is_what_the_pipeline_resizes(
    mode: str, w: int, h: int, kind: str, seed: int, policy: str
) -> None:
    """vLLM is handed `decode_rgb`'s raster: the pipeline on it must equal the pipeline on the
    encoded bytes, for every mode and both alpha policies."""
    assume(max(w, h) < 200 * min(w, h))  # Qwen's aspect-ratio limit
    assume(mode != "PA")  # no encoder writes PA
    layout = LAYOUT.replace(alpha_policy=policy)
    data = encode(make_image(mode, w, h, kind, seed), SAVE_AS.get(mode.split("+")[0], "PNG"))
    rgb = decode_rgb(data, exif=True, composite=policy == "composite_white")
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert np.array_equal(
        layout.pixel_values(rgb, dtype="uint8").pixel_values,
        layout.pixel_values(data, dtype="uint8").pixel_values,
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_rgb_applies_exif(orientation: int) -> None:
    data = exif_jpeg(orientation)
    rgb = decode_rgb(data, exif=True, composite=True)
    assert rgb.shape[:2] == ((90, 50) if orientation >= 5 else (50, 90))
    assert np.array_equal(
        LAYOUT.pixel_values(rgb, dtype="uint8").pixel_values,
        LAYOUT.pixel_values(data, dtype="uint8").pixel_values,
    )


def test_decode_rgb_typed_errors() -> None:
    with pytest.raises(ImageDecodeError):
        decode_rgb(b"not an image", exif=True, composite=True)
    with pytest.raises(ImageDecodeError):  # tRNS longer than 256: transformers fails too
        decode_rgb(palette_png(bytes(300)), exif=True, composite=True)


def test_adapter_image_checks_like_materialize(tmp_path: object) -> None:
    store = AssetStore(str(tmp_path))
    adapter = adapter_for(LAYOUT)
    data = encode(make_image("RGBA", 120, 70, "gradient", 4))
    d = adapter.describe(data, store=store)
    got = adapter.image(adapter.ref(d).to_string(), store=store)
    assert got.data == data
    assert np.array_equal(
        LAYOUT.pixel_values(got.rgb, dtype="uint8").pixel_values,
        LAYOUT.pixel_values(data, dtype="uint8").pixel_values,
    )
    with pytest.raises(LayoutError):  # another layout's ref (its fingerprint)
        adapter_for(Layout.preset("qwen2_5_vl")).image(adapter.ref(d).to_string(), store=store)
    with pytest.raises(LimitExceededError):  # the server's cap, below the image
        adapter.image(adapter.ref(d).to_string(), store=store, max_pixels=100)
    (store.images_dir / d.asset_id).write_bytes(data[:-1] + b"\0")
    with pytest.raises(IntegrityError):
        adapter.image(adapter.ref(d).to_string(), store=store)


def test_materializer_uint8(tmp_path: object) -> None:
    store = AssetStore(str(tmp_path))
    adapter = adapter_for(LAYOUT)
    blobs = [
        encode(make_image(m, 90 + 31 * i, 40 + 17 * i, "noise", i)) for i, m in enumerate(["RGB", "LA", "P"])
    ]
    blobs.append(exif_jpeg(6))
    refs = [adapter.ref(adapter.describe(b, store=store)).to_string() for b in blobs]
    expected = np.concatenate([LAYOUT.pixel_values(b, dtype="uint8").pixel_values for b in blobs])
    with Materializer(adapter, store, processor_id="m") as m:
        got = m.materialize(refs, dtype="uint8")
        assert got.pixel_values.dtype == np.uint8 and np.array_equal(got.pixel_values, expected)
        again = m.materialize(refs, dtype="uint8")  # from the cache
        assert np.array_equal(again.pixel_values, expected)
        floats = m.materialize(refs)  # the same refs' float32 entries are their own
        assert floats.pixel_values.dtype == np.float32
        assert np.array_equal(
            floats.pixel_values, np.concatenate([LAYOUT.pixel_values(b).pixel_values for b in blobs])
        )
        out = np.empty_like(expected)
        assert m.materialize(refs, dtype="uint8", out=out).pixel_values is out
        assert np.array_equal(out, expected)
        with pytest.raises(LayoutError):
            m.materialize(refs, dtype="uint8", out=np.empty(expected.shape, np.float32))
        with pytest.raises(LayoutError):
            m.materialize(refs, dtype="float16")


def test_collapse_and_expand() -> None:
    """Qwen renders each image's run expanded, Kimi one <|media_pad|>: both are sent with one
    placeholder per image, and the server's prompt is each run at the layout's token count."""
    prompt = [1, 2, 9, 9, 9, 3, 9, 9, 4]
    holders = [{"offset": 2, "length": 3}, {"offset": 6, "length": 2}]
    collapsed, spots = _collapse(prompt, holders)
    assert (collapsed, spots) == ([1, 2, 9, 3, 9, 4], [2, 4])
    assert _expand(collapsed, spots, [3, 2]) == (prompt, [(2, 3), (6, 2)])
    kimi = [1, 7, 2, 7, 3]  # one pad each, 4 and 1 tokens once expanded
    collapsed, spots = _collapse(kimi, [{"offset": 1, "length": 1}, {"offset": 3, "length": 1}])
    assert collapsed == kimi
    assert _expand(collapsed, spots, [4, 1]) == ([1, 7, 7, 7, 7, 2, 7, 3], [(1, 4), (6, 1)])
    for bad in ({"offset": 1, "length": 3}, {"offset": 7, "length": 5}):
        with pytest.raises(RefFormatError):
            _collapse(prompt, [bad])
    with pytest.raises(RefFormatError):  # overlapping
        _collapse(prompt, [{"offset": 2, "length": 3}, {"offset": 3, "length": 1}])


def test_uuid_names_asset_and_layout() -> None:
    h = "a" * 64
    assert uuid_of(h, LAYOUT.fingerprint) != uuid_of(h, Layout.preset("qwen2_5_vl").fingerprint)
    assert uuid_of(h, LAYOUT.fingerprint) != uuid_of("b" * 64, LAYOUT.fingerprint)


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_grid_processor_follows_the_layouts_exif_rule(orientation: int) -> None:
    """Renderers load images as stored; the grid must be the oriented image's when the layout
    applies EXIF (as describe, materialize and vLLM do), the stored one's when it ignores it."""
    im = Image.open(__import__("io").BytesIO(exif_jpeg(orientation, 200, 60))).convert("RGB")
    for layout, exif in ((LAYOUT, True), (LAYOUT.replace(exif_policy="ignore"), False)):
        grid = GridProcessor(layout).image_processor(images=[im])["image_grid_thw"][0]
        w, h = (60, 200) if exif and orientation >= 5 else (200, 60)
        assert tuple(grid) == layout.image(w, h).grid_thw


def test_import_pulls_neither_vllm_nor_torch() -> None:
    code = "import sys, rawmm, rawmm.vllm; print(sorted(m for m in ('vllm', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generate_needs_a_layout() -> None:
    import asyncio

    from rawmm.vllm import generate

    class Renderer:
        _processor = None

    with pytest.raises(LayoutError, match="GridProcessor"):
        asyncio.run(generate(client=None, renderer=Renderer(), messages=[], model="m"))
    with pytest.raises(LayoutError, match="transport"):
        asyncio.run(generate(client=None, renderer=Renderer(), messages=[], model="m", transport="pixels"))


def test_server_without_store_stops_at_start_up() -> None:
    from vllm_server import vllm_python

    python = vllm_python()
    env = {k: v for k, v in os.environ.items() if k != "RAWMM_STORE"} | {"VLLM_MEDIA_CONNECTOR": "rawmm"}
    code = "from vllm.plugins import load_general_plugins; load_general_plugins()"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0 and "RAWMM_STORE is not set" in out.stderr
    bad = env | {"RAWMM_STORE": "/tmp", "RAWMM_VLLM_PROCESSORS": "yes"}
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=bad, timeout=300)
    assert out.returncode != 0 and "RAWMM_VLLM_PROCESSORS must be 0 or 1" in out.stderr
    code += "; from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY as R"
    code += "; print(R.name2class['rawmm'].__name__)"
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env | {"RAWMM_STORE": "/tmp"}, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("RawmmMediaConnector"), out.stderr[-2000:]


def test_served_layout_is_the_model_folders_with_the_servers_processor_kwargs(tmp_path: Path) -> None:
    """The connector checks refs against the layout vLLM processes with: the model's
    preprocessor_config.json as vLLM read it, with --mm-processor-kwargs over it."""
    from vllm_server import build_model, vllm_python

    python = vllm_python()
    folder = build_model(tmp_path / "model")
    size = {"shortest_edge": 4096, "longest_edge": 65536}
    code = (
        "import json, sys\n"
        "from vllm.config import ModelConfig\n"
        "from rawmm.vllm._connector import _adapter_of\n"
        "m = sys.argv[1]\n"
        "for kw in (None, json.loads(sys.argv[2])):\n"
        "    c = ModelConfig(model=m, tokenizer=m, max_model_len=4096, mm_processor_kwargs=kw)\n"
        "    print(_adapter_of(c).layout.fingerprint)\n"
    )
    out = subprocess.run(
        [python, "-c", code, str(folder), json.dumps({"size": size})],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    served, overridden = out.stdout.split()[-2:]
    config = json.loads((folder / "preprocessor_config.json").read_text())
    assert served == Layout.from_preprocessor_config(folder).fingerprint
    assert (
        overridden == Layout.from_preprocessor_config({**config, "size": size}, model="qwen3_vl").fingerprint
    )
    assert served != overridden


def test_rawmm_processors_serve_vllms_preprocessing_bit_for_bit(tmp_path: Path) -> None:
    """RAWMM_VLLM_PROCESSORS=1: vLLM's own processor for the model runs on rawmm's drop-in class
    and its uint8 patches are the ones transformers' class gives."""
    from vllm_server import build_model, side

    folder = build_model(tmp_path / "model")
    paths = []
    for i, (w, h) in enumerate([(640, 480), (1, 1), (199, 1), (333, 517), (1280, 720)]):
        path = tmp_path / f"{i}.png"
        make_image("RGB", w, h, "gradient" if i % 2 else "noise", i).save(path)
        paths.append(str(path))
    got = {}
    for flag in ("0", "1"):
        out = tmp_path / f"{flag}.npz"
        side("timing", str(folder), str(out), "1", *paths, env={"RAWMM_VLLM_PROCESSORS": flag})
        got[flag] = dict(np.load(out))
    assert str(got["0"]["image_processor"]).startswith("transformers.")
    assert str(got["1"]["image_processor"]) == "rawmm._hf_processors"
    for i in range(len(paths)):
        assert got["1"][f"raw{i}"].dtype == np.uint8
        assert np.array_equal(got["0"][f"raw{i}"], got["1"][f"raw{i}"])
        assert np.array_equal(got["0"][f"grid{i}"], got["1"][f"grid{i}"])
