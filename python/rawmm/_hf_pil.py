"""rawmm's subclasses of transformers' PIL-backend image processors (see `_hf_processors`):
`Qwen2VLImageProcessorPil`, and GLM-V's and Gemma 4's, made on first access. Their own module, like
transformers' backends: each exposes its processor's `...Kwargs` class by name, and the two
backends name theirs alike."""

from __future__ import annotations

from typing import Any

from transformers.image_processing_base import BatchFeature
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorKwargs,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil as _HFQwen2VLImageProcessorPil,
)

from ._hf_processors import CLASSES, _family_class, _rawmm_preprocess

__all__ = ["Qwen2VLImageProcessorKwargs", "Qwen2VLImageProcessorPil"]


class Qwen2VLImageProcessorPil(_HFQwen2VLImageProcessorPil):
    """transformers' `Qwen2VLImageProcessorPil`, its pixels computed by rawmm (Pillow-exact)."""

    # Keyword-only pass-through: transformers calls `_preprocess(images, **kwargs)`.
    def _preprocess(self, images: list[Any], **kwargs: Any) -> BatchFeature:  # type: ignore[override]
        data = _rawmm_preprocess("pil", images, kwargs)
        if data is None:
            return super()._preprocess(images, **kwargs)
        return BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))


def __getattr__(name: str) -> Any:
    if name in CLASSES and name.endswith("Pil"):
        return _family_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
