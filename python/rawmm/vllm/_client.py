"""`generate`: renderers.client.generate (renderers 0.1.12) with refs on the wire instead of pixels.

The renderer renders with `rawmm.renderer.GridProcessor` (placeholder counts from the image size,
no pixels), the images are described into the store, and the request to vLLM's token endpoint
carries one placeholder token per image plus one `content_parts` entry per image: the ref and a
`uuid` naming the asset and the layout. vLLM expands each placeholder itself; the expanded prompt
it returns must equal the rendered one, or the call fails (a layout the server does not serve).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..adapters import Adapter, adapter_for
from ..errors import LayoutError, RefFormatError
from ..renderer import GridProcessor, attach_refs
from ..store import AssetStore
from ._features import features

TRANSPORTS = ("refs", "features")
# vLLM's clamp for a missing logprob: never evidence of the sampled token (renderers does the same).
_LOGPROB_SENTINEL = -9999.0
_max_len_cache: dict[tuple[str, str], int | None] = {}
_max_len_lock = asyncio.Lock()


def uuid_of(mm_hash: str, layout_fingerprint: str) -> str:
    """vLLM's cache key for a ref's image: the asset and the layout it is processed under (vLLM
    uses a request's uuid as the item's hash as is)."""
    return f"rawmm-{layout_fingerprint}-{mm_hash}"


def _adapter(renderer: Any, adapter: Adapter | None) -> Adapter:
    if adapter is not None:
        return adapter
    processor = getattr(renderer, "_processor", None)
    if isinstance(processor, GridProcessor):
        return adapter_for(processor.image_processor.layout)
    raise LayoutError(
        "rawmm.vllm.generate needs the layout: build the renderer with processor=GridProcessor(layout) "
        "or pass adapter="
    )


def _collapse(
    prompt: Sequence[int], placeholders: Sequence[Mapping[str, int]]
) -> tuple[list[int], list[int]]:
    """One placeholder token per image, as vLLM's processor expects before it expands them, and
    where each image's token is in the result."""
    out: list[int] = []
    spots: list[int] = []
    cursor = 0
    for p in sorted(placeholders, key=lambda p: p["offset"]):
        start, end = p["offset"], p["offset"] + p["length"]
        run = prompt[start:end]
        if start < cursor or end > len(prompt) or len(set(run)) != 1:
            raise RefFormatError(f"placeholder {dict(p)} is not a run of one token in the prompt")
        out += prompt[cursor:start]
        spots.append(len(out))
        out.append(run[0])
        cursor = end
    return out + list(prompt[cursor:]), spots


def _expand(
    prompt: Sequence[int], spots: Sequence[int], counts: Sequence[int]
) -> tuple[list[int], list[tuple[int, int]]]:
    """What vLLM makes of a collapsed prompt: each image's token repeated as many times as the
    layout gives it tokens; and the (offset, length) of each run."""
    out: list[int] = []
    ranges = []
    cursor = 0
    for spot, n in zip(spots, counts, strict=True):
        out += prompt[cursor:spot]
        ranges.append((len(out), n))
        out += [prompt[spot]] * n
        cursor = spot + 1
    return out + list(prompt[cursor:]), ranges


async def _max_prompt_len(client: Any, model: str) -> int | None:
    """vLLM's max_model_len from GET /v1/models, once per (server, model); None when unknown."""
    key = (str(getattr(client, "base_url", "")), model)
    async with _max_len_lock:
        if key not in _max_len_cache:
            value = None
            try:
                cards = (await client.get("/models", cast_to=dict)).get("data") or []
                card = next((c for c in cards if isinstance(c, Mapping) and c.get("id") == model), {})
                raw = card.get("max_model_len")
                value = raw if isinstance(raw, int) and raw > 0 else None
            except Exception:  # an engine without the endpoint: no pre-flight check
                value = None
            _max_len_cache[key] = value
        return _max_len_cache[key]


def _logprobs(
    choice: Mapping[str, Any], completion_ids: list[int], malformed: type[Exception]
) -> list[float]:
    """The sampled tokens' logprobs from the token endpoint's `tokens` output mode."""
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list) or len(content) != len(completion_ids):
        raise malformed("the engine's logprobs do not hold one entry per completion token")
    out = []
    for i, (entry, token) in enumerate(zip(content, completion_ids, strict=True)):
        value = entry.get("logprob") if isinstance(entry, Mapping) else None
        if not isinstance(entry, Mapping) or entry.get("token_id") != token:
            raise malformed(f"logprobs entry {i} is not for completion token {token}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise malformed(f"logprobs entry {i} has no finite logprob")
        if value == _LOGPROB_SENTINEL:
            raise malformed(f"logprobs entry {i} carries no sampling evidence")
        out.append(float(value))
    return out


async def generate(
    *,
    client: Any,
    renderer: Any,
    messages: list[Any],
    model: str,
    store: AssetStore | None = None,
    prompt_ids: list[int] | None = None,
    multi_modal_data: Any = None,
    prompt_attribution: Any = None,
    tools: list[Any] | None = None,
    sampling_params: dict[str, Any] | None = None,
    cache_salt: str | None = None,
    priority: int | None = None,
    extra_headers: dict[str, str] | None = None,
    max_prompt_len: int | None = None,
    process_multimodal: bool = True,
    adapter: Adapter | None = None,
    run_id: str | None = None,
    transport: str = "refs",
) -> dict[str, Any]:
    """renderers.client.generate's keywords and return dict, with images sent as refs.

    `store`: where images are described into (None: `AssetStore.from_env()`); the server
    resolves the refs from the same store (its RAWMM_STORE). `adapter`: the layout, when the
    renderer's processor is not a `GridProcessor`. `transport="features"`: for a server that
    shares no store, the uint8 patches as vLLM's own `features` payload (needs vLLM and torch
    here). `process_multimodal` is accepted for compatibility: images are never processed here.
    The result's `multi_modal_data` holds the envelopes, `mm_hashes` and `refs`
    (`rawmm.renderer.attach_refs`) for the trainer's Materializer."""
    from renderers.base import ToolCallParseStatus
    from renderers.client import MalformedGenerateResponseError, OverlongPromptError

    del process_multimodal
    if transport not in TRANSPORTS:
        raise LayoutError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if tools and not getattr(renderer, "supports_tools", True):
        raise ValueError(f"{type(renderer).__name__} does not support tools")
    adapter = _adapter(renderer, adapter)
    if prompt_ids is None:
        rendered = renderer.render(messages, tools=tools, add_generation_prompt=True)
        prompt, prompt_attribution, mm = list(rendered.token_ids), rendered, rendered.multi_modal_data
    else:
        prompt, mm = list(prompt_ids), multi_modal_data
    has_images = mm is not None and not (hasattr(mm, "is_empty") and mm.is_empty())
    if has_images and not (isinstance(mm, Mapping) and "refs" in mm):
        store = store if store is not None else AssetStore.from_env()
        mm = attach_refs(mm, messages, adapter, store, run_id=run_id)
    fm = adapter.feature_modality
    refs: list[str] = list(mm["refs"].get(fm, [])) if has_images else []
    holders: list[Mapping[str, int]] = list(mm["mm_placeholders"].get(fm, [])) if has_images else []
    hashes: list[str] = list(mm["mm_hashes"].get(fm, [])) if has_images else []
    uuids = [uuid_of(h, adapter.layout.fingerprint) for h in hashes]
    # The prompt the server must end up with: each image's placeholder run as long as its
    # token count (Qwen renders it so already; Kimi renders one <|media_pad|>).
    counts = list(mm.get("num_tokens", {}).get(fm, [])) if has_images else []
    collapsed, spots = _collapse(prompt, holders)
    expected, ranges = _expand(collapsed, spots, counts or [h["length"] for h in holders])

    if max_prompt_len is None:
        max_prompt_len = await _max_prompt_len(client, model)
    if max_prompt_len is not None and len(expected) > max_prompt_len:
        raise OverlongPromptError(prompt_len=len(expected), max_prompt_len=max_prompt_len)

    sp = dict(sampling_params or {})
    sp["stop_token_ids"] = renderer.get_stop_token_ids()
    sp["logprobs"] = 1
    sp.setdefault("skip_special_tokens", False)
    body: dict[str, Any] = {"model": model, "sampling_params": sp, "return_token_ids": True}
    sent = expected
    if refs and transport == "refs":
        sent = collapsed
        body["content_parts"] = [
            {"type": "image_url", "url": ref, "uuid": u} for ref, u in zip(refs, uuids, strict=True)
        ]
    elif refs:
        body["features"] = features(mm, adapter=adapter, store=store, uuids=uuids)
    body["token_ids"] = sent
    if cache_salt is not None:
        body["cache_salt"] = cache_salt
    if priority is not None:
        body["priority"] = priority

    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    options = {"headers": extra_headers} if extra_headers else None
    post: dict[str, Any] = {"cast_to": dict, "body": body}
    if options:
        post["options"] = options
    data = await client.post(f"{base}/inference/v1/generate", **post)

    served = data.get("prompt_token_ids")
    if served != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(served or [], expected, strict=False)) if a != b), None
        )
        raise LayoutError(
            f"the server's prompt ({len(served or [])} tokens) differs from the rendered one "
            f"({len(expected)} tokens; first difference at {first}): the server does not serve this layout"
        )
    placeholders = data.get("mm_placeholders") or {}
    placed = sorted((p["offset"], p["length"]) for runs in placeholders.values() for p in runs)
    if refs and placed != ranges:
        raise LayoutError(f"the server placed the images at {placed}, the layout at {ranges}")

    choice = (data.get("choices") or [{}])[0]
    completion_ids = list(choice.get("token_ids") or [])
    completion_logprobs = _logprobs(choice, completion_ids, MalformedGenerateResponseError)
    parsed = renderer.parse_response(completion_ids, prompt_ids=expected, tools=tools)
    finish_reason = choice.get("finish_reason")
    if finish_reason == "stop" and any(tc.status == ToolCallParseStatus.OK for tc in parsed.tool_calls):
        finish_reason = "tool_calls"
    return {
        "request_id": data.get("request_id") or "",
        "usage": data.get("usage"),
        "prompt_ids": expected,
        "renderer_prompt_ids": sent if "content_parts" in body else None,
        "mm_placeholders": placeholders or None,
        "completion_ids": completion_ids,
        "completion_logprobs": completion_logprobs,
        "content": parsed.content,
        "reasoning_content": parsed.reasoning_content,
        "tool_calls": parsed.tool_calls,
        "finish_reason": finish_reason,
        "reasoning_complete": parsed.reasoning_complete,
        "routed_experts": choice.get("routed_experts"),
        "sampling_mask": choice.get("sampling_mask"),
        "multi_modal_data": mm if has_images else None,
        "prompt_attribution": prompt_attribution,
    }
