"""Runs inside the vLLM environment: `rawmm.vllm.generate(..., transport="features")`, the uint8
`features` fallback serialised by vLLM's own encoder, against a running server. Prints one JSON
object: prompt_ids, completion_ids, completion_logprobs.

    python features_client.py SERVER_URL MODEL_DIR STORE_DIR TEXT IMAGE...
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys

from openai import AsyncOpenAI
from renderers.qwen3_vl import Qwen3VLRenderer
from transformers import AutoTokenizer

import rawmm.vllm
from rawmm import AssetStore, Layout
from rawmm.renderer import GridProcessor


async def main() -> None:
    url, model, store_dir, text, *images = sys.argv[1:]
    content = []
    for path in images:
        mime = "image/jpeg" if path.endswith(".jpg") else "image/png"
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        content.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
    messages = [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]
    renderer = Qwen3VLRenderer(
        AutoTokenizer.from_pretrained(model), processor=GridProcessor(Layout.from_preprocessor_config(model))
    )
    out = await rawmm.vllm.generate(
        client=AsyncOpenAI(base_url=f"{url}/v1", api_key="none"),
        renderer=renderer,
        messages=messages,
        model=model,
        store=AssetStore(store_dir),
        sampling_params={"max_tokens": 8, "temperature": 0.0},
        transport="features",
    )
    print(json.dumps({k: out[k] for k in ("prompt_ids", "completion_ids", "completion_logprobs")}))


if __name__ == "__main__":
    asyncio.run(main())
