"""The command line as a person or DBA uses it: the demo's greeting at a terminal, Ctrl-C,
`rowgate call`, `rowgate migrate`."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from server.demo import create_database, with_user_and_database

ROWGATE = str(Path(sys.executable).parent / "rowgate")


def embedded_only() -> None:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("runs the embedded PostgreSQL")


def demo_env() -> dict[str, str]:
    from tests.conftest import EMBEDDED_ROOT

    return {**os.environ, "ROWGATE_EMBEDDED_DIR": str(EMBEDDED_ROOT)}


def test_demo_at_a_terminal_explains_itself_and_stops_on_ctrl_c(admin_dsn: str) -> None:
    embedded_only()
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [ROWGATE, "demo", "--user", "carol"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=demo_env(),
    )
    os.close(secondary)
    try:
        assert process.stderr is not None
        greeting = b""
        deadline = time.monotonic() + 60
        while b"Waiting for MCP messages" not in greeting and time.monotonic() < deadline:
            greeting += process.stderr.readline()
        text = greeting.decode()
        assert "as carol (Globex admin; role org_admin)" in text
        assert "claude_desktop_config.json" in text and '"demo"' in text
        assert "@modelcontextprotocol/inspector" in text and "call select_rows" in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        assert process.stdout is not None and process.stdout.read() == b""
    finally:
        process.kill()
        os.close(primary)


def test_call_prints_a_readable_table(admin_dsn: str) -> None:
    embedded_only()
    done = subprocess.run(
        [ROWGATE, "call", "select_rows", "--user", "dave", "table=orders", "limit=3",
         "columns=[\"id\", \"org_id\", \"status\"]"],
        capture_output=True, text=True, env=demo_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "id" and "status" in lines[0]
    assert set(lines[1]) <= {"-", "+"}
    assert all("b0000000-0000-4000-8000-000000000002" in line for line in lines[2:5])
    assert "row_count: 3" in done.stdout

    refused = subprocess.run(
        [ROWGATE, "call", "delete_rows", "--user", "dave", "table=orders", "where=id > 0",
         "idempotency_key=x"],
        capture_output=True, text=True, env=demo_env(), timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "operation_not_allowed" in refused.stderr and "Traceback" not in refused.stderr

    unknown = subprocess.run(
        [ROWGATE, "call", "list_tables", "--user", "mallory"],
        capture_output=True, text=True, env=demo_env(), timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "demo users: alice, bob, carol, dave" in unknown.stderr


async def test_migrate_applies_only_rowgate_core_and_is_repeatable(admin_dsn: str) -> None:
    name = f"rowgate_migrate_{os.getpid()}"
    await create_database(admin_dsn, name)
    user = admin_dsn.split("://", 1)[1].split("@", 1)[0] or "postgres"
    url = with_user_and_database(admin_dsn, user, name)
    try:
        command = [ROWGATE, "migrate", "--database-url", url]
        first = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        again = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        assert first.returncode == 0 and "core/0002_rowgate_schema.sql" in first.stderr
        assert again.returncode == 0 and "already up to date" in again.stderr
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regprocedure('auth.uid()') IS NOT NULL")
            assert await conn.fetchval("SELECT to_regclass('public.orders') IS NULL")
            assert await conn.fetchval("SELECT to_regclass('rowgate.idempotency_keys') IS NOT NULL")
        finally:
            await conn.close()
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def test_demo_over_http_with_its_development_authorization_server(admin_dsn: str) -> None:
    """`rowgate demo --transport http`: the printed token works, any demo user's token is
    one POST away, and the tokens are verified like any issuer's (discovery, JWKS, aud)."""
    import httpx

    from tests.rowgate_http import free_port

    embedded_only()
    port = free_port()
    process = subprocess.Popen(
        [ROWGATE, "demo", "--transport", "http", "--port", str(port), "--user", "dave"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=demo_env(),
    )
    try:
        assert process.stderr is not None
        banner = b""
        deadline = time.monotonic() + 90
        while b"Ctrl-C to stop" not in banner and time.monotonic() < deadline:
            banner += process.stderr.readline()
        text = banner.decode()
        lines = text.splitlines()
        token = lines[lines.index(next(line for line in lines if "valid 8 hours" in line)) + 1]
        url = f"http://127.0.0.1:{port}/mcp"
        assert url in text and "/dev-auth/token" in text

        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "select_rows", "arguments": {"table": "orders"}}}  # fmt: skip

        def select(bearer: str) -> httpx.Response:
            for _ in range(50):
                try:
                    auth = {"authorization": f"Bearer {bearer}"}
                    return httpx.post(url, json=call, headers=auth, timeout=30)
                except httpx.ConnectError:
                    time.sleep(0.2)
            raise AssertionError("the demo never answered")

        dave = select(token).json()["result"]["structuredContent"]["rows"]
        assert {r["org_id"] for r in dave} == {"b0000000-0000-4000-8000-000000000002"}
        issued = httpx.post(
            f"http://127.0.0.1:{port}/dev-auth/token",
            data={"grant_type": "client_credentials", "client_id": "bob", "scope": "db:read"},
        ).json()
        bob = select(issued["access_token"]).json()["result"]["structuredContent"]["rows"]
        assert {r["org_id"] for r in bob} == {"a0000000-0000-4000-8000-000000000001"}
        refused = httpx.post(
            f"http://127.0.0.1:{port}/dev-auth/token",
            data={"grant_type": "client_credentials", "client_id": "mallory"},
        )
        assert refused.status_code == 401
        assert select(token[:-8] + "AAAAAAAA").status_code == 401
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        assert process.stdout is not None and process.stdout.read() == b""
    finally:
        process.kill()
