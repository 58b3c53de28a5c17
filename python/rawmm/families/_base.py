"""What every model family module provides (`Family`), over the shared machinery: the Rust
core (`LayoutCore`, the family's Rust module), `Layout`, `_config`, the adapters and refs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class Family:
    """One model family. Class attributes are its data; methods are the steps that differ
    between families. A family module defines one subclass and one instance of it."""

    #: The family id in fingerprints and refs (the Rust module's `Family::NAME`).
    name: ClassVar[str]
    #: Preset name → (image knobs, video knobs): the hub values of each released checkpoint.
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]]
    #: config.json `model_type` → preset name.
    model_types: ClassVar[dict[str, str]]
    #: preprocessor_config.json `image_processor_type` → preset name, for classes that name one
    #: preset unambiguously (Qwen2-VL's class serves four presets with different videos).
    processor_types: ClassVar[dict[str, str]] = {}
    #: Whether the family has transformers' two backends (the "backend" knob), and if not, why.
    has_backend: ClassVar[bool] = True
    no_backend_reason: ClassVar[str] = ""
    #: vLLM's modality of an item, where it is not "image".
    vllm_modality: ClassVar[str | None] = None
    #: The modality renderers' features carry.
    feature_modality: ClassVar[str] = "image"
    #: The payload key of an image's grid, as the family's processor names it.
    grid_key: ClassVar[str]

    # -- knobs and configs ----------------------------------------------------------------

    def check_video(self, video: Mapping[str, Any]) -> None:
        """Checks a typed video knob set beyond each knob's own type."""

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(image knobs, video knobs) of a preprocessor config over the preset's values;
        `video_cfg`: a folder's video config, None for a dict or a single file; `backend`: the
        caller's choice or the config's, None for the preset's."""
        raise NotImplementedError

    # -- geometry -------------------------------------------------------------------------

    def max_image_rows(self, knobs: Mapping[str, Any]) -> int:
        """An upper bound of `t*h*w` over every image grid of a layout with these knobs."""
        raise NotImplementedError

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        """The core's video layout dict for `n` frames of `w`×`h` at `fps`."""
        raise NotImplementedError

    # -- prompt text ----------------------------------------------------------------------

    def placeholder_text(self, model: str, n: int) -> str:
        """The whole wrapped placeholder of an image with `n` pad tokens."""
        raise NotImplementedError

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        raise NotImplementedError

    def image_pad_token_id(self, model: str) -> int:
        """The id whose run a renderer expands to `num_tokens`."""
        raise NotImplementedError

    def placeholder_length(self, layout: Layout, grid: tuple[int, int, int]) -> int:
        """`mm_placeholders` length of an image of `grid` before the server expands it."""
        raise NotImplementedError

    # -- refs -----------------------------------------------------------------------------

    def payload(self, image_layout: ImageLayout) -> dict[str, Any]:
        """A ref's payload: what the family's processor outputs besides pixels."""
        raise NotImplementedError

    def payload_grid(self, payload: Mapping[str, Any], vllm_modality: str | None) -> Any:
        """The raw grid value of a payload whose keys (and extra values) this checks; refs
        then check its shape."""
        raise NotImplementedError
