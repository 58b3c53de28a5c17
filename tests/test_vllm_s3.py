"""Issue 18, object storage: the vLLM round trip with `RAWMM_STORE=s3://...` against moto's S3
server (started here on 127.0.0.1); the server reads its credentials and endpoint from the
standard AWS environment, the client writes through its own AssetStore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from images import encode, make_image
from rawmm import AssetStore
from test_object_store import S3
from vllm_server import (
    IMAGES,
    KEYS,
    Env,
    Server,
    build_model,
    completion,
    data_url,
    messages,
    rawmm_generate,
    renderers_generate,
    renderers_pair,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("vllm_s3")
    model = build_model(tmp / "model")
    s3 = S3()
    try:
        url = f"s3://{s3.bucket()}/run"
        variables = {"VLLM_MEDIA_CONNECTOR": "rawmm", "RAWMM_STORE": url, **s3.env}
        server = Server(model, tmp / "server.log", variables, request.config)
        try:
            env = Env(server, model, AssetStore(url, storage_options=s3.options))
            env.s3 = s3  # type: ignore[attr-defined]
            yield env
        finally:
            server.stop()
    finally:
        s3.stop()


def test_round_trip_through_the_bucket(env: Env) -> None:
    grid, hf = renderers_pair(env)
    msgs = messages(list(IMAGES))
    ours = rawmm_generate(env, grid, msgs)
    theirs = renderers_generate(env, hf, msgs)
    for key in KEYS:
        assert ours[key] == theirs[key], key
    assert all(r.startswith("mmraw:v2:") for r in ours["multi_modal_data"]["refs"]["image"])


def test_bucket_errors_are_4xx(env: Env, tmp_path: Path) -> None:
    data = encode(make_image("RGB", 64, 48, "noise", seed=21), "PNG")
    d = env.adapter.describe(data, store=env.store)
    bucket, _, prefix = env.store.location.removeprefix("s3://").partition("/")
    env.s3.client.put_object(Bucket=bucket, Key=f"{prefix}/{d.asset_id}", Body=data[:-20] + bytes(20))  # type: ignore[attr-defined]
    tampered = env.adapter.ref(d).to_string()
    elsewhere = AssetStore(tmp_path / "elsewhere")
    unknown = env.adapter.ref(
        env.adapter.describe(encode(make_image("RGB", 40, 30, seed=22)), store=elsewhere)
    )
    unknown = unknown.to_string()
    good = completion(env.token_generate([{"type": "image_url", "url": data_url("photo")}]))
    for url, error in ((tampered, "IntegrityError"), (unknown, "AssetNotFoundError")):
        out = env.token_generate([{"type": "image_url", "url": url}], status=422)
        assert f"rawmm {error}" in out["error"]["message"]
        assert completion(env.token_generate([{"type": "image_url", "url": env.ref("photo")}])) == good
