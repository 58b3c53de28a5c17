"""The `rawmm` command line."""

from __future__ import annotations

import sys

import click


@click.group()
@click.version_option(package_name="rawmm")
def main() -> None:
    """rawmm: raw multimodal refs, exact layouts and pixel_values for VLM training."""


@main.command()
def demo() -> None:
    """Layouts and pixel_values for the bundled sample images, with a parity column."""
    from .demo import run

    rows = run(click.echo)
    if any(r["parity"] == "DIFFERS" for r in rows):
        click.echo("parity check failed", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
