"""What every model family module provides (`Family`), over the shared machinery: the Rust
core (`LayoutCore`, the family's Rust module), `Layout`, `_config`, the adapters and refs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from .._presets import BACKENDS, LEGACY_BACKEND

if TYPE_CHECKING:
    from .._core import ImageLayout, LayoutCore
    from ..layout import Layout, VideoLayout


def three_floats(v: Any) -> list[float] | None:
    """mean/std as three floats (a scalar broadcasts like numpy and torch do), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return [float(v)] * 3
    if isinstance(v, list | tuple) and len(v) == 3 and all(isinstance(x, int | float) for x in v):
        return [float(x) for x in v]
    return None


def positive_ints(kw: Mapping[str, Any], *names: str) -> dict[str, int] | None:
    """The named keywords when each is a positive int, else None."""
    vals = {n: kw.get(n) for n in names}
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vals.values())
    return vals if ok else None  # type: ignore[return-value]


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
    #: Whether the family has the "backend" knob, and if not, why.
    has_backend: ClassVar[bool] = True
    no_backend_reason: ClassVar[str] = ""
    #: The backends transformers has for it (what `backend=` may name when reading a config).
    backends: ClassVar[tuple[str, ...]] = BACKENDS
    #: The backend a knob set without one means: "pil" for the families whose layouts predate
    #: the knob (their fingerprints, `_presets.LEGACY_BACKEND`), the preset's for later ones.
    default_backend: ClassVar[str] = LEGACY_BACKEND
    #: The resample filter of its processor (the "resample" knob's only value).
    resample: ClassVar[str] = "bicubic"
    #: Whether its processor's `do_resize` must be on (False: its processor has no such switch,
    #: and leaves it None).
    resize_switch: ClassVar[bool] = True
    #: vLLM's modality of an item, where it is not "image".
    vllm_modality: ClassVar[str | None] = None
    #: The modality renderers' features carry.
    feature_modality: ClassVar[str] = "image"
    #: The payload key of an image's grid, as the family's processor names it.
    grid_key: ClassVar[str]
    #: The keys of its processor's output.
    model_input_names: ClassVar[tuple[str, ...]] = ("pixel_values", "image_grid_thw")
    #: Whether a `pixel_values` row interleaves its channels (`(p, p, 3)`) rather than holding
    #: three channel planes.
    channels_last: ClassVar[bool] = False

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

    def video_values(self, layout: Layout, values: np.ndarray, video: VideoLayout) -> np.ndarray:
        """A video's `pixel_values` from the core's `frames_pixel_values` (as they are by default)."""
        return values

    def video_core(self, layout: Layout) -> LayoutCore:
        """The core that packs a video's frames (the layout's own by default)."""
        return layout._core

    def image_rows(self, knobs: Mapping[str, Any], grid: tuple[int, int, int]) -> int:
        """`pixel_values` rows of an image of `grid` (padding included)."""
        return grid[0] * grid[1] * grid[2]

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        """The core's video layout dict for `n` frames of `w`×`h` at `fps`."""
        raise NotImplementedError

    # -- prompt text ----------------------------------------------------------------------

    #: (begin, pad, end) strings and ids of a family whose placeholder is `begin + pad·n + end`
    #: with fixed ids; the three methods below serve it from these.
    wrapped: ClassVar[tuple[tuple[str, str, str], tuple[int, int, int]] | None] = None

    def placeholder_text(self, model: str, n: int) -> str:
        """The whole wrapped placeholder of an image with `n` pad tokens."""
        if self.wrapped is None:
            raise NotImplementedError
        begin, pad, end = self.wrapped[0]
        return begin + pad * n + end

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        if self.wrapped is None:
            raise NotImplementedError
        begin, pad, end = self.wrapped[1]
        return [begin, *([pad] * n), end]

    def image_pad_token_id(self, model: str) -> int:
        """The id whose run a renderer expands to `num_tokens`."""
        if self.wrapped is None:
            raise NotImplementedError
        return self.wrapped[1][1]

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

    def check_normalize(self, knobs: Mapping[str, Any]) -> None:
        """Raises `LayoutError` when uint8 rows of this layout cannot be normalised alone."""

    # -- transformers processors ----------------------------------------------------------

    def call_knobs(self, kw: Mapping[str, Any]) -> dict[str, Any] | None:
        """The layout knobs (over the preset's) of one transformers `_preprocess` call's
        validated keywords (resize, rescale and normalise switches already checked), or None
        when rawmm does not reproduce them."""
        return None

    def hf_outputs(self, layout: Layout, pixel_values: Any, grids: np.ndarray) -> dict[str, Any]:
        """The family's transformers processor dict for a batch's rows and grids."""
        return {"pixel_values": pixel_values, self.grid_key: grids}

    def grid_outputs(self, layout: Layout, grids: np.ndarray) -> dict[str, Any]:
        """What `GridProcessor` returns besides (empty) pixels: the processor's other keys."""
        out = self.hf_outputs(layout, None, grids)
        out.pop("pixel_values", None)
        return out

    def rendered_grid(self, item: Mapping[str, Any]) -> tuple[int, int, int] | None:
        """The grid of an item a renderer emitted with the family's processor output (None
        when the item does not tell)."""
        return tuple(int(v) for v in np.asarray(item[self.grid_key]).reshape(-1)[:3])  # type: ignore[return-value]
