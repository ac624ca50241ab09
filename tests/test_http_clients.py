"""rowgate's HTTP transport as clients it did not write see it.

- The TypeScript MCP SDK's own client (tests/node/mcp_client.mjs, @modelcontextprotocol/sdk),
  in its default mode (initialize at protocol 2025-11-25), with bearer tokens from a real
  authorization server (tests/authserver.py): what each user sees, what a read-only token may
  not do, and what happens without a token.
- The MCP conformance suite (@modelcontextprotocol/conformance) against an auth-off instance on
  loopback: its generic server scenarios must have no FAILURE. The others need the suite's
  fixture tools, prompts and resources (test_image_content, test://static-text, ...), which
  rowgate does not have; they are run too, and reported in the failure message, not asserted.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from server.demo import demo_users
from server.tools import TOOLS
from tests.authserver import AuthServer, Resource
from tests.node_tools import NodeTools, require_node_tools
from tests.rowgate_http import RowgateHttp, free_port

READ_TOOLS = {"list_tables", "describe_table", "select_rows"}
CLIENT_TIMEOUT = 90.0
CONFORMANCE_TIMEOUT = 300.0
# The scenarios of the suite that any MCP server must pass, whatever its tools.
GENERIC_SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
)


def ts_client(
    tools: NodeTools,
    url: str,
    *,
    token: str | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the TypeScript SDK client once; its JSON report (see tests/node/mcp_client.mjs)."""
    job = {"url": url, "token": token, "calls": calls or []}
    done = subprocess.run(
        tools.command("mcp_client.mjs"),
        input=json.dumps(job),  # on stdin: the token stays out of the process list
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        cwd=tools.node_dir,
        env=tools.env(),
        check=False,
    )
    assert done.returncode == 0, f"mcp_client.mjs failed:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def exchange(report: dict[str, Any], rpc: str) -> dict[str, Any]:
    """The (last) HTTP exchange the client made for a JSON-RPC method."""
    found = [e for e in report["http"] if e["rpc"] == rpc]
    assert found, f"no HTTP exchange for {rpc}: {report['http']}"
    last: dict[str, Any] = found[-1]
    return last


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer k="v", ...` challenge (rowgate quotes every value)."""
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', header))


# --- the TypeScript SDK client with bearer tokens -------------------------------------------


@dataclass
class AuthedStack:
    tools: NodeTools
    auth: AuthServer
    server: RowgateHttp

    def token(self, client_id: str) -> str:
        return self.auth.token(client_id, resource=self.server.url)

    def client(
        self, client_id: str | None, calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        token = self.token(client_id) if client_id is not None else None
        return ts_client(self.tools, self.server.url, token=token, calls=calls)


@pytest.fixture(scope="module")
def authed(login_dsn: str) -> Iterator[AuthedStack]:
    tools = require_node_tools()
    port = free_port()
    auth = AuthServer(resources={f"http://127.0.0.1:{port}/mcp": Resource()}).start()
    env = {
        "DATABASE_URL": login_dsn,
        "ROWGATE_AUTH_ISSUER": auth.issuer,
        "ROWGATE_AUTH_ALLOWED_ROLES": "authenticated,org_admin",
    }
    try:
        with RowgateHttp(env, port=port) as server:
            assert server.url == f"http://127.0.0.1:{port}/mcp"
            yield AuthedStack(tools, auth, server)
    finally:
        auth.close()


@pytest.fixture(scope="module")
def alice_report(authed: AuthedStack) -> dict[str, Any]:
    """One session of alice's agent: initialize, tools/list, and a page of orders."""
    return authed.client(
        "alice-agent",
        calls=[
            {
                "name": "select_rows",
                "arguments": {
                    "table": "orders",
                    "columns": ["id", "org_id", "status"],
                    "order_by": "id",
                    "limit": 50,
                },
            },
            # The organizations alice may see: her own.
            {"name": "select_rows", "arguments": {"table": "organizations"}},
        ],
    )


def test_ts_client_connects_in_its_default_mode(alice_report: dict[str, Any]) -> None:
    connect = alice_report["connect"]
    assert connect["ok"], connect
    # The SDK offers its latest version with initialize; rowgate agrees to it.
    assert connect["protocol_version"] == "2025-11-25"
    assert connect["server"]["name"] == "rowgate"
    assert "tools" in connect["capabilities"]
    assert "list_tables" in connect["instructions"]
    initialize = exchange(alice_report, "initialize")
    assert initialize["method"] == "POST" and initialize["status"] == 200
    assert exchange(alice_report, "notifications/initialized")["status"] == 202
    # Nothing the client did was refused. Its GET for a standalone SSE stream may get 405
    # (rowgate is stateless and has none), which the transport takes as "no stream".
    for e in alice_report["http"]:
        assert e["status"] < 400 or (e["method"], e["status"]) == ("GET", 405), e


def test_ts_client_lists_all_six_tools_for_alice(alice_report: dict[str, Any]) -> None:
    listing = alice_report["tools"]
    assert listing["ok"], listing
    names = [tool["name"] for tool in listing["tools"]]
    assert len(names) == 6
    assert set(names) == set(TOOLS)
    for tool in listing["tools"]:
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"


async def test_ts_client_select_rows_returns_only_acmes_orders(
    alice_report: dict[str, Any], admin: asyncpg.Connection
) -> None:
    page, orgs = alice_report["calls"]
    # ok: the SDK accepted the result, including its check of structuredContent against the
    # tool's outputSchema.
    assert page["ok"], page
    result = page["result"]
    assert result["isError"] is False, result
    rows = result["structuredContent"]["rows"]
    assert json.loads(result["content"][0]["text"])["rows"] == rows

    org = demo_users()["alice"].principal.claims["org"]
    acme = await admin.fetchval("SELECT id FROM public.organizations WHERE name = $1", org)
    expected = await admin.fetch(
        "SELECT id, org_id, status FROM public.orders WHERE org_id = $1 ORDER BY id LIMIT 50",
        acme,
    )
    assert rows == [
        {"id": r["id"], "org_id": str(r["org_id"]), "status": r["status"]} for r in expected
    ]
    # The same first 50 order ids without RLS belong to more than one org: the page above
    # is RLS's doing, not an accident of the data.
    unfiltered = await admin.fetch("SELECT org_id FROM public.orders ORDER BY id LIMIT 50")
    assert len({r["org_id"] for r in unfiltered}) > 1

    # The one organization alice sees is the one her token names, and it owns every row.
    assert orgs["ok"] and orgs["result"]["isError"] is False, orgs
    visible = orgs["result"]["structuredContent"]["rows"]
    assert [(o["id"], o["name"]) for o in visible] == [(str(acme), org)]


async def test_ts_client_read_only_token_sees_read_tools_and_cannot_insert(
    authed: AuthedStack, admin: asyncpg.Connection
) -> None:
    name = f"ts-client readonly {uuid.uuid4().hex[:8]}"
    report = authed.client(
        "bob-readonly",  # bob's agent with scope db:read only
        calls=[
            {
                "name": "insert_rows",
                "arguments": {
                    "table": "customers",
                    "rows": [{"name": name}],
                    "idempotency_key": uuid.uuid4().hex,
                },
            },
            {"name": "select_rows", "arguments": {"table": "customers", "limit": 1}},
        ],
    )
    assert report["connect"]["ok"], report["connect"]
    assert {t["name"] for t in report["tools"]["tools"]} == READ_TOOLS

    insert, select = report["calls"]
    # The SDK reports the HTTP refusal as a StreamableHTTPError carrying the status.
    assert not insert["ok"], insert
    error = insert["error"]
    assert error["type"] == "StreamableHTTPError"
    assert error["http_status"] == 403
    assert "insufficient_scope" in error["message"]
    refused = next(e for e in report["http"] if e["rpc"] == "tools/call")
    assert refused["status"] == 403
    params = challenge_params(refused["www_authenticate"])
    assert params["error"] == "insufficient_scope"
    assert "db:write" in params["scope"].split()
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
    # Nothing was written, and the session goes on: reads still work.
    assert await admin.fetchval("SELECT count(*) FROM public.customers WHERE name = $1", name) == 0
    assert select["ok"] and select["result"]["isError"] is False, select


def test_ts_client_without_a_token_cannot_connect(authed: AuthedStack) -> None:
    report = authed.client(None)
    connect = report["connect"]
    assert not connect["ok"], connect
    assert connect["error"]["type"] == "StreamableHTTPError"
    assert connect["error"]["http_status"] == 401
    assert report["tools"] is None and report["calls"] == []
    initialize = exchange(report, "initialize")
    assert initialize["status"] == 401
    params = challenge_params(initialize["www_authenticate"])
    assert params["resource_metadata"] == (
        authed.server.origin + "/.well-known/oauth-protected-resource/mcp"
    )
    # Only the initialize was tried.
    assert [e["rpc"] for e in report["http"]] == ["initialize"]


# --- the MCP conformance suite, auth off on loopback ----------------------------------------


@dataclass
class Conformance:
    checks: dict[str, list[dict[str, Any]]]  # scenario -> its checks
    output: str

    def summary(self) -> str:
        lines = []
        for scenario, checks in sorted(self.checks.items()):
            statuses = ", ".join(f"{c['id']}={c['status']}" for c in checks)
            lines.append(f"  {scenario}: {statuses}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def open_server(login_dsn: str) -> Iterator[RowgateHttp]:
    alice = demo_users()["alice"].principal
    env = {
        "DATABASE_URL": login_dsn,
        "ROWGATE_AUTH_DISABLED": "true",
        "ROWGATE_ROLE": alice.role,
        "ROWGATE_CLAIMS": json.dumps(dict(alice.claims)),
    }
    with RowgateHttp(env) as server:
        yield server


@pytest.fixture(scope="module")
def conformance(open_server: RowgateHttp, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
    """The suite's whole active server suite, once (about two seconds)."""
    tools = require_node_tools()
    out = tmp_path_factory.mktemp("conformance")
    command = [str(tools.node), str(tools.bin("conformance")), "server"]
    command += ["--url", open_server.url, "--output-dir", str(out)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=CONFORMANCE_TIMEOUT,
        cwd=out,
        env=tools.env(),
        check=False,
    )
    # The exit status is 1: scenarios for the suite's fixture tools fail. Read the checks.
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(out).glob("server-*/checks.json")):
        scenario = path.parent.name.removeprefix("server-").rsplit("-", 6)[0]
        checks[scenario] = json.loads(path.read_text())
    return Conformance(checks, done.stdout + done.stderr)


@pytest.mark.parametrize("scenario", GENERIC_SCENARIOS)
def test_conformance_generic_scenario_has_no_failure(
    conformance: Conformance, scenario: str
) -> None:
    context = f"\nall scenarios:\n{conformance.summary()}\n\nsuite output:\n{conformance.output}"
    assert scenario in conformance.checks, f"{scenario} did not run{context}"
    checks = conformance.checks[scenario]
    assert checks, f"{scenario} made no checks{context}"
    failed = [c for c in checks if c["status"] == "FAILURE"]
    assert not failed, f"{scenario} failed: {json.dumps(failed, indent=1)}{context}"
    if scenario == "server-sse-multiple-streams":
        # rowgate is stateless: no Mcp-Session-Id, so the scenario stops at a WARNING that
        # says so. test_concurrent_requests_without_a_session checks what it would have.
        assert [c["id"] for c in checks] == ["server-sse-multiple-streams-session"]
    else:
        assert all(c["status"] == "SUCCESS" for c in checks), json.dumps(checks, indent=1)


def test_concurrent_requests_without_a_session(open_server: RowgateHttp) -> None:
    """What server-sse-multiple-streams checks after the session id: several POSTs at once
    (here without a session, as rowgate has none) are all answered, each with its own id."""
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream, application/json",
        "mcp-protocol-version": "2025-11-25",
    }

    def post(i: int) -> httpx.Response:
        message = {"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/list", "params": {}}
        return httpx.post(open_server.url, json=message, headers=headers, timeout=30)

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(post, range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["id"] for r in responses] == [1000, 1001, 1002]
    assert all(len(r.json()["result"]["tools"]) == 6 for r in responses)


def test_ts_client_against_the_auth_off_instance(open_server: RowgateHttp) -> None:
    """Without auth the same client needs no token; resources and prompts are empty lists."""
    report = ts_client(require_node_tools(), open_server.url)
    assert report["connect"]["ok"], report["connect"]
    capabilities = report["connect"]["capabilities"]
    assert {"tools", "resources", "prompts"} <= capabilities.keys()
    assert len(report["tools"]["tools"]) == 6
