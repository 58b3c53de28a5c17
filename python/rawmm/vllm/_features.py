"""The `features` payload of vLLM's token endpoint built from refs: uint8 patches (what vLLM's
Qwen-VL processor emits itself, its model normalising them), serialised by vLLM's own encoder.
For a client and server that share no store; needs vLLM and torch in the client's environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..adapters import Adapter, Materializer
from ..errors import LayoutError
from ..store import AssetStore


def features(
    multi_modal_data: Mapping[str, Any],
    *,
    adapter: Adapter,
    store: AssetStore | None,
    uuids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`multi_modal_data`: `rawmm.renderer.attach_refs`' dict (refs and placeholders). `uuids`:
    the items' hashes for vLLM's cache (default: rawmm's `uuid_of`)."""
    if adapter.family != "qwen_vl":
        raise LayoutError(f"uint8 features are built for Qwen-VL layouts, not {adapter.family}")
    import torch
    from vllm.entrypoints.scale_out.token_in_token_out.mm_serde import encode_mm_kwargs_item

    # vLLM's Qwen-VL field layout, as its Qwen2/2.5/3-VL processors declare it.
    from vllm.model_executor.models.qwen2_vl import _create_qwen2vl_field_factory
    from vllm.multimodal.inputs import MultiModalKwargsItems

    from ._client import uuid_of

    fm = adapter.feature_modality
    refs = list(multi_modal_data["refs"][fm])
    store = store if store is not None else AssetStore.from_env()
    with Materializer(adapter, store, processor_id="rawmm.vllm.features", cache_bytes=0) as m:
        got = m.materialize(refs, dtype="uint8")
    grids = torch.from_numpy(np.ascontiguousarray(got.grid_thw))
    inputs = {"pixel_values": torch.from_numpy(got.pixel_values), "image_grid_thw": grids}
    config = _create_qwen2vl_field_factory(adapter.layout.knobs["merge_size"])(inputs)
    items = MultiModalKwargsItems.from_hf_inputs(inputs, config)["image"]
    hashes = (
        list(uuids)
        if uuids is not None
        else [uuid_of(h, adapter.layout.fingerprint) for h in multi_modal_data["mm_hashes"][fm]]
    )
    placeholders = [
        {"offset": int(p["offset"]), "length": int(p["length"])}
        for p in multi_modal_data["mm_placeholders"][fm]
    ]
    return {
        "mm_hashes": {"image": hashes},
        "mm_placeholders": {"image": placeholders},
        "kwargs_data": {"image": [encode_mm_kwargs_item(item) for item in items]},
    }
