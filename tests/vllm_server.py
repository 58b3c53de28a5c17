"""The tests' side of a real vLLM server (vllm/serve.py starts it in vLLM's environment, `make
vllm-env`): the environment check, and the client helpers the local-store and object-store server
tests share."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from images import encode, make_image
from rawmm import AssetStore, Layout, adapter_for
from rawmm.renderer import GridProcessor

sys.path.insert(0, str(Path(__file__).parent / "vllm"))
import serve
from serve import OFFLINE, SIDE

VLLM_PYTHON = os.environ.get("RAWMM_VLLM_PYTHON")


def vllm_python() -> str:
    if not VLLM_PYTHON:
        if os.environ.get("CI"):
            pytest.fail("RAWMM_VLLM_PYTHON is not set: `make test` installs vLLM and sets it")
        pytest.skip("vLLM's environment is not installed (make vllm-env); `make test` runs this")
    return VLLM_PYTHON


def side(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    """Runs vllm_side.py in vLLM's environment."""
    run = subprocess.run(
        [vllm_python(), str(SIDE), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE, **(env or {})},
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-4000:]


def build_model(folder: Path) -> Path:
    return serve.build_model(vllm_python(), folder)


def say(config: pytest.Config, text: str) -> None:
    """A line on pytest's terminal, whatever output capturing does (CI logs show it)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)


class Server(serve.Server):
    def __init__(self, model: Path, log: Path, env: dict[str, str], config: pytest.Config) -> None:
        super().__init__(vllm_python(), model, log, env)
        say(config, f"vLLM server ({log.parent.name}) up in {self.started_s:.0f} s")


# -- the client side, shared by the local-store and object-store servers -----------------------

SAMPLES = Path(__file__).parent.parent / "python" / "rawmm" / "samples"
SAMPLING = {"max_tokens": 8, "temperature": 0.0}
QUESTION = "What do these show?"


def rgba_png() -> bytes:
    """Every alpha value, over a gradient: compositing on white is exercised everywhere."""
    im = make_image("RGBA", 301, 181, "gradient", seed=3)
    im.putalpha(Image.fromarray(np.arange(301 * 181, dtype=np.int64).reshape(181, 301).astype(np.uint8)))
    return encode(im, "PNG")


IMAGES: dict[str, tuple[bytes, str]] = {
    "photo": ((SAMPLES / "landscape.jpg").read_bytes(), "image/jpeg"),
    "screenshot": ((SAMPLES / "chart.png").read_bytes(), "image/png"),
    "exif_rotated": ((SAMPLES / "rotated.jpg").read_bytes(), "image/jpeg"),
    "rgba": (rgba_png(), "image/png"),
}


def data_url(name: str) -> str:
    data, mime = IMAGES[name]
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class Env:
    """A running server, its model folder and the client's view of the store it serves from
    (`store_dir`: RAWMM_STORE when it is a directory)."""

    def __init__(self, server: Server, model: Path, store: AssetStore, store_dir: Path | None = None) -> None:
        from transformers import AutoTokenizer

        self.server, self.model, self.store, self.store_dir = server, model, store, store_dir
        self.layout = Layout.from_preprocessor_config(model)
        self.adapter = adapter_for(self.layout)
        self.tokenizer = AutoTokenizer.from_pretrained(model)

    def ref(self, name: str) -> str:
        return self.ref_of(IMAGES[name][0])

    def ref_of(self, data: bytes) -> str:
        return self.adapter.ref(self.adapter.describe(data, store=self.store)).to_string()

    def ids(self, images: int = 1) -> list[int]:
        t = self.tokenizer
        one = t.convert_tokens_to_ids(["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"])
        return [t.convert_tokens_to_ids("<|im_start|>"), *one * images, *t.encode("Describe.")]

    def token_generate(self, parts: list[dict[str, Any]], *, status: int = 200) -> dict[str, Any]:
        body = {
            "model": str(self.model),
            "token_ids": self.ids(len(parts)),
            "sampling_params": {**SAMPLING, "logprobs": 1},
            "content_parts": parts,
            "return_token_ids": True,
        }
        r = self.server.post("/inference/v1/generate", body)
        assert r.status_code == status, r.text[:2000]
        return dict(r.json())

    def chat(self, url: str) -> dict[str, Any]:
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe."}]
        body = {
            "model": str(self.model),
            "messages": [{"role": "user", "content": content}],
            **SAMPLING,
            "logprobs": True,
        }
        r = self.server.post("/v1/chat/completions", body)
        assert r.status_code == 200, r.text[:2000]
        return dict(r.json())


def completion(out: dict[str, Any]) -> tuple[list[int], list[float]]:
    choice = out["choices"][0]
    return choice["token_ids"], [e["logprob"] for e in choice["logprobs"]["content"]]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class TextMode:
    """renderers' own client reads logprob tokens as "token_id:N": the token endpoint writes them
    so with `output_mode="text"` (and a server started with --return-tokens-as-token-ids)."""

    def __new__(cls, base_url: str) -> Any:
        from openai import AsyncOpenAI

        class Client(AsyncOpenAI):
            async def post(self, path: str, *args: Any, body: Any = None, **kw: Any) -> Any:
                if path.endswith("/inference/v1/generate"):
                    body = {**body, "output_mode": "text"}
                return await super().post(path, *args, body=body, **kw)

        return Client(base_url=base_url, api_key="none")


def messages(names: list[str]) -> list[dict[str, Any]]:
    parts = [{"type": "image_url", "image_url": {"url": data_url(n)}} for n in names]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]}]


def renderers_pair(env: Env) -> tuple[Any, Any]:
    """Qwen3-VL renderers: one on rawmm's GridProcessor, one on the HF processor."""
    from renderers.qwen3_vl import Qwen3VLRenderer
    from transformers import AutoProcessor

    grid = Qwen3VLRenderer(env.tokenizer, processor=GridProcessor(env.layout))
    hf = Qwen3VLRenderer(env.tokenizer, processor=AutoProcessor.from_pretrained(env.model))
    return grid, hf


def rawmm_generate(env: Env, renderer: Any, msgs: list[dict[str, Any]]) -> dict[str, Any]:
    from openai import AsyncOpenAI

    import rawmm.vllm

    client = AsyncOpenAI(base_url=f"{env.server.url}/v1", api_key="none")
    return dict(
        run(
            rawmm.vllm.generate(
                client=client,
                renderer=renderer,
                messages=msgs,
                model=str(env.model),
                store=env.store,
                sampling_params=SAMPLING,
            )
        )
    )


def renderers_generate(env: Env, renderer: Any, msgs: list[dict[str, Any]]) -> dict[str, Any]:
    from renderers.client import generate

    client = TextMode(f"{env.server.url}/v1")
    return dict(
        run(
            generate(
                client=client,
                renderer=renderer,
                messages=msgs,
                model=str(env.model),
                sampling_params=SAMPLING,
                process_multimodal=False,
            )
        )
    )


KEYS = ("prompt_ids", "completion_ids", "completion_logprobs", "content", "finish_reason")
