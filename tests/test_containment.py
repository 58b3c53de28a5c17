"""Issue 17 §1: containment is decided on identities, never on text an attacker can name.

The kernel decorates `/proc/self/fd/N` links (`" (deleted)"` after a removed file, a
`(unreachable)` prefix outside the process's root). A check that reads that text and strips a
decoration let a sibling named `<images dir> (deleted)` pass for the images directory itself.
Each name below stands beside the store, holding an image whose real hash the attacker knows,
and every way a ref, an envelope or a caller can name it must be refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rawmm
from images import encode, make_image
from rawmm import AssetStore, Layout, Materializer, RawMMRef, UnsafePathError, adapter_for
from rawmm.refs import raw_mm_item

LAYOUT = Layout.preset("qwen2_5_vl")
ADAPTER = adapter_for(LAYOUT)
BAIT = encode(make_image("RGB", 30, 20, "noise", 7))
BAIT_HASH = rawmm.fingerprint_bytes(BAIT)
GRID = list(LAYOUT.image(30, 20).grid_thw)

#: Decorations the kernel writes into /proc links, as an attacker spells a sibling with them.
DECORATIONS = [" (deleted)", " (deleted) (deleted)", " (unreachable)", "\n(deleted)", "(deleted)"]


def _sibling(store: AssetStore, decoration: str, shape: str) -> Path:
    """The bait beside the store: a file named `<images dir><decoration>` ("file"), a file
    in a directory of that name ("dir"), or the same one level up, beside the run directory
    ("run")."""
    images = store.images_dir
    if shape == "file":
        where = images.with_name(images.name + decoration)
    elif shape == "dir":
        where = images.with_name(images.name + decoration) / f"{BAIT_HASH}.png"
    else:
        run = images.parents[1]
        where = run.with_name(run.name + decoration) / "assets" / "images" / f"{BAIT_HASH}.png"
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(BAIT)
    return where


def _attempts(store: AssetStore, target: Path) -> dict[str, Callable[[], Any]]:
    """Every entry point that could read `target`: its URI given directly, in a ref and in an
    envelope, and an in-store symlink to it read by id, by ref and by the Materializer."""
    link = store.images_dir / f"{BAIT_HASH}.png"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    uri = target.as_uri()
    payload = {"image_grid_thw": [GRID]}
    by_id = RawMMRef("r", "qwen_vl", LAYOUT.fingerprint, "image", BAIT_HASH, link.name, payload)
    by_uri = RawMMRef(None, "qwen_vl", None, "image", BAIT_HASH, None, payload, uri)
    envelope = raw_mm_item(
        modality="image",
        family="qwen_vl",
        layout_fingerprint=LAYOUT.fingerprint,
        payload=payload,
        raw_uri=link.as_uri(),
        raw_image_id=link.name,
    )

    def batch(refs: list[Any]) -> Any:
        with Materializer(ADAPTER, store, processor_id="t", cache_bytes=0) as m:
            return m.materialize(refs)

    return {
        "store.read(uri)": lambda: store.read(uri, expected_hash=BAIT_HASH),
        "store.read(symlink id)": lambda: store.read(link.name),
        "store.read(symlink uri)": lambda: store.read(link.as_uri(), expected_hash=BAIT_HASH),
        "adapter.materialize(ref by id)": lambda: ADAPTER.materialize(by_id, store=store),
        "adapter.materialize(ref by uri)": lambda: ADAPTER.materialize(by_uri.to_string("json"), store=store),
        "adapter.materialize(envelope)": lambda: ADAPTER.materialize(
            envelope, store=store, outer_hash=BAIT_HASH
        ),
        "Materializer(ref by id)": lambda: batch([by_id.to_string()]),
        "Materializer(ref by uri)": lambda: batch([by_uri.to_string("json")]),
        "describe(uri)": lambda: ADAPTER.describe(uri, store=store),
    }


@pytest.mark.parametrize("shape", ["file", "dir", "run"])
@pytest.mark.parametrize("decoration", DECORATIONS)
def test_decorated_siblings_are_outside(tmp_path: Path, decoration: str, shape: str) -> None:
    store = AssetStore(tmp_path / "run")
    store.put(encode(make_image("RGB", 8, 8, "noise", 1)))  # the images directory exists
    target = _sibling(store, decoration, shape)
    for what, call in _attempts(store, target).items():
        with pytest.raises(UnsafePathError):
            got = call()
            pytest.fail(f"{what} served {type(got).__name__} from {target}")


def test_an_in_store_symlink_that_stays_inside_is_followed(tmp_path: Path) -> None:
    """refs.md §6 rule 2: the walk resolves symlinks itself, so one inside the store still
    works (absolute, relative, and through `..` back into the store)."""
    store = AssetStore(tmp_path / "run")
    store.put(BAIT)
    real = store.images_dir / f"{BAIT_HASH}.png"
    sub = store.images_dir / "sub"
    sub.mkdir()
    moved = sub / "moved.png"
    os.rename(real, moved)
    for target in (str(moved), "sub/moved.png", "sub/../sub/./moved.png"):
        real.unlink(missing_ok=True)
        real.symlink_to(target)
        assert store.read(real.name) == BAIT
    out = ADAPTER.materialize(
        RawMMRef(
            "r", "qwen_vl", LAYOUT.fingerprint, "image", BAIT_HASH, real.name, {"image_grid_thw": [GRID]}
        ),
        store=store,
    )
    assert np.array_equal(out.pixel_values, LAYOUT.pixel_values(BAIT).pixel_values)


def test_symlink_loops_and_chains_are_typed(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    store.put(BAIT)
    a, b = store.images_dir / "a.png", store.images_dir / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(UnsafePathError, match="symlink"):
        store.read("a.png", expected_hash=BAIT_HASH)
    # A chain out and back in: it ends inside, through entries that are all the store's own.
    out = tmp_path / "out"
    out.mkdir()
    (out / "hop").symlink_to(store.images_dir / f"{BAIT_HASH}.png")
    c = store.images_dir / "c.png"
    c.symlink_to(out / "hop")
    assert store.read("c.png", expected_hash=BAIT_HASH) == BAIT


def test_a_store_under_a_symlinked_parent_still_reads(tmp_path: Path) -> None:
    """The root is resolved once, at construction; honest symlinks above it are fine."""
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    store = AssetStore(tmp_path / "alias" / "run")
    asset = store.put(BAIT)
    assert store.read(asset.asset_id) == BAIT
    assert store.read(asset.uri) == BAIT
    alias_uri = "file://" + str(tmp_path / "alias" / "run" / "assets" / "images" / asset.asset_id)
    assert store.read(alias_uri) == BAIT


def test_a_directory_step_replaced_by_a_symlink_after_construction(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    asset = store.put(BAIT)
    evil = tmp_path / "evil" / "assets" / "images"
    evil.mkdir(parents=True)
    (evil / asset.asset_id).write_bytes(BAIT)  # same bytes: only containment can refuse it
    os.rename(tmp_path / "run", tmp_path / "moved")
    (tmp_path / "run").symlink_to(tmp_path / "evil")
    for call in (lambda: store.read(asset.asset_id), lambda: store.read(asset.uri)):
        with pytest.raises(UnsafePathError):
            call()
