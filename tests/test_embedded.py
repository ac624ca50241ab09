"""Real-process tests for server.embedded (no mocks): they initdb and start PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from server.embedded import EmbeddedPostgres

PORT = 55439  # not 5432: the machine may run its own PostgreSQL there
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rg-", dir="/tmp"))
    try:
        yield path
    finally:
        try:
            EmbeddedPostgres(path, port=PORT).force_stop()
        finally:
            shutil.rmtree(path, ignore_errors=True)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _spawn(code: str, root: Path) -> subprocess.Popen[bytes]:
    prelude = (
        "import sys\n"
        "from pathlib import Path\n"
        "from server.embedded import EmbeddedPostgres\n"
        f"pg = EmbeddedPostgres(Path({str(root)!r}), port={PORT})\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
        cwd=REPO,
    )


def _expect_line(proc: subprocess.Popen[bytes], expected: bytes) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"child said {line!r}, expected {expected!r}; stderr:\n{err!r}")


def _select_one(pg: EmbeddedPostgres) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(pg.dsn(), timeout=10)
        try:
            value = await conn.fetchval("select 1")
            assert isinstance(value, int)
            return value
        finally:
            await conn.close()

    return asyncio.run(run())


def test_start_connect_and_no_tcp(root: Path) -> None:
    pg = EmbeddedPostgres(root, port=PORT)
    pg.start()
    pg.start()  # idempotent
    assert pg.is_running()
    assert _select_one(pg) == 1

    psql = pg.bindir / "psql"
    out = subprocess.run(
        [str(psql), "-X", "-A", "-t", "-c", "select 1", pg.dsn()],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == b"1"

    # no TCP listener on the configured port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    # socket directory is private to its owner
    assert (pg.socket_dir.stat().st_mode & 0o777) == 0o700
    assert (pg.socket_dir / f".s.PGSQL.{PORT}").is_socket()

    pg.stop()
    assert not pg.is_running()


def test_two_users_refcount(root: Path) -> None:
    pg = EmbeddedPostgres(root, port=PORT)

    # We start first; a child starts, stops and exits: the server must keep running.
    pg.start()
    child = _spawn("pg.start()\npg.stop()\nprint('done', flush=True)\n", root)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == b"done"
    assert pg.is_running()
    assert _select_one(pg) == 1
    pg.stop()
    assert not pg.is_running()

    # Reverse: a child starts and keeps using it; our stop() leaves it running; the child's stop()
    # (as the last user) stops it.
    child = _spawn(
        "pg.start()\nprint('started', flush=True)\nsys.stdin.readline()\n"
        "pg.stop()\nprint('stopped', flush=True)\n",
        root,
    )
    try:
        _expect_line(child, b"started")
        pg.start()
        pg.stop()
        assert pg.is_running()
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        _expect_line(child, b"stopped")
        assert child.wait(timeout=30) == 0
        assert not pg.is_running()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_killed_user_does_not_block_stop(root: Path) -> None:
    child = _spawn("pg.start()\nprint('started', flush=True)\nsys.stdin.readline()\n", root)
    try:
        _expect_line(child, b"started")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    pg = EmbeddedPostgres(root, port=PORT)
    assert pg.is_running()  # left running by the killed process
    pg.start()  # reuses it
    assert _select_one(pg) == 1
    pg.stop()  # the killed child's shared flock is gone, so we are the last user
    assert not pg.is_running()


def test_start_after_postmaster_sigkill(root: Path) -> None:
    pg = EmbeddedPostgres(root, port=PORT)
    pg.start()
    pid = int((root / "data" / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pg.is_running():
        assert time.monotonic() < deadline, "postmaster did not die"
        time.sleep(0.05)
    pg.start()  # stale postmaster.pid; this instance is still registered
    assert pg.is_running()
    assert _select_one(pg) == 1
    pg.stop()
    assert not pg.is_running()


def test_nothing_written_to_stdout(root: Path) -> None:
    code = (
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "pg.start()\n"
        "assert pg.is_running()\n"
        "pg.stop()\n"
        "assert not pg.is_running()\n"
    )
    child = _spawn(code, root)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out == b""
