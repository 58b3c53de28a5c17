"""The media connector vLLM loads as "rawmm" (`VLLM_MEDIA_CONNECTOR=rawmm`): refs resolve from the
store named by RAWMM_STORE and reach vLLM's processor as the RGB raster `materialize` resizes;
every other URL goes to vLLM's own connector, allowlists unchanged. Imported by vLLM only."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from types import FrameType
from typing import Any

import vllm.envs as envs
from PIL import Image
from vllm.config import ModelConfig
from vllm.exceptions import VLLMUnprocessableEntityError, VLLMValidationError
from vllm.multimodal.media import MediaConnector
from vllm.multimodal.media.base import MediaWithBytes
from vllm.multimodal.media.connector import global_thread_pool
from vllm.multimodal.media.image import ImageMediaIO

from ..adapters import Adapter, adapter_for
from ..errors import (
    AssetNotFoundError,
    ImageDecodeError,
    IntegrityError,
    LayoutError,
    RawmmError,
    UnsafePathError,
)
from ..families import MODEL_TYPES
from ..layout import Layout
from ..store import AssetStore

# Refs are recognised by their scheme alone; rawmm's parser decides the rest (refs.md §3).
REF_PREFIXES = ("mmraw:", "mmfile:")
# The ref names something that cannot be served (422, as vLLM answers a media URL it cannot
# fetch); any other rawmm error is a malformed or refused request (400).
_UNPROCESSABLE = (AssetNotFoundError, IntegrityError, UnsafePathError, ImageDecodeError)


def is_ref(url: object) -> bool:
    return isinstance(url, str) and url.startswith(REF_PREFIXES)


@functools.cache
def store() -> AssetStore:
    """The process's store: RAWMM_STORE (a directory or an object-store URL; credentials from
    the standard environment) with the RAWMM_MAX_* caps."""
    location = os.environ.get("RAWMM_STORE")
    if not location:
        raise RawmmError(
            "RAWMM_STORE is not set: the rawmm media connector has no store to resolve refs from"
        )
    caps: dict[str, Any] = AssetStore.env_caps()
    return AssetStore(location, **caps)


@functools.cache
def served_adapter(model_type: str, processor_config: str) -> Adapter:
    """The adapter of the served model's image processor: its preprocessor_config.json as vLLM
    read it (model folder or hub), the server's --mm-processor-kwargs over it, and vLLM's backend
    (torchvision, as wherever torch is installed)."""
    if model_type not in MODEL_TYPES:
        raise LayoutError(f"the served model_type {model_type!r} is not a family rawmm serves")
    config = json.loads(processor_config)
    return adapter_for(Layout.from_preprocessor_config(config, model=MODEL_TYPES[model_type]))


def _adapter_of(config: ModelConfig) -> Adapter:
    mm = config.multimodal_config
    overrides = (mm.mm_processor_kwargs if mm is not None else None) or {}
    return served_adapter(
        str(getattr(config.hf_config, "model_type", "")),
        json.dumps({**config.hf_image_processor_config, **overrides}, sort_keys=True),
    )


def _caller_model_config() -> ModelConfig | None:
    """The ModelConfig of whoever builds this connector. vLLM builds it from its content parser,
    whose tracker holds the served model's config, but passes only media options; the frames up
    the stack are where that config is."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        config = getattr(owner, "model_config", None)
        if isinstance(config, ModelConfig):
            return config
        frame = frame.f_back
    return None


class RawmmMediaConnector(MediaConnector):  # type: ignore[misc]
    """vLLM's MediaConnector, plus `mmraw:` refs for images."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model_config = _caller_model_config()

    def load_from_url(self, url: str, media_io: Any, *, fetch_timeout: int | None = None) -> Any:
        if is_ref(url):
            return self._load_ref(url, media_io)
        return super().load_from_url(url, media_io, fetch_timeout=fetch_timeout)

    async def load_from_url_async(self, url: str, media_io: Any, *, fetch_timeout: int | None = None) -> Any:
        if is_ref(url):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(global_thread_pool, self._load_ref, url, media_io)
        return await super().load_from_url_async(url, media_io, fetch_timeout=fetch_timeout)

    def _load_ref(self, url: str, media_io: Any) -> MediaWithBytes[Image.Image]:
        if not isinstance(media_io, ImageMediaIO):
            raise VLLMValidationError("rawmm refs carry images only", parameter="url", value=url[:200])
        if self._model_config is None:
            raise RawmmError("the rawmm media connector could not find the served model's config")
        # A server without a store or serving a model rawmm does not know is misconfigured: a
        # 500 naming it, not the client's error.
        assets, adapter = store(), _adapter_of(self._model_config)
        try:
            cap = envs.VLLM_MAX_IMAGE_PIXELS
            decoded = adapter.image(url, store=assets, max_pixels=cap if cap > 0 else None)
        except RawmmError as e:
            message = f"rawmm {type(e).__name__}: {e}"
            error = VLLMUnprocessableEntityError if isinstance(e, _UNPROCESSABLE) else VLLMValidationError
            raise error(message, parameter="image_url", value=url[:200]) from None
        # Processed by vLLM as is (already RGB); the fingerprint keeps vLLM's content hash of a
        # ref's image apart from the same bytes decoded by vLLM's own rules.
        return MediaWithBytes(
            Image.fromarray(decoded.rgb), decoded.data, {"rawmm_layout": adapter.layout.fingerprint}
        )
