"""Through a real MCP client over stdio, spawning `rowgate` the way Claude Desktop does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client, StdioServerParameters

from server.demo import DemoUser

ROWGATE = str(Path(sys.executable).parent / "rowgate")
ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"


def serve_env(login_dsn: str, user: DemoUser) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": login_dsn,
        "ROWGATE_ROLE": user.principal.role,
        "ROWGATE_CLAIMS": json.dumps(dict(user.principal.claims)),
    }


@asynccontextmanager
async def rowgate_client(
    env: dict[str, str], args: list[str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=ROWGATE, args=args or ["serve"], env=env)
    async with Client(params, mode=mode) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def error_text(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in text
    return str(text)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tools_declare_schemas_and_annotations(
    login_dsn: str, users: dict[str, DemoUser], mode: str
) -> None:
    async with rowgate_client(serve_env(login_dsn, users["bob"]), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {
            "list_tables", "describe_table", "select_rows", "insert_rows", "update_rows",
            "delete_rows",
        }  # fmt: skip
        for tool in tools.values():
            assert tool.output_schema and tool.output_schema["type"] == "object"
            assert tool.input_schema.get("additionalProperties") is False
            assert tool.annotations is not None
        assert tools["select_rows"].annotations.read_only_hint is True  # type: ignore[union-attr]
        assert tools["delete_rows"].annotations.destructive_hint is True  # type: ignore[union-attr]
        assert "set" in tools["update_rows"].input_schema["properties"]
        page = await call(client, "select_rows", table="orders", limit=3)
        assert page["row_count"] == 3


async def test_users_of_two_orgs_see_disjoint_data_with_every_tool(
    login_dsn: str, users: dict[str, DemoUser]
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for name in ("bob", "carol"):
        async with rowgate_client(serve_env(login_dsn, users[name])) as client:
            tables = await call(client, "list_tables")
            described = await call(client, "describe_table", table="customers")
            orders = await call(client, "select_rows", table="orders", limit=200)
            customers = await call(client, "select_rows", table="customers", limit=200)
            orgs = await call(client, "select_rows", table="organizations")
            seen[name] = {
                "tables": {t["name"] for t in tables["tables"]},
                "customer_columns": {c["name"] for c in described["columns"]},
                "order_orgs": {r["org_id"] for r in orders["rows"]},
                "order_ids": {r["id"] for r in orders["rows"]},
                "customer_ids": {r["id"] for r in customers["rows"]},
                "orgs": {r["id"] for r in orgs["rows"]},
            }
    bob, carol = seen["bob"], seen["carol"]
    assert bob["order_orgs"] == {ACME} and carol["order_orgs"] == {GLOBEX}
    assert not bob["order_ids"] & carol["order_ids"]
    assert not bob["customer_ids"] & carol["customer_ids"]
    assert bob["orgs"] == {ACME} and carol["orgs"] == {GLOBEX}
    assert "email" not in bob["customer_columns"] and "email" in carol["customer_columns"]


async def test_writes_over_stdio_rls_refusal_hidden_columns_and_retry(
    login_dsn: str, users: dict[str, DemoUser], admin: asyncpg.Connection
) -> None:
    before = await admin.fetchval("SELECT count(*) FROM public.orders")
    customer = await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", ACME)
    async with rowgate_client(serve_env(login_dsn, users["bob"])) as client:
        text = await error_text(
            client, "insert_rows", table="orders", idempotency_key=str(uuid.uuid4()),
            rows=[{"org_id": GLOBEX, "customer_id": customer, "total": 1}],
        )  # fmt: skip
        assert "row-level security" in text.lower() or "foreign_key" in text
        assert await admin.fetchval("SELECT count(*) FROM public.orders") == before

        assert "unknown column 'email'" in await error_text(
            client, "select_rows", table="customers", where="email LIKE '%@%'"
        )
        rows = (await call(client, "select_rows", table="customers"))["rows"]
        assert rows and not any("email" in r or "phone" in r for r in rows)

        key = str(uuid.uuid4())
        row = {"customer_id": customer, "total": 9.99, "note": f"stdio-{key}"}
        first = await call(client, "insert_rows", table="orders", rows=[row], idempotency_key=key)
        again = await call(client, "insert_rows", table="orders", rows=[row], idempotency_key=key)
        assert again["replayed"] and again["rows"] == first["rows"]
        assert (
            await admin.fetchval("SELECT count(*) FROM public.orders WHERE note = $1", row["note"])
            == 1
        )

        for where in ("1=1; DROP TABLE public.orders", "pg_sleep(5) IS NULL", "id IN (SELECT 1)"):
            assert "invalid_request" in await error_text(
                client, "select_rows", table="orders", where=where
            )
        assert "unknown argument" in await error_text(client, "select_rows", table="orders", x=1)
    assert await admin.fetchval("SELECT to_regclass('public.orders') IS NOT NULL")


async def test_demo_command_serves_the_demo_user(admin_dsn: str) -> None:
    """`rowgate demo --user carol`, as in the README's Claude Desktop snippet."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the demo command runs the embedded PostgreSQL only")
    from tests.conftest import EMBEDDED_ROOT

    env = {**os.environ, "ROWGATE_EMBEDDED_DIR": str(EMBEDDED_ROOT)}
    async with rowgate_client(env, ["demo", "--user", "carol"]) as client:
        orders = await call(client, "select_rows", table="orders", limit=20)
        assert {r["org_id"] for r in orders["rows"]} == {GLOBEX}
        assert "internal_margin" in orders["rows"][0]


def test_misconfiguration_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROWGATE_", "DATABASE_URL"))}
    cases = [
        ({}, "no identity"),
        ({"ROWGATE_ROLE": "authenticated"}, "DATABASE_URL is not set"),
        (
            {"ROWGATE_ROLE": "authenticated", "DATABASE_URL": "postgresql://x@127.0.0.1:1/db"},
            "cannot connect",
        ),
        ({"DATABASE_URL": "postgresql://x@/db", "ROWGATE_CLAIMS": "{not json"}, "ROWGATE_CLAIMS"),
        ({"DATABASE_URL": "postgresql://x@/db", "ROWGATE_MAX_LIMIT": "lots"}, "ROWGATE_MAX_LIMIT"),
        ({"ROWGATE_CONFIG": str(tmp_path / "missing.toml")}, "config file not found"),
    ]
    for extra, expected in cases:
        done = subprocess.run(
            [ROWGATE, "serve"], env={**env, **extra}, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""


async def test_attack_strings_in_every_argument_over_stdio(
    login_dsn: str, users: dict[str, DemoUser], admin: asyncpg.Connection
) -> None:
    state = "SELECT (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM public.orders o)"
    before = await admin.fetchval(state)
    async with rowgate_client(serve_env(login_dsn, users["bob"])) as client:
        attacks: list[dict[str, Any]] = [
            {"table": "orders", "where": "id = 1; COMMIT; DROP TABLE public.orders"},
            {"table": "orders", "where": "set_config('role', 'postgres', true) = 'x'"},
            {"table": "orders", "where": "internal_margin > 0"},
            {"table": "orders", "order_by": "id; DROP TABLE public.orders"},
            {"table": "orders", "order_by": "internal_margin"},
            {"table": "orders", "columns": ["internal_margin"]},
            {"table": "orders", "columns": ["id; DROP TABLE public.orders"]},
            {"table": "orders; DROP TABLE public.orders"},
            {"table": "pg_catalog.pg_authid"},
            {"table": "rowgate.idempotency_keys"},
        ]
        for arguments in attacks:
            text = await error_text(client, "select_rows", **arguments)
            assert "invalid_request" in text or "unknown_table" in text, (arguments, text)
        customer = await admin.fetchval(
            "SELECT min(id) FROM public.customers WHERE org_id = $1", ACME
        )
        text = await error_text(
            client, "insert_rows", table="orders", idempotency_key=str(uuid.uuid4()),
            rows=[{"customer_id": customer, "status": "x'); DROP TABLE public.orders; --"}],
        )  # fmt: skip
        assert "check_violation" in text
    assert await admin.fetchval(state) == before


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_local_scopes_narrow_the_stdio_user(
    login_dsn: str, users: dict[str, DemoUser], admin: asyncpg.Connection, mode: str
) -> None:
    """Both protocol eras (the handshake era is answered on rowgate's direct path, the
    2026-07-28 era by the SDK) apply the same scope matrix and give the same answers."""
    env = {**serve_env(login_dsn, users["bob"]), "ROWGATE_LOCAL_SCOPES": "db:read"}
    before = await admin.fetchval("SELECT count(*) FROM public.orders")
    async with rowgate_client(env, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {"list_tables", "describe_table", "select_rows"}
        rows = (await call(client, "select_rows", table="orders", limit=3))["rows"]
        assert len(rows) == 3 and {r["org_id"] for r in rows} == {ACME}
        text = await error_text(
            client, "insert_rows", table="orders", rows=[{"status": "draft", "total": 1}],
            idempotency_key=f"scoped-{uuid.uuid4()}",
        )  # fmt: skip
        assert "insufficient_scope" in text and "db:write" in text
        assert "unknown tool" in await error_text(client, "drop_everything")
    assert await admin.fetchval("SELECT count(*) FROM public.orders") == before


def test_malformed_direct_requests_get_json_rpc_errors(
    login_dsn: str, users: dict[str, DemoUser]
) -> None:
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "select_rows", "arguments": "table=orders"}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": [1]},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
    ]  # fmt: skip
    done = subprocess.run(
        [ROWGATE, "serve"],
        input="".join(json.dumps(line) + "\n" for line in lines),
        env=serve_env(login_dsn, users["bob"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    replies = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(replies) == {1, 2, 3, 4}, done.stdout
    assert replies[2]["error"]["code"] == -32602 and replies[3]["error"]["code"] == -32602
    assert replies[4]["result"] == {}
    assert "Traceback" not in done.stderr
