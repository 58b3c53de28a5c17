"""Model families: one module each (`qwen.py`, `kimi.py`, `glm4v.py`, `gemma4.py`,
`inkling.py`, `nemotron.py`, each a `Family` subclass and its instance, paired with
`rust/core/src/families/<name>.rs`), and the one registry, `FAMILIES` below. Everything else
(`Layout`, configs, adapters, refs) asks the registry, so adding a family adds its modules and
one entry to `_ALL`."""

from __future__ import annotations

from typing import Any

from ..errors import LayoutError
from ._base import Family, Tokenizer
from .gemma4 import GEMMA4
from .glm4v import GLM4V
from .inkling import INKLING
from .kimi import KIMI_K25
from .nemotron import NEMOTRON_H_OMNI
from .qwen import QWEN_VL

__all__ = ["FAMILIES", "MODEL_TYPES", "PRESETS", "PROCESSOR_TYPES", "Family", "Tokenizer", "family"]

_ALL: tuple[Family, ...] = (QWEN_VL, KIMI_K25, GLM4V, GEMMA4, INKLING, NEMOTRON_H_OMNI)

FAMILIES: dict[str, Family] = {f.name: f for f in _ALL}
#: Preset name → (family id, image knobs, video knobs).
PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    model: (f.name, knobs, video) for f in _ALL for model, (knobs, video) in f.presets.items()
}
#: config.json `model_type` → preset name.
MODEL_TYPES: dict[str, str] = {t: model for f in _ALL for t, model in f.model_types.items()}
#: preprocessor_config.json `image_processor_type` → preset name, where the class names one.
PROCESSOR_TYPES: dict[str, str] = {t: model for f in _ALL for t, model in f.processor_types.items()}


def family(name: object) -> Family:
    """The registered family `name`; a `LayoutError` for any other value."""
    f = FAMILIES.get(name) if isinstance(name, str) else None
    if f is None:
        raise LayoutError(f"unknown family {name!r}; expected one of {sorted(FAMILIES)}")
    return f
