"""Issue 17 §2: a result a caller receives never aliases memory another caller owns.

Threads share one Materializer and reuse their own `out=` arrays the moment a call returns. A
joiner used to copy the leader's pixels out of the leader's caller's array after that caller had
returned and refilled it (NaN images), and a batch that raised returned while workers still
wrote into its caller's arrays. The schedules are the fuzz harness's `materializer` target
(`python -m tests.fuzz --target materializer` runs it for longer; RAWMM_RACE_RUNS sets the runs
per configuration here, 4 by default)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz.targets import Shared
from rawmm import Layout


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    yield Shared(Path(tmp_path_factory.mktemp("shared")))


@pytest.mark.parametrize("threads", [2, 16])
@pytest.mark.parametrize("cache_bytes", [0, 3 << 20, 64 << 20], ids=["off", "3MB", "64MB"])
def test_no_caller_sees_another_callers_buffer(shared: Shared, threads: int, cache_bytes: int) -> None:
    rng = random.Random(threads * 1000 + cache_bytes)
    for _ in range(int(os.environ.get("RAWMM_RACE_RUNS", "4"))):
        assert shared.run(rng, threads, cache_bytes, batches=20) == 0


def test_padded_rows_are_not_shared_either(tmp_path: Path) -> None:
    """The same schedules on Gemma 4, whose every image is padded to the patch budget: the rows
    of a batch come from `Layout.image_rows`, not the grid."""
    shared = Shared(tmp_path, Layout.preset("gemma4", max_soft_tokens=70))
    rng = random.Random(70)
    for _ in range(int(os.environ.get("RAWMM_RACE_RUNS", "4")) // 2 or 1):
        assert shared.run(rng, 16, 3 << 20, batches=20) == 0
