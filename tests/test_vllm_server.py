"""Issue 18: refs all the way into a real vLLM server. One server (vLLM's own OpenAI server, started
here on the tiny random-weight Qwen3-VL folder) with rawmm's media connector and a local store;
its object-store twin is tests/test_vllm_s3.py. At temperature 0 with logprobs:

- a `data:` URL and an `mmraw:v2` ref of the same image give the same completion and logprobs, on
  the token endpoint and on chat completions;
- `rawmm.vllm.generate` returns what renderers' own `client.generate(process_multimodal=False)`
  returns for the same images as `data:` URLs, with the prompt renderers renders with the HF
  processor, and refs that materialize to the patches vLLM built;
- a repeated image is served from vLLM's processor cache;
- every bad ref is a 4xx naming the rawmm error, and the server answers the next request."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from images import encode, make_image
from rawmm import AssetStore, Layout, Materializer, RawMMRef, adapter_for
from rawmm.refs import cjson
from rawmm.renderer import GridProcessor
from vllm_server import (
    IMAGES,
    KEYS,
    QUESTION,
    SAMPLES,
    SAMPLING,
    SIDE,
    Env,
    Server,
    build_model,
    completion,
    data_url,
    messages,
    rawmm_generate,
    renderers_generate,
    renderers_pair,
    say,
    side,
    vllm_python,
)

# The server's caps (RAWMM_MAX_*), below the client's defaults so that the client can store what
# the server must refuse.
CAP_BYTES, CAP_PIXELS = 1_000_000, 4_000_000


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    tmp = tmp_path_factory.mktemp("vllm_server")
    model = build_model(tmp / "model")
    store_dir = tmp / "store"
    store_dir.mkdir()
    server = Server(
        model,
        tmp / "server.log",
        {
            "VLLM_MEDIA_CONNECTOR": "rawmm",
            "RAWMM_STORE": str(store_dir),
            "RAWMM_MAX_ASSET_BYTES": str(CAP_BYTES),
            "RAWMM_MAX_IMAGE_PIXELS": str(CAP_PIXELS),
        },
        request.config,
    )
    try:
        yield Env(server, model, AssetStore(store_dir), store_dir)
    finally:
        server.stop()


@pytest.mark.parametrize("name", list(IMAGES))
def test_ref_and_data_url_agree_on_the_token_endpoint(env: Env, name: str) -> None:
    by_url = env.token_generate([{"type": "image_url", "url": data_url(name)}])
    by_ref = env.token_generate([{"type": "image_url", "url": env.ref(name)}])
    assert by_ref["prompt_token_ids"] == by_url["prompt_token_ids"]
    assert by_ref["mm_placeholders"] == by_url["mm_placeholders"]
    assert completion(by_ref) == completion(by_url)


def test_images_move_the_logprobs(env: Env) -> None:
    """The equalities above can fail: distinct images give distinct logprobs on this model."""
    got = {
        name: tuple(completion(env.token_generate([{"type": "image_url", "url": env.ref(name)}]))[1])
        for name in IMAGES
    }
    assert len(set(got.values())) == len(IMAGES)


@pytest.mark.parametrize("name", list(IMAGES))
def test_ref_and_data_url_agree_on_chat_completions(env: Env, name: str) -> None:
    by_url, by_ref = env.chat(data_url(name)), env.chat(env.ref(name))
    assert by_ref["usage"]["prompt_tokens"] == by_url["usage"]["prompt_tokens"]
    assert by_ref["choices"][0]["logprobs"] == by_url["choices"][0]["logprobs"]
    assert by_ref["choices"][0]["message"] == by_url["choices"][0]["message"]


@pytest.fixture(scope="module")
def four(env: Env) -> dict[str, Any]:
    """One four-image prompt through both clients, and the HF-processor rendering."""
    grid, hf = renderers_pair(env)
    msgs = messages(list(IMAGES))
    return {
        "rawmm": rawmm_generate(env, grid, msgs),
        "renderers": renderers_generate(env, hf, msgs),
        "hf_prompt": hf.render(msgs, add_generation_prompt=True).token_ids,
    }


def test_generate_matches_renderers_client(four: dict[str, Any]) -> None:
    ours, theirs = four["rawmm"], four["renderers"]
    for key in KEYS:
        assert ours[key] == theirs[key], key
    assert ours["mm_placeholders"] == theirs["mm_placeholders"]
    assert ours["prompt_ids"] == four["hf_prompt"]
    # The request carried one placeholder per image; the server expanded it as the layout says.
    assert ours["renderer_prompt_ids"] == theirs["renderer_prompt_ids"]
    assert len(ours["multi_modal_data"]["refs"]["image"]) == len(IMAGES)


def test_generate_result_materializes_to_vllm_patches(env: Env, four: dict[str, Any], tmp_path: Path) -> None:
    """vLLM's own processor on the same model folder, fed by the rawmm connector (refs) and by
    its own (data: URLs), against the Materializer's uint8 output for the returned refs."""
    refs = four["rawmm"]["multi_modal_data"]["refs"]["image"]
    out = tmp_path / "patches.npz"
    urls = [*refs, *(data_url(n) for n in IMAGES)]
    side(
        "patches",
        str(env.model),
        str(out),
        *urls,
        env={"VLLM_MEDIA_CONNECTOR": "rawmm", "RAWMM_STORE": str(env.store_dir)},
    )
    got = dict(np.load(out))
    with Materializer(env.adapter, env.store, processor_id=str(env.model), cache_bytes=0) as m:
        ours = m.materialize(refs, dtype="uint8")
    rows = np.prod(ours.grid_thw, axis=1)
    mine = np.split(ours.pixel_values, np.cumsum(rows)[:-1])
    for i in range(len(refs)):
        assert np.array_equal(got[f"grid{i}"], ours.grid_thw[i])
        assert got[f"raw{i}"].dtype == np.uint8
        assert np.array_equal(got[f"raw{i}"], mine[i])  # the ref, through the rawmm connector
        assert np.array_equal(got[f"raw{len(refs) + i}"], mine[i])  # the data: URL, vLLM's decode


def test_second_turn_is_served_from_vllms_cache(env: Env, request: pytest.FixtureRequest) -> None:
    grid, hf = renderers_pair(env)
    first = messages(["photo", "rgba"])
    turn1 = rawmm_generate(env, grid, first)
    second = [
        *first,
        {"role": "assistant", "content": turn1["content"]},
        {"role": "user", "content": "And now?"},
    ]
    queries, hits = (
        env.server.metric("vllm:mm_cache_queries_total"),
        env.server.metric("vllm:mm_cache_hits_total"),
    )
    turn2 = rawmm_generate(env, grid, second)
    new_queries = env.server.metric("vllm:mm_cache_queries_total") - queries
    new_hits = env.server.metric("vllm:mm_cache_hits_total") - hits
    say(
        request.config, f"second turn: {new_hits:.0f} of {new_queries:.0f} images from vLLM's processor cache"
    )
    assert new_queries == 2 and new_hits == 2
    reference = renderers_generate(env, hf, second)
    for key in KEYS:
        assert turn2[key] == reference[key], key


def outside_ref(env: Env, tmp: Path) -> str:
    """A ref naming, by URI, a file outside the store (its hash is right)."""
    path = tmp / "outside.png"
    path.write_bytes(IMAGES["rgba"][0])
    ref = RawMMRef.parse(env.ref("rgba"))
    obj = {
        "family": ref.family,
        "modality": "image",
        "mm_hash": ref.mm_hash,
        "payload": ref.payload_dict,
        "raw_image_uri": path.as_uri(),
        "fingerprint": ref.fingerprint,
    }
    return "mmraw:" + cjson(obj)


def tampered_ref(env: Env) -> str:
    data = encode(make_image("RGB", 64, 48, "noise", seed=11), "PNG")
    d = env.adapter.describe(data, store=env.store)
    path = env.store.images_dir / d.asset_id
    path.chmod(0o644)
    path.write_bytes(data[:-20] + bytes(20))
    return env.adapter.ref(d).to_string()


def test_bad_refs_are_4xx_and_the_server_stays_up(env: Env, tmp_path: Path) -> None:
    elsewhere = AssetStore(tmp_path / "elsewhere")
    unknown = env.adapter.ref(
        env.adapter.describe(encode(make_image("RGB", 40, 30, seed=5)), store=elsewhere)
    )
    big_bytes = encode(make_image("RGB", 700, 700, "noise", seed=1), "PNG")
    assert len(big_bytes) > CAP_BYTES
    big_pixels = encode(make_image("RGB", 2500, 2000, "flat", seed=1), "PNG")
    assert len(big_pixels) < CAP_BYTES
    other_layout = adapter_for(Layout.preset("qwen2_5_vl"))
    mismatch = other_layout.ref(other_layout.describe(IMAGES["photo"][0], store=env.store)).to_string()
    traversal = env.ref("photo").split(":")
    traversal[7] = "../../../etc/passwd"
    cases = {
        "malformed": ("mmraw:v2:not:a:ref", 400, "RefFormatError"),
        "traversal": (":".join(traversal), 400, "RefFormatError"),
        "unknown asset": (unknown.to_string(), 422, "AssetNotFoundError"),
        "tampered": (tampered_ref(env), 422, "IntegrityError"),
        "outside the store": (outside_ref(env, tmp_path), 422, "UnsafePathError"),
        "bytes cap": (env.ref_of(big_bytes), 400, "LimitExceededError"),
        "pixel cap": (env.ref_of(big_pixels), 400, "LimitExceededError"),
        "fingerprint mismatch": (mismatch, 400, "LayoutError"),
    }
    good = completion(env.token_generate([{"type": "image_url", "url": data_url("photo")}]))
    for case, (url, status, error) in cases.items():
        out = env.token_generate([{"type": "image_url", "url": url}], status=status)
        assert f"rawmm {error}" in out["error"]["message"], (case, out)
        chat = env.server.post(
            "/v1/chat/completions",
            {
                "model": str(env.model),
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
                "max_tokens": 1,
            },
        )
        assert chat.status_code == status and f"rawmm {error}" in chat.text, (case, chat.text[:500])
        assert completion(env.token_generate([{"type": "image_url", "url": env.ref("photo")}])) == good, case
    # Other URLs stay vLLM's, with its allowlists: no local files without --allowed-local-media-path.
    r = env.server.post(
        "/inference/v1/generate",
        {
            "model": str(env.model),
            "token_ids": env.ids(),
            "sampling_params": SAMPLING,
            "content_parts": [{"type": "image_url", "url": (SAMPLES / "landscape.jpg").as_uri()}],
        },
    )
    assert r.status_code != 200 and "allowed-local-media-path" in r.text


def test_features_fallback_uint8(env: Env, four: dict[str, Any], tmp_path: Path) -> None:
    """No shared store: uint8 patches as vLLM's `features`, built by vLLM's own serialiser (the
    client runs in vLLM's environment, with a store of its own), give the same completion as the
    refs."""
    paths = []
    for name, (data, mime) in IMAGES.items():
        path = tmp_path / f"{name}.{'jpg' if mime == 'image/jpeg' else 'png'}"
        path.write_bytes(data)
        paths.append(str(path))
    client = SIDE.parent / "features_client.py"
    run_ = subprocess.run(
        [
            vllm_python(),
            str(client),
            env.server.url,
            str(env.model),
            str(tmp_path / "client-store"),
            QUESTION,
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run_.returncode == 0, run_.stderr[-4000:]
    got = json.loads(run_.stdout.strip().splitlines()[-1])
    for key in ("prompt_ids", "completion_ids", "completion_logprobs"):
        assert got[key] == four["rawmm"][key], key


def test_generate_with_the_qwen35_renderer(env: Env) -> None:
    """renderers' Qwen3.5 renderer, same images: rawmm's client and renderers' own agree."""
    from renderers.qwen35 import Qwen35Renderer
    from transformers import AutoProcessor

    msgs = messages(["screenshot", "exif_rotated"])
    grid = Qwen35Renderer(env.tokenizer, processor=GridProcessor(env.layout))
    hf = Qwen35Renderer(env.tokenizer, processor=AutoProcessor.from_pretrained(env.model))
    ours, theirs = rawmm_generate(env, grid, msgs), renderers_generate(env, hf, msgs)
    for key in KEYS:
        assert ours[key] == theirs[key], key
    assert ours["prompt_ids"] == hf.render(msgs, add_generation_prompt=True).token_ids
