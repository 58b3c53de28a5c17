"""The asset store on object storage against the local directory, same run (issue 11).

    python benches/bench_store.py

An S3 API server (moto, in this process, on 127.0.0.1) holds the bucket. For 64 mixed images
(JPEG photos, PNG screenshots, 300..1400 px a side), Qwen2.5-VL preset:
1. describe + put of all 64 (one thread, as a renderer does);
2. materialize of the 64 refs with the Materializer, 2 threads, its pixel cache off: local
   directory; S3 with a cold read-through cache (empty); S3 with a warm one (filled by a
   previous run). Medians of 3 runs each, img/s, and the ratio to the local store.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_s, photo, screenshot
from rawmm import AssetStore, Layout, Materializer, adapter_for


def images() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(64):
        w, h = int(rng.integers(300, 1400)), int(rng.integers(300, 1400))
        buf = io.BytesIO()
        if i % 2:
            photo(w, h, seed=i).save(buf, "JPEG", quality=90)
        else:
            screenshot(w, h, seed=i).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    opts = {
        "endpoint": endpoint,
        "access_key_id": "bench",
        "secret_access_key": "bench",
        "region": "us-east-1",
        "allow_http": True,
    }
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="b", aws_secret_access_key="b", region_name="us-east-1"
    )
    tmp = Path(tempfile.mkdtemp(prefix="rawmm-bench-store-"))
    adapter = adapter_for(Layout.preset("qwen2_5_vl"))
    data = images()
    threads = 2

    def new_bucket() -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=name)
        return f"s3://{name}/run"

    stores = {
        "local": lambda: AssetStore(tmp / f"run-{uuid.uuid4().hex[:6]}", run_id="bench"),
        "s3": lambda: AssetStore(new_bucket(), storage_options=opts, run_id="bench"),
    }
    put_s: dict[str, float] = {}
    refs: dict[str, list[str]] = {}
    locations: dict[str, str] = {}

    for kind, make in stores.items():

        def describe_all(kind: str = kind, make: object = make) -> None:
            store = make()  # type: ignore[operator]
            refs[kind] = [adapter.ref(adapter.describe(d, store=store)).to_string() for d in data]
            locations[kind] = store.location

        put_s[kind] = median_s(describe_all, 3, warmup=0)

    def materialize(store: AssetStore) -> None:
        with Materializer(adapter, store, processor_id="bench", cache_bytes=0, threads=threads) as m:
            m.materialize(refs["s3" if not store.is_local else "local"])

    local = AssetStore(locations["local"], images_subdir="")
    mat = {"local": median_s(lambda: materialize(local), 3)}
    cold = []
    for i in range(3):
        cache = tmp / f"cold-{i}"
        store = AssetStore(locations["s3"], images_subdir="", storage_options=opts, cache_dir=cache)
        cold.append(median_s(lambda store=store: materialize(store), 1, warmup=0))
    mat["s3, cold cache"] = sorted(cold)[1]
    warm_store = AssetStore(locations["s3"], images_subdir="", storage_options=opts, cache_dir=tmp / "warm")
    materialize(warm_store)  # fills the cache
    mat["s3, warm cache"] = median_s(lambda: materialize(warm_store), 3)
    mat["s3, no cache"] = median_s(
        lambda: materialize(AssetStore(locations["s3"], images_subdir="", storage_options=opts)), 3
    )

    n = len(data)
    print(f"## describe + put, {n} images, one thread\n")
    print("| store | img/s | ratio to local |\n|---|---|---|")
    for kind, t in put_s.items():
        print(f"| {kind} | {n / t:.1f} | {put_s['local'] / t:.2f}x |")
    print(f"\n## Materializer, {n} refs, {threads} threads, pixel cache off\n")
    print("| store | img/s | ratio to local |\n|---|---|---|")
    for kind, t in mat.items():
        print(f"| {kind} | {n / t:.1f} | {mat['local'] / t:.2f}x |")
    print(
        f"\n(S3: moto {__import__('moto').__version__} in this process on 127.0.0.1; {os.cpu_count()} cores)"
    )
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
