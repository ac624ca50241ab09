"""The pieces of the HTTP benchmark: a real `rowgate serve --transport http` process, its
CPU time, and two JSON-RPC clients for tools/call over one keep-alive connection each:

  RawHttpClient   HTTP/1.1 written and read by hand on asyncio streams: the cheapest client
                  Python has, so a call's latency is mostly the server's
  JsonRpcClient   httpx2.AsyncClient (the MCP SDK's httpx fork), what a Python client
                  without the SDK would use; it costs about as much CPU per call as the server

(Not httpx 0.28: with httpcore 1.0.9 and no `sniffio` installed, which is the case here,
every request retries `import sniffio` four times, a sys.path scan each; httpcore2 does not.)

CPU is read from /proc: the sum over the process' threads of /proc/<pid>/task/<tid>/schedstat
(nanoseconds on CPU), falling back to utime+stime of /proc/<pid>/stat (clock ticks), so no
dependency is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_VERSION = "2025-11-25"
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, all threads."""
    total_ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                total_ns += int(stat.read().split()[0])
        return total_ns / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def child_pids(pid: int | None = None) -> list[int]:
    """Direct children of a process (default: this one), from /proc/<pid>/task/*/children."""
    pid = pid or os.getpid()
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as children:
                out += [int(c) for c in children.read().split()]
    except OSError:
        return out
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return [part.decode(errors="replace") for part in raw.read().split(b"\0") if part]
    except OSError:
        return []


class ServerProcess:
    """`<python> -m server serve --transport http` (or `prefix` + those arguments) on a free
    loopback port, with exactly the given environment for rowgate; ready once /readyz says so."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        python: str = sys.executable,
        prefix: Sequence[str] = ("-m", "server"),
        start_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
        self.env = dict(env)
        self.command = [python, *prefix, "serve", "--transport", "http"]
        self.command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="rowgate-bench-http-", suffix=".log", delete=False
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/mcp"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROWGATE_")}
        env.pop("DATABASE_URL", None)
        env.update(self.env)
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"rowgate HTTP server exited at start:\n{self.log_text()}")
            try:
                if httpx2.get(self.origin + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"rowgate HTTP server did not become ready:\n{self.log_text()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _tools_call(request_id: int, name: str, arguments: dict[str, Any]) -> bytes:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _result(status: int, content: bytes) -> dict[str, Any]:
    if status != 200:
        raise SystemExit(f"HTTP {status} from rowgate: {content[:300]!r}")
    answer: dict[str, Any] = json.loads(content)
    if "result" not in answer:
        raise SystemExit(f"JSON-RPC error from rowgate: {answer.get('error')}")
    result: dict[str, Any] = answer["result"]
    if result.get("isError"):
        raise SystemExit(f"tool error over HTTP: {result.get('content')}")
    return result


class RawHttpClient:
    """tools/call as a hand-written HTTP/1.1 POST on one keep-alive connection, with the
    headers a Streamable HTTP client sends; the response parsed as JSON. Reconnects (and
    resends) only when the server closed the idle connection before answering."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.token = token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _head(self, token: str, length: int) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\n"
            f"host: {self.host}:{self.port}\r\n"
            f"authorization: Bearer {token}\r\n"
            "content-type: application/json\r\n"
            "accept: application/json, text/event-stream\r\n"
            f"mcp-protocol-version: {PROTOCOL_VERSION}\r\n"
            f"content-length: {length}\r\n\r\n"
        ).encode()

    async def call_tool(
        self, request_id: int, name: str, arguments: dict[str, Any], token: str | None = None
    ) -> dict[str, Any]:
        body = _tools_call(request_id, name, arguments)
        request = self._head(token or self.token, len(body)) + body
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            self._writer.write(request)
            status_line = await self._reader.readline()
            if not status_line and attempt == 1:  # closed while idle (keep-alive timeout)
                await self.aclose()
                continue
            return await self._response(self._reader, status_line)
        raise SystemExit("rowgate closed the connection without answering")

    async def _response(self, reader: asyncio.StreamReader, status_line: bytes) -> dict[str, Any]:
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise SystemExit(f"not an HTTP response from rowgate: {status_line!r}")
        length = None
        close = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise SystemExit("rowgate answered without content-length")
        content = await reader.readexactly(length)
        if close:
            await self.aclose()
        return _result(int(parts[1]), content)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


class JsonRpcClient:
    """tools/call as a plain POST through httpx2.AsyncClient (one keep-alive connection),
    with the headers a Streamable HTTP client sends; the response parsed as JSON."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.client = httpx2.AsyncClient(
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": PROTOCOL_VERSION,
            },
            limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30.0,
        )

    async def call_tool(
        self, request_id: int, name: str, arguments: dict[str, Any], token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token is not None else None
        body = _tools_call(request_id, name, arguments)
        response = await self.client.post(self.url, content=body, headers=headers)
        return _result(response.status_code, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()
