"""The real OPA (and Regal) binaries for tests: where they are, and an `opa run --server` on loopback.

`make tools` (and `.ci/run`) install the pinned versions into ~/.cache/sendgate-tools/bin
and put it on PATH. A test that needs a tool skips when it is missing, except under CI
(`CI=true`), where a missing tool is a failure: CI must really run these tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

TOOLS_BIN = Path(os.environ.get("SENDGATE_TOOLS_BIN", Path.home() / ".cache" / "sendgate-tools" / "bin"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_tool(name: str) -> str | None:
    """`$SENDGATE_<NAME>`, then PATH, then the `make tools` cache."""
    explicit = os.environ.get(f"SENDGATE_{name.upper()}")
    if explicit:
        return explicit
    found = shutil.which(name)
    if found:
        return found
    cached = TOOLS_BIN / name
    return str(cached) if cached.is_file() and os.access(cached, os.X_OK) else None


def require_tool(name: str) -> str:
    """The tool's path; skip without it on a laptop, fail without it under CI."""
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed (run `make tools`: it installs the pinned version into {TOOLS_BIN})"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpaServer:
    """`opa run --server` on 127.0.0.1:<free port>, decision logs on (so answers carry a decision_id)."""

    def __init__(self, opa: str, args: list[str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [opa, "run", "--server", "--addr", f"127.0.0.1:{self.port}",
                   "--set", "decision_logs.console=true", "--log-level", "error", *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"opa exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health?bundles", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"opa did not become healthy in {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
