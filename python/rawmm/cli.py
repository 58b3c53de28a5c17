"""The `rawmm` command line."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
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
        **_deadline(base.location),
    )


def _capped_store(root: str, **options: Any) -> Any:
    """AssetStore(root) with the RAWMM_MAX_* caps of the environment (and --deadline)."""
    from .store import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, AssetStore

    caps = AssetStore.env_caps()
    return AssetStore(
        root,
        max_bytes=caps.get("max_bytes", DEFAULT_MAX_BYTES),
        max_pixels=caps.get("max_pixels", DEFAULT_MAX_PIXELS),
        **_deadline(root),
        **options,
    )


def _deadline(root: str) -> dict[str, Any]:
    """`rawmm --deadline S` as the object store's option (local stores have no network)."""
    from ._uris import is_object_uri

    ctx = click.get_current_context(silent=True)
    seconds = ctx.find_root().params.get("deadline") if ctx is not None else None
    return {"storage_options": {"deadline": seconds}} if seconds and is_object_uri(root) else {}


def _env_location() -> str:
    return os.environ.get("VF_RENDERER_IMAGE_OFFLOAD_DIR") or os.environ.get("PRIME_RL_RUN_DIR") or ""


class _Main(click.Group):
    """Every error is one line on stderr and a nonzero status, never a traceback: user errors
    (every `RawmmError`, and files that cannot be read or written) name their type and exit 1;
    usage errors exit 2, as click's do, without the usage text."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RawmmError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from None

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, *, standalone_mode: bool = True
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False)
        try:
            code = super().main(args, prog_name, standalone_mode=False)
        except click.ClickException as e:
            click.echo(f"Error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # --help and --version return 0


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
@click.option(
    "--deadline",
    type=click.FloatRange(0, 3600, min_open=True),
    default=None,
    help="object stores: seconds one read or write may take, retries included (default about 40)",
)
def main(deadline: float | None) -> None:
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

    if not output:
        raise click.BadParameter("an empty path", param_hint="'-o'")
    written = output if output.endswith(".npz") else output + ".npz"  # numpy's rule for names
    _output_fd(written, create=False)  # fail before the work, not after it
    store = _capped_store(store_dir) if store_dir else AssetStore.from_env(**_deadline(_env_location()))
    out = adapter_for(_layout(model, backend)).materialize(ref, store=store)
    with os.fdopen(_output_fd(written, create=True), "wb") as f:
        np.savez(f, **out.as_hf_dict())
    click.echo(
        json.dumps({"output": written, "shape": list(out.pixel_values.shape), "grid": out.grid_thw.tolist()})
    )


def _output_fd(path: str, *, create: bool) -> int:
    """A descriptor of the regular file to write (`create=False`: only checks an existing one).
    Opened without blocking, so a FIFO with no reader is an error at once, never a hang."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise
        return -1
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO with no reader
            raise click.BadParameter(f"{path} is not a regular file", param_hint="'-o'") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise click.BadParameter(f"{path} is not a regular file", param_hint="'-o'")
    if create:
        os.ftruncate(fd, 0)
    else:
        os.close(fd)
    return fd


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
    problems = AssetStore(store_dir, **_deadline(store_dir)).verify()
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
@click.option("--repeat", default=7, show_default=True, type=click.IntRange(1, 1000))
def bench(repeat: int) -> None:
    """Speed against the reference, as ratios (the full tables: `make bench`)."""
    from .demo import bench as run_bench

    run_bench(click.echo, repeat=repeat)


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
