"""The `rawmm` command line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .errors import RawmmError

#: The environment variables that name an asset store's location (refs.md §2.1).
_LOCATION_VARS = ("VF_RENDERER_IMAGE_OFFLOAD_DIR", "PRIME_RL_RUN_DIR", "RUN_ID")


def _store(store_dir: str | None, extra_roots: list[str]) -> Any:
    """--store DIR, else AssetStore.from_env(), else (no location set) a temporary store; the
    RAWMM_MAX_* caps apply to every one, and a bad value is an error."""
    from .store import AssetStore

    roots: list[str | os.PathLike[str]] = [*extra_roots]
    if store_dir:
        base = _capped_store(store_dir)
        return _capped_store(store_dir, allowed_roots=[*roots, base.location])
    if any(os.environ.get(v) for v in _LOCATION_VARS):
        base = AssetStore.from_env()
    else:
        base = _capped_store(tempfile.mkdtemp(prefix="rawmm-store-"), run_id="explicit")
        click.echo(f"using a temporary store: {base.location}", err=True)
    return AssetStore(
        base.location,
        images_subdir="",
        allowed_roots=[*roots, base.location],
        run_id=base.run_id,
        max_bytes=base.max_bytes,
        max_pixels=base.max_pixels,
    )


def _capped_store(root: str, **options: Any) -> Any:
    """AssetStore(root) with the RAWMM_MAX_* caps of the environment."""
    from .store import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, AssetStore

    caps = AssetStore.env_caps()
    return AssetStore(
        root,
        max_bytes=caps.get("max_bytes", DEFAULT_MAX_BYTES),
        max_pixels=caps.get("max_pixels", DEFAULT_MAX_PIXELS),
        **options,
    )


class _Main(click.Group):
    """User errors (every `RawmmError`, and files that cannot be read or written) end with
    their type and message on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RawmmError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from None


def _layout(model: str, backend: str | None) -> Any:
    """The preset, with --backend for the Qwen presets (Kimi K2.5 has one reference)."""
    from .layout import Layout

    return Layout.preset(model) if backend is None else Layout.preset(model, backend=backend)


_backend_option = click.option(
    "--backend",
    type=click.Choice(["torchvision", "pil"]),
    default=None,
    help="Qwen image backend the pixels equal (default torchvision, what servers run)",
)


@click.group(cls=_Main)
@click.version_option(package_name="rawmm")
def main() -> None:
    """rawmm: raw multimodal refs, exact layouts and pixel_values for VLM training."""


@main.command()
@click.option("--model", required=True, help="preset name, e.g. qwen3_vl")
@_backend_option
@click.option(
    "--store", "store_dir", default=None, help="run directory or object-store URL (s3://bucket/prefix)"
)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def describe(model: str, backend: str | None, store_dir: str | None, files: tuple[str, ...]) -> None:
    """One JSON line of Descriptor fields per file (header read and hash only)."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    from .adapters import adapter_for

    adapter = adapter_for(_layout(model, backend))
    store = _store(store_dir, sorted({str(Path(f).resolve().parent) for f in files}))
    failed = 0
    bar = tqdm(files, unit="img", disable=not sys.stderr.isatty() or len(files) < 2, file=sys.stderr)
    for f in bar:
        try:
            d = adapter.describe(f, store=store)
        except RawmmError as e:
            failed += 1
            click.echo(json.dumps({"file": f, "error": type(e).__name__, "message": str(e)}))
            continue
        click.echo(json.dumps({"file": f, **d.to_dict(), "ref": adapter.ref(d).to_string()}))
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("ref")
@click.option("--model", required=True)
@_backend_option
@click.option("--store", "store_dir", default=None)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def materialize(ref: str, model: str, backend: str | None, store_dir: str | None, output: str) -> None:
    """Verify and materialize one ref into an .npz holding the processor dict's keys."""
    import numpy as np

    from .adapters import adapter_for
    from .store import AssetStore

    store = _capped_store(store_dir) if store_dir else AssetStore.from_env()
    out = adapter_for(_layout(model, backend)).materialize(ref, store=store)
    np.savez(output, **out.as_hf_dict())  # type: ignore[arg-type]
    written = output if output.endswith(".npz") else output + ".npz"  # numpy adds the extension
    click.echo(
        json.dumps({"output": written, "shape": list(out.pixel_values.shape), "grid": out.grid_thw.tolist()})
    )


@main.group()
def store() -> None:
    """Put files into an asset store, or verify one."""


@store.command("put")
@click.option("--store", "store_dir", required=True)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def store_put(store_dir: str, files: tuple[str, ...]) -> None:
    base = _capped_store(store_dir)
    s = _capped_store(
        store_dir, allowed_roots=[str(Path(f).resolve().parent) for f in files] + [base.location]
    )
    for f in files:
        a = s.put(f)
        click.echo(
            json.dumps(
                {"file": f, "asset_id": a.asset_id, "mm_hash": a.mm_hash, "size": a.size, "uri": a.uri}
            )
        )


@store.command("verify")
@click.option("--store", "store_dir", required=True)
def store_verify(store_dir: str) -> None:
    from ._uris import is_object_uri
    from .store import AssetStore

    if not is_object_uri(store_dir) and not Path(store_dir).is_dir():
        raise click.ClickException(f"no asset store at {store_dir}")
    problems = AssetStore(store_dir).verify()
    for p in problems:
        click.echo(p)
    click.echo(f"{len(problems)} problem(s)", err=True)
    sys.exit(1 if problems else 0)


@main.command()
def demo() -> None:
    """Store, describe, ref and materialize the bundled images; a parity column when
    transformers is installed."""
    from .demo import run

    rows = run(click.echo)
    if any(r["parity"] == "DIFFERS" for r in rows):
        click.echo("parity check failed", err=True)
        sys.exit(1)


@main.command()
@click.option("--repeat", default=7, show_default=True)
def bench(repeat: int) -> None:
    """Speed against the reference, as ratios (the full tables: `make bench`)."""
    from .demo import bench as run_bench

    run_bench(click.echo, repeat=repeat)


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
