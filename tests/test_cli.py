"""The `rawmm` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from conftest import have_torch
from images import encode, make_image
from rawmm import Layout
from rawmm.cli import main


def test_describe_materialize_store(tmp_path: Path) -> None:
    runner = CliRunner()
    img = tmp_path / "a.jpg"
    img.write_bytes(encode(make_image("RGB", 300, 200, "gradient", 1), "JPEG"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    store = tmp_path / "run"
    res = runner.invoke(main, ["describe", "--model", "qwen3_vl", "--store", str(store), str(img)])
    assert res.exit_code == 0, res.output
    line = json.loads(res.output.strip().splitlines()[-1])
    want = Layout.preset("qwen3_vl").image(300, 200)
    assert line["grid_thw"] == list(want.grid_thw) and line["asset_id"].endswith(".jpg")
    res = runner.invoke(main, ["describe", "--model", "qwen3_vl", "--store", str(store), str(img), str(bad)])
    assert res.exit_code == 1 and "ImageDecodeError" in res.output
    out = tmp_path / "out.npz"
    res = runner.invoke(
        main, ["materialize", line["ref"], "--model", "qwen3_vl", "--store", str(store), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    with np.load(out) as z:
        assert set(z.files) == {"pixel_values", "image_grid_thw"} and z["pixel_values"].shape == (
            14 * 20,
            1536,
        )
    res = runner.invoke(main, ["store", "put", "--store", str(tmp_path / "s2"), str(img)])
    assert res.exit_code == 0 and json.loads(res.output)["asset_id"] == line["asset_id"]
    res = runner.invoke(main, ["store", "verify", "--store", str(tmp_path / "s2")])
    assert res.exit_code == 0
    (tmp_path / "s2" / "assets" / "images" / "junk.png").write_bytes(b"x")
    res = runner.invoke(main, ["store", "verify", "--store", str(tmp_path / "s2")])
    assert res.exit_code == 1 and "foreign" in res.output


def test_demo_runs_bit_exact() -> None:
    res = CliRunner().invoke(main, ["demo"])
    assert res.exit_code == 0, res.output
    # 4 images × 4 Qwen presets × 2 backends; the torchvision ones need torch
    assert res.output.count("bit-exact") == (32 if have_torch() else 16) and "DIFFERS" not in res.output


def test_backend_option(tmp_path: Path) -> None:
    """--backend picks the Qwen image backend; its fingerprint travels in the ref, so a ref
    described for one backend does not materialize under the other."""
    runner = CliRunner()
    img = tmp_path / "a.png"
    im = make_image("RGB", 301, 203, "noise", 2)
    img.write_bytes(encode(im))
    store = str(tmp_path / "run")
    refs = {}
    for backend in ("torchvision", "pil"):
        res = runner.invoke(
            main, ["describe", "--model", "qwen2_5_vl", "--backend", backend, "--store", store, str(img)]
        )
        assert res.exit_code == 0, res.output
        refs[backend] = json.loads(res.output.strip().splitlines()[-1])
        layout = Layout.preset("qwen2_5_vl", backend=backend)
        assert refs[backend]["layout_fingerprint"] == layout.fingerprint
        out = tmp_path / f"{backend}.npz"
        args = [
            "materialize",
            refs[backend]["ref"],
            "--model",
            "qwen2_5_vl",
            "--store",
            store,
            "-o",
            str(out),
        ]
        res = runner.invoke(main, [*args, "--backend", backend])
        assert res.exit_code == 0, res.output
        with np.load(out) as z:
            assert np.array_equal(z["pixel_values"], layout.pixel_values(im).pixel_values)
    assert refs["torchvision"]["ref"] != refs["pil"]["ref"]
    # the default is torchvision: the pil ref's fingerprint does not match it
    args = [
        "materialize",
        refs["pil"]["ref"],
        "--model",
        "qwen2_5_vl",
        "--store",
        store,
        "-o",
        str(tmp_path / "x"),
    ]
    assert runner.invoke(main, args).exit_code != 0
    res = runner.invoke(main, ["describe", "--model", "qwen2_5_vl", "--backend", "torch", str(img)])
    assert res.exit_code == 2 and "torch" in res.output


def test_user_errors_are_typed_messages_not_tracebacks(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 9 §8: every user error ends with its type and message on stderr and status 1."""
    for var in ("VF_RENDERER_IMAGE_OFFLOAD_DIR", "PRIME_RL_RUN_DIR", "RUN_ID", "RAWMM_MAX_ASSET_BYTES"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    img = tmp_path / "a.png"
    img.write_bytes(encode(make_image("RGB", 120, 80, "noise", 1)))
    store = str(tmp_path / "run")
    res = runner.invoke(main, ["describe", "--model", "qwen3_vl", "--store", store, str(img)])
    ref = json.loads(res.output.strip().splitlines()[-1])["ref"]

    def fails(args: list[str], *expected: str) -> None:
        res = runner.invoke(main, args)
        assert res.exit_code == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        for text in expected:
            assert text in res.output, res.output

    out = str(tmp_path / "o.npz")
    fails(
        ["materialize", "mmraw:v2:nope", "--model", "qwen3_vl", "--store", store, "-o", out], "RefFormatError"
    )
    fails(["materialize", ref, "--model", "kimi_k25", "--store", store, "-o", out], "Error")  # wrong family
    fails(["materialize", ref, "--model", "qwen9", "--store", store, "-o", out], "LayoutError")
    fails(["materialize", ref, "--model", "qwen3_vl", "--store", str(tmp_path / "empty"), "-o", out], "Error")
    fails(["materialize", ref, "--model", "qwen3_vl", "--store", store, "-o", str(tmp_path / "no" / "x.npz")])
    fails(["describe", "--model", "qwen3_vl", "--store", str(img), str(img)], "Error")  # --store is a file
    fails(["store", "verify", "--store", str(tmp_path / "missing")], "no asset store")
    # The caps of the environment apply to describe, and a bad value is an error, not a fallback.
    monkeypatch.setenv("RAWMM_MAX_ASSET_BYTES", "10")
    res = runner.invoke(main, ["describe", "--model", "qwen3_vl", "--store", str(tmp_path / "r2"), str(img)])
    assert res.exit_code == 1 and "LimitExceededError" in res.output
    monkeypatch.setenv("RAWMM_MAX_ASSET_BYTES", "abc")
    fails(["describe", "--model", "qwen3_vl", str(img)], "RAWMM_MAX_ASSET_BYTES")
    monkeypatch.delenv("RAWMM_MAX_ASSET_BYTES")
    # -o without .npz: numpy adds the extension, and the report names the file written
    res = runner.invoke(
        main, ["materialize", ref, "--model", "qwen3_vl", "--store", store, "-o", str(tmp_path / "o2")]
    )
    assert res.exit_code == 0 and json.loads(res.output)["output"] == str(tmp_path / "o2.npz")
    assert (tmp_path / "o2.npz").is_file()


def _rawmm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command in its own process: a hang fails the test after 5 s."""
    cmd = [sys.executable, "-m", "rawmm.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=5, env=env, stdin=subprocess.DEVNULL)


def test_every_cli_error_is_one_line_nonzero_and_quick(tmp_path: Path) -> None:
    """Issue 17 §4: a FIFO with no reader as the output, bad --repeat values and an empty -o."""
    img = tmp_path / "a.png"
    img.write_bytes(encode(make_image("RGB", 120, 80, "noise", 1)))
    store = str(tmp_path / "run")
    described = _rawmm("describe", "--model", "qwen3_vl", "--store", store, str(img))
    ref = json.loads(described.stdout.strip().splitlines()[-1])["ref"]
    fifo = tmp_path / "out.npz"
    os.mkfifo(fifo)
    materialize = ["materialize", ref, "--model", "qwen3_vl", "--store", store]
    cases = [
        [*materialize, "-o", str(fifo)],
        [*materialize, "-o", str(tmp_path / "out")],  # numpy's name for it is the FIFO
        [*materialize, "-o", ""],
        ["bench", "--repeat", "0"],
        ["bench", "--repeat", "-1"],
        ["bench", "--repeat", str(10**30)],
        ["bench", "--repeat", "x"],
        ["materialize"],
        ["nonsense"],
    ]
    for args in cases:
        proc = _rawmm(*args)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, proc.stderr)
    assert not (tmp_path / ".npz").exists() and fifo.is_fifo()
    ok = _rawmm(*materialize, "-o", str(tmp_path / "fine"))
    assert ok.returncode == 0 and np.load(tmp_path / "fine.npz")["pixel_values"].shape[0] > 0
