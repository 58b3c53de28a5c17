"""Issue 11: one store interface, two backends. The store tests here run against both the local
directory and a real S3 API (moto's server, started on 127.0.0.1 by the tests), then the
object-store specifics: create-only races, a server that stops mid-batch, tampering, prefix
escapes, the read-through cache, and a three-process run that shares nothing but the bucket."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import server as moto_server
from PIL import Image

from images import encode, make_image
from rawmm import (
    AssetNotFoundError,
    AssetStore,
    ImageDecodeError,
    IntegrityError,
    Layout,
    LimitExceededError,
    Materializer,
    RawmmError,
    RawMMRef,
    RefFormatError,
    UnsafePathError,
    adapter_for,
)

LAYOUT = Layout.preset("qwen2_5_vl")
ADAPTER = adapter_for(LAYOUT)


class S3:
    """moto's S3 server on 127.0.0.1 (a free port), restartable on the same port."""

    def __init__(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{self.port}"
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    @property
    def options(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "access_key_id": "test",
            "secret_access_key": "test",
            "region": "us-east-1",
            "allow_http": True,
        }

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    server = S3()
    yield server
    server.stop()


StoreFactory = Callable[..., AssetStore]


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of stores at one location (local directory or fresh bucket prefix)."""
    if request.param == "local":
        return lambda **kw: AssetStore(tmp_path / "run", **kw)
    s3: S3 = request.getfixturevalue("s3")
    url = f"s3://{s3.bucket()}/run"
    return lambda **kw: AssetStore(url, storage_options=s3.options, **kw)


def _images(n: int, seed: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        w, h = 40 + 37 * ((seed + i) % 7), 30 + 23 * ((seed + i) % 5)
        im = make_image("RGB", w, h, "noise", seed + i)
        out.append(encode(im, "JPEG" if i % 2 else "PNG"))
    return out


# -- the same store behaviour on both backends ------------------------------------------------------


def test_put_read_find_verify(make_store: StoreFactory) -> None:
    store = make_store()
    data = _images(3)
    assets = [store.put(d) for d in data]
    assert [store.put(d) for d in data] == assets  # idempotent
    for a, d in zip(assets, data, strict=True):
        assert store.read(a.asset_id) == d
        assert store.read(a.uri) == d
        assert store.find(a.mm_hash) == a
        assert a.uri.endswith("/" + a.asset_id)
    assert store.find("c" * 64) is None
    assert store.verify() == []
    arr = np.zeros((5, 7, 3), np.uint8)
    assert store.read(store.put(arr).asset_id).startswith(b"\x89PNG")


def test_missing_and_tampered(make_store: StoreFactory, s3: S3) -> None:
    store = make_store()
    data = _images(1)[0]
    a = store.put(data)
    with pytest.raises(AssetNotFoundError):
        store.read(f"{'d' * 64}.png")
    tampered = data[:-3] + b"xyz"
    if store.is_local:
        assert a.path is not None
        a.path.chmod(0o644)
        a.path.write_bytes(tampered)
    else:
        bucket, key = a.uri[len("s3://") :].split("/", 1)
        s3.client.put_object(Bucket=bucket, Key=key, Body=tampered)
    with pytest.raises(IntegrityError):
        store.read(a.asset_id)
    assert store.verify() == [f"{a.asset_id}: content does not match its hash"]
    store.put(data)  # the right bytes repair it
    assert store.read(a.asset_id) == data
    assert store.verify() == []


def test_byte_cap_on_read(make_store: StoreFactory) -> None:
    data = _images(1)[0]
    a = make_store().put(data)
    with pytest.raises(LimitExceededError):
        make_store(max_bytes=len(data) - 1).read(a.asset_id)


def test_sources_and_caps(make_store: StoreFactory) -> None:
    store = make_store()
    png = _images(1)[0]
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert store.put(data_url) == store.put(png)
    for mode in ("1", "L", "LA", "P", "I;16", "CMYK", "RGBA"):
        im = make_image(mode, 5, 4, "noise", 3)
        assert Image.open(io.BytesIO(store.read(store.put(im).asset_id))).size == (5, 4), mode
    for bad in (Image.new("HSV", (2, 2)), np.zeros((2, 2, 5), np.uint8), 3.5):
        with pytest.raises(ImageDecodeError):
            store.put(bad)
    for bad in ("data:text/plain;base64,aGk=", "data:image/png;base64,@@@@"):
        with pytest.raises(RefFormatError):
            store.put(bad)
    with pytest.raises(UnsafePathError):
        store.put("https://example.com/a.png")
    with pytest.raises(LimitExceededError):
        make_store(max_bytes=100).put(b"x" * 101)


def test_concurrent_writers_and_readers(make_store: StoreFactory) -> None:
    store = make_store()
    data = _images(6, seed=21)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for d in data[i % 3 :] + data[: i % 3]:
                assert store.read(store.put(d).asset_id) == d
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.verify() == []


def test_describe_and_materialize_across_instances(make_store: StoreFactory) -> None:
    writer, reader = make_store(run_id="r"), make_store()
    data = _images(4)
    refs = [ADAPTER.ref(ADAPTER.describe(d, store=writer)).to_string() for d in data]
    for ref, d in zip(refs, data, strict=True):
        out = ADAPTER.materialize(ref, store=reader)
        np.testing.assert_array_equal(out.pixel_values, LAYOUT.pixel_values(d).pixel_values)
    with Materializer(ADAPTER, reader, processor_id="p", threads=2) as m:
        batch = m.materialize(refs)
    expected = np.concatenate([LAYOUT.pixel_values(d).pixel_values for d in data])
    np.testing.assert_array_equal(batch.pixel_values, expected)


# -- object-store specifics -------------------------------------------------------------------------


def test_refs_carry_object_uris_and_escapes_are_refused(s3: S3) -> None:
    bucket, other = s3.bucket(), s3.bucket()
    store = AssetStore(f"s3://{bucket}/run", storage_options=s3.options, run_id="r")
    data = _images(1)[0]
    d = ADAPTER.describe(data, store=store)
    assert d.raw_image_uri == f"s3://{bucket}/run/assets/images/{d.asset_id}"
    item = ADAPTER.item(d)
    assert item["raw_uri"] == d.raw_image_uri
    # The same bytes outside the allowed prefix: in another bucket, next to the prefix, above it.
    for key_bucket, key in (
        (other, f"run/assets/images/{d.asset_id}"),
        (bucket, f"elsewhere/{d.asset_id}"),
        (bucket, f"run/assets/{d.asset_id}"),
    ):
        s3.client.put_object(Bucket=key_bucket, Key=key, Body=data)
        uri = f"s3://{key_bucket}/{key}"
        with pytest.raises(UnsafePathError):
            store.read(uri)
        ref = RawMMRef(None, "qwen_vl", None, "image", d.mm_hash, None, dict(d.payload), uri)
        with pytest.raises(UnsafePathError):
            ADAPTER.materialize(ref, store=AssetStore(f"s3://{bucket}/run", storage_options=s3.options))
    for bad in (
        f"s3://{bucket}/run/assets/images/../../elsewhere/{d.asset_id}",
        f"s3://{bucket}/run/assets/images//{d.asset_id}",
        f"s3://{bucket}/run/assets/images/%2e%2e/{d.asset_id}",
        f"s3://{bucket}/run/assets/images/{d.asset_id}?versionId=1",
        "file:///etc/passwd",
    ):
        with pytest.raises(UnsafePathError):
            store.read(bad, expected_hash=d.mm_hash)
    # An allowed second prefix works, and its reads are verified.
    wide = AssetStore(
        f"s3://{bucket}/run",
        storage_options=s3.options,
        allowed_roots=[f"s3://{bucket}/run", f"s3://{other}/run"],
    )
    assert wide.read(f"s3://{other}/run/assets/images/{d.asset_id}") == data


def test_errors_are_typed(s3: S3) -> None:
    missing = AssetStore("s3://no-such-bucket-rawmm/run", storage_options=s3.options)
    with pytest.raises(AssetNotFoundError):
        missing.read(f"{'a' * 64}.png")
    with pytest.raises(RawmmError):
        missing.put(_images(1)[0])
    unreachable = {**s3.options, "endpoint": "http://127.0.0.1:9", "max_retries": 1, "retry_timeout": 2}
    with pytest.raises(RawmmError, match="object store error"):
        AssetStore(f"s3://{s3.bucket()}/run", storage_options=unreachable).put(_images(1)[0])
    with pytest.raises(RawmmError):
        AssetStore("s3://b/run", storage_options={"no_such_option": "x"})
    with pytest.raises(RawmmError, match="object stores"):
        AssetStore("/tmp/rawmm-local", cache_dir="/tmp/rawmm-cache")
    with pytest.raises(RawmmError, match="object-store URLs"):
        AssetStore("/tmp/rawmm-local", storage_options={"region": "x"})


_PUT_CHILD = """
import sys, json
from rawmm import AssetStore
opts, url, seed, tests = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, tests)
from test_object_store import _images
store = AssetStore(url, storage_options=opts)
shared = _images(6, seed=100)            # every process writes these
own = _images(3, seed=1000 + 10 * seed)  # and its own
print(json.dumps([store.put(d).asset_id for d in shared + own]))
"""


def test_create_only_races_between_processes(s3: S3) -> None:
    url = f"s3://{s3.bucket()}/run"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PUT_CHILD,
                json.dumps(s3.options),
                url,
                str(i),
                str(Path(__file__).parent),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = AssetStore(url, storage_options=s3.options)
    assert len({tuple(r[:6]) for r in results}) == 1
    assert len({a for r in results for a in r}) == 6 + 8 * 3
    assert store.verify() == []
    for data in _images(6, seed=100):
        assert store.read(store.put(data).asset_id) == data


def test_server_stopped_mid_batch(s3: S3) -> None:
    url = f"s3://{s3.bucket()}/run"
    opts = {**s3.options, "max_retries": 1, "retry_timeout": 2, "timeout": "3s", "connect_timeout": "1s"}
    store = AssetStore(url, storage_options=opts)
    data = _images(10, seed=7)
    done = [store.put(d) for d in data[:5]]
    s3.stop()
    try:
        with pytest.raises(RawmmError, match="object store error"):
            for d in data[5:]:
                store.put(d)
    finally:
        s3.restart()
    for d in data:  # the retry succeeds, and nothing partial sits under a final key
        store.put(d)
    assert store.verify() == []
    assert all(store.read(a.asset_id) for a in done)


def test_read_through_cache(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/run"
    data = _images(6, seed=3)
    assets = [AssetStore(url, storage_options=s3.options).put(d) for d in data]
    cache = tmp_path / "cache"
    reader = AssetStore(url, storage_options=s3.options, cache_dir=cache, cache_bytes=10**9)
    for a, d in zip(assets, data, strict=True):
        assert reader.read(a.asset_id) == d
    s3.stop()
    try:  # served from the cache alone, verified
        for a, d in zip(assets, data, strict=True):
            assert reader.read(a.asset_id) == d
        victim = cache / assets[0].asset_id
        victim.write_bytes(b"corrupt")
        with pytest.raises(RawmmError):  # a corrupt entry is dropped, then the store is asked
            reader.read(assets[0].asset_id)
        assert not victim.exists()
    finally:
        s3.restart()
    assert reader.read(assets[0].asset_id) == data[0]
    # LRU by bytes: a cap of two images keeps the two most recently used.
    small = tmp_path / "small"
    capped = AssetStore(
        url, storage_options=s3.options, cache_dir=small, cache_bytes=len(data[4]) + len(data[5])
    )
    for a in assets:
        capped.read(a.asset_id)
    assert sorted(p.name for p in small.iterdir()) == sorted(a.asset_id for a in assets[4:])


def test_from_env_and_cli_take_urls(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3.bucket()
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("VF_RENDERER_IMAGE_OFFLOAD_DIR", f"s3://{bucket}/run_abc/assets/images")
    store = AssetStore.from_env()
    assert store.location == f"s3://{bucket}/run_abc/assets/images" and store.run_id == "abc"
    monkeypatch.delenv("VF_RENDERER_IMAGE_OFFLOAD_DIR")
    monkeypatch.setenv("PRIME_RL_RUN_DIR", f"s3://{bucket}/run_xyz")
    store = AssetStore.from_env()
    assert store.location == f"s3://{bucket}/run_xyz/assets/images" and store.run_id == "xyz"
    img = tmp_path / "a.png"
    img.write_bytes(_images(1)[0])
    cli = [sys.executable, "-m", "rawmm.cli"]
    env = {**os.environ}
    out = subprocess.run(
        [*cli, "describe", "--model", "qwen2_5_vl", "--store", f"s3://{bucket}/cli", str(img)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    d = json.loads(out.stdout.splitlines()[0])
    assert d["raw_image_uri"].startswith(f"s3://{bucket}/cli/assets/images/")
    ref = ADAPTER.ref(ADAPTER.describe(img.read_bytes(), store=AssetStore(f"s3://{bucket}/cli"))).to_string()
    npz = tmp_path / "out.npz"
    subprocess.run(
        [*cli, "materialize", ref, "--model", "qwen2_5_vl", "--store", f"s3://{bucket}/cli", "-o", str(npz)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    np.testing.assert_array_equal(
        np.load(npz)["pixel_values"], LAYOUT.pixel_values(img.read_bytes()).pixel_values
    )
    verify = subprocess.run(
        [*cli, "store", "verify", "--store", f"s3://{bucket}/cli"], capture_output=True, text=True, env=env
    )
    assert verify.returncode == 0, verify.stderr


_NODE = """
import sys, json, numpy as np
from pathlib import Path
from rawmm import AssetStore, Layout, Materializer, adapter_for
role, url, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
adapter = adapter_for(Layout.preset("qwen2_5_vl"))
if role == "renderer":
    store = AssetStore(url, run_id="sim")
    refs = [adapter.ref(adapter.describe(p.read_bytes(), store=store)).to_string()
            for p in sorted((work / "images").iterdir())]
    (work / "refs.json").write_text(json.dumps(refs))
else:
    store = AssetStore(url, cache_dir=work / f"cache-{role}")
    refs = json.loads((work / "refs.json").read_text())
    with Materializer(adapter, store, processor_id="sim", threads=2) as m:
        out = m.materialize(refs)
    np.save(work / f"{role}.npy", out.pixel_values)
"""


def test_three_nodes_share_only_the_bucket(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/run"
    (tmp_path / "images").mkdir()
    data = _images(64, seed=11)
    for i, d in enumerate(data):
        (tmp_path / "images" / f"{i:02d}.img").write_bytes(d)
    env = {**os.environ, **s3.env}

    def node(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", _NODE, role, url, str(tmp_path)], env=env, text=True)

    assert node("renderer").wait(timeout=300) == 0
    trainers = [node("trainer0"), node("trainer1")]
    assert [p.wait(timeout=300) for p in trainers] == [0, 0]
    expected = np.concatenate([LAYOUT.pixel_values(d).pixel_values for d in data])
    for role in ("trainer0", "trainer1"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{role}.npy"), expected)
        assert len(list((tmp_path / f"cache-{role}").iterdir())) == 64
