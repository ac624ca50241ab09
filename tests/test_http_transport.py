"""The HTTP transport's own guarantees, on a real server process (auth off, loopback):
DNS-rebinding protection, body cap, slow clients, graceful shutdown, auth-off refusing
anything but loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from server.demo import demo_users
from tests.rowgate_http import RowgateHttp

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def auth_off_env(login_dsn: str, **extra: str) -> dict[str, str]:
    alice = demo_users()["alice"].principal
    return {
        "DATABASE_URL": login_dsn,
        "ROWGATE_AUTH_DISABLED": "true",
        "ROWGATE_ROLE": alice.role,
        "ROWGATE_CLAIMS": json.dumps(dict(alice.claims)),
        **extra,
    }


@pytest.fixture(scope="module")
def server(login_dsn: str) -> Iterator[RowgateHttp]:
    env = auth_off_env(
        login_dsn, ROWGATE_REQUEST_TIMEOUT_SECONDS="2", ROWGATE_MAX_BODY_BYTES="65536"
    )
    with RowgateHttp(env) as running:
        yield running


def call(
    server: RowgateHttp, tool: str, arguments: dict[str, Any], **headers: str
) -> httpx.Response:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}  # fmt: skip
    return httpx.post(server.url, json=message, headers={**HEADERS, **headers}, timeout=30)


def test_calls_and_pings_answer_with_json(server: RowgateHttp) -> None:
    response = call(server, "select_rows", {"table": "orders", "limit": 2})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == 7 and len(body["result"]["structuredContent"]["rows"]) == 2
    ping = httpx.post(server.url, json={"jsonrpc": "2.0", "id": "p", "method": "ping"},
                      headers=HEADERS)  # fmt: skip
    assert ping.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}
    bad = call(server, "select_rows", {"table": "orders", "where": "id = 1; DROP TABLE orders"})
    assert bad.json()["result"]["isError"] is True


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "evil.example.com"}, 421),
        ({"host": "127.0.0.1.nip.io"}, 421),
        ({"origin": "http://evil.example.com"}, 403),
        ({"origin": "null"}, 403),
    ],
)
def test_dns_rebinding_protection(
    server: RowgateHttp, headers: dict[str, str], status: int
) -> None:
    assert call(server, "list_tables", {}, **headers).status_code == status


def test_own_origin_is_allowed(server: RowgateHttp) -> None:
    assert call(server, "list_tables", {}, origin=server.origin).status_code == 200


def test_oversized_bodies_are_refused(server: RowgateHttp) -> None:
    big = {"table": "orders", "where": "id = 1 OR " + " OR ".join(["id = 2"] * 20000)}
    response = call(server, "select_rows", big)
    assert response.status_code == 413
    # Without a Content-Length (chunked), the cap holds as the body streams in.
    chunks = (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * 8192
              for _ in range(20))  # fmt: skip
    streamed = httpx.post(server.url, content=chunks, headers=HEADERS)
    assert streamed.status_code == 413
    assert call(server, "list_tables", {}).status_code == 200


def test_a_stalled_client_gets_a_timeout_and_ties_up_nothing(server: RowgateHttp) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"jsonrpc"' % server.port
        )
        started = time.monotonic()
        assert call(server, "list_tables", {}).status_code == 200  # served meanwhile
        assert time.monotonic() - started < 1.5
        stalled.settimeout(10)
        answer = stalled.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert 1.5 < time.monotonic() - started < 8


def test_health_and_unknown_paths_reveal_nothing(server: RowgateHttp) -> None:
    assert httpx.get(server.origin + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.origin + "/readyz").json() == {"status": "ready"}
    assert httpx.get(server.origin + "/admin").status_code == 404
    assert httpx.get(server.url, headers={"accept": "text/event-stream"}).status_code == 405
    assert httpx.delete(server.url).status_code == 405


async def test_sigterm_finishes_the_call_in_flight(
    login_dsn: str, admin: asyncpg.Connection
) -> None:
    """A call blocked on a row lock when SIGTERM arrives still completes and commits; then
    the process exits cleanly."""
    target = await admin.fetchval(
        "SELECT id FROM public.orders WHERE org_id = 'a0000000-0000-4000-8000-000000000001' "
        "ORDER BY id LIMIT 1"
    )
    env = auth_off_env(login_dsn)
    server = RowgateHttp(env).start()
    result: dict[str, httpx.Response] = {}
    transaction = admin.transaction()
    await transaction.start()
    try:
        await admin.execute("SELECT 1 FROM public.orders WHERE id = $1 FOR UPDATE", target)
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "r",
                call(
                    server,
                    "update_rows",
                    {
                        "table": "orders",
                        "where": f"id = {target}",
                        "set": {"note": "finished during shutdown"},
                        "idempotency_key": "sigterm-1",
                    },
                ),
            )
        )
        thread.start()
        await asyncio.sleep(0.5)
        assert server.process is not None
        server.process.send_signal(15)
        await asyncio.sleep(0.5)
    finally:
        await transaction.rollback()
    thread.join(20)
    code = server.process.wait(20) if server.process else None
    response = result["r"]
    assert response.status_code == 200 and not response.json()["result"]["isError"], response.text
    # uvicorn drains, runs the shutdown (pool closed), then re-raises the signal.
    assert code in (0, -15), server.log_text()
    assert "Traceback" not in server.log_text()
    note = await admin.fetchval("SELECT note FROM public.orders WHERE id = $1", target)
    assert note == "finished during shutdown"
    server.process = None


def test_auth_off_refuses_to_bind_anything_but_loopback(login_dsn: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--host", "0.0.0.0"],
        env={**auth_off_env(login_dsn), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert b"loopback" in completed.stderr and not completed.stdout


def test_http_without_an_issuer_says_what_to_set(login_dsn: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"],
        env={"DATABASE_URL": login_dsn, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2 and b"ROWGATE_AUTH_ISSUER" in completed.stderr
