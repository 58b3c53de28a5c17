"""rawmm inside vLLM: a plugin that resolves refs, and a client that sends them.

Server side (vLLM's environment with rawmm installed; the entry point
`vllm.general_plugins: rawmm = "rawmm.vllm:register"` makes vLLM call `register` in each of its
processes):

    VLLM_MEDIA_CONNECTOR=rawmm RAWMM_STORE=/runs/r1 python -m vllm.entrypoints.openai.api_server ...

`image_url` parts (chat completions) and `content_parts` (the token endpoint) may then carry
`mmraw:` refs; every other URL is vLLM's own connector's, its allowlists unchanged.

Client side: `generate(...)`, renderers.client.generate's interface with refs on the wire, and
`features(...)`, the uint8 `features` payload for servers that share no store with the client.
Importing this package imports neither vLLM nor torch.
"""

from __future__ import annotations

import os

from ._client import generate, uuid_of
from ._features import features

__all__ = ["features", "generate", "register", "uuid_of"]


def register() -> None:
    """vLLM's plugin hook; idempotent. Registers the media connector "rawmm". With
    VLLM_MEDIA_CONNECTOR=rawmm, a missing RAWMM_STORE stops the server at start-up. With
    RAWMM_VLLM_PROCESSORS=1 (off by default), rawmm's drop-in processors (`rawmm.hf.register`)
    compute vLLM's own Qwen-VL preprocessing, bit for bit."""
    from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY

    from ..errors import RawmmError
    from ._connector import RawmmMediaConnector, store

    MEDIA_CONNECTOR_REGISTRY.register("rawmm")(RawmmMediaConnector)
    if os.environ.get("VLLM_MEDIA_CONNECTOR") == "rawmm":
        store()
    processors = os.environ.get("RAWMM_VLLM_PROCESSORS", "0")
    if processors not in ("0", "1"):
        raise RawmmError(f"RAWMM_VLLM_PROCESSORS must be 0 or 1, got {processors!r}")
    if processors == "1":
        from .. import hf

        hf.register()
