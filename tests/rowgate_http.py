"""A real `rowgate serve --transport http` process for tests: started with its own
environment on a free loopback port, ready when /readyz says so, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RowgateHttp:
    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
        ready_path: str = "/readyz",
        start_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.env = dict(env)
        self.args = args
        self.ready_path = ready_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="rowgate-http-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/mcp"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> Self:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ROWGATE_") and k != "DATABASE_URL"
        }
        env.update(self.env)
        command = [sys.executable, "-m", "server", "serve", "--transport", "http"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rowgate exited at start:\n{self.log_text()}")
            try:
                if httpx.get(self.origin + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rowgate did not become ready:\n{self.log_text()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
