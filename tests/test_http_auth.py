"""rowgate over Streamable HTTP as an OAuth 2.1 resource server, against a real
authorization server on loopback (oidc-provider, tests/authserver.py) and a real rowgate
process. Tokens the authorization server would never issue (expired, wrong issuer,
`alg: none`, ...) are forged with its own keys."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.authserver import AuthServer, Resource, generate_key
from tests.node_tools import require_node_tools
from tests.rowgate_http import RowgateHttp, free_port

ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"
OTHER_RESOURCE = "https://other.example.com/mcp"
MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
}


class Stack:
    def __init__(
        self,
        auth: AuthServer,
        server: RowgateHttp,
        resource: str,
        env: dict[str, str],
        opaque_port: int,
    ) -> None:
        self.env = env
        self.opaque_port = opaque_port
        self.auth = auth
        self.server = server
        self.resource = resource
        self.tokens: list[str] = []

    def token(
        self, client_id: str, *, resource: str | None = None, scope: str | None = None
    ) -> str:
        token = self.auth.token(client_id, resource=resource or self.resource, scope=scope)
        self.tokens.append(token)
        return token

    def forge(self, client_id: str, **overrides: Any) -> str:
        claims = self.auth.claims_for(client_id, resource=self.resource, **overrides)
        token = self.auth.forge(claims)
        self.tokens.append(token)
        return token

    def post(self, token: str | None, message: dict[str, Any], **headers: str) -> httpx.Response:
        sent = dict(MCP_HEADERS, **headers)
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return httpx.post(self.server.url, json=message, headers=sent, timeout=30)

    def call(self, token: str | None, tool: str, arguments: dict[str, Any]) -> httpx.Response:
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        return self.post(token, message)


def opaque_resource(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def stack(login_dsn: str) -> Iterator[Stack]:
    require_node_tools()
    port, opaque_port = free_port(), free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    auth = AuthServer(
        resources={
            resource: Resource(),
            OTHER_RESOURCE: Resource(),
            opaque_resource(opaque_port): Resource(format="opaque"),
        }
    ).start()
    user, secret = auth.introspection_credentials
    env = {
        "DATABASE_URL": login_dsn,
        "ROWGATE_AUTH_ISSUER": auth.issuer,
        "ROWGATE_AUTH_ALLOWED_ROLES": "authenticated,org_admin",
        "ROWGATE_AUTH__JWKS_REFRESH_SECONDS": "0",
        "ROWGATE_AUTH_INTROSPECTION_CLIENT_ID": user,
        "ROWGATE_AUTH_INTROSPECTION_CLIENT_SECRET": secret,
    }
    try:
        with RowgateHttp(env, port=port) as server:
            yield Stack(auth, server, resource, env, opaque_port)
    finally:
        auth.stop()


def rows_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert not result.get("isError"), result
    rows: list[dict[str, Any]] = result["structuredContent"]["rows"]
    return rows


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
    assert reason in response.json()["error_description"]


def test_valid_token_reads_as_that_user(stack: Stack) -> None:
    rows = rows_of(stack.call(stack.token("alice-agent"), "select_rows", {"table": "orders"}))
    assert rows and {r["org_id"] for r in rows} == {ACME}
    rows = rows_of(stack.call(stack.token("carol-agent"), "select_rows", {"table": "orders"}))
    assert rows and {r["org_id"] for r in rows} == {GLOBEX}


def test_no_token_gets_a_challenge_pointing_at_the_metadata(stack: Stack) -> None:
    response = stack.call(None, "select_rows", {"table": "orders"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    assert metadata_url == stack.server.origin + "/.well-known/oauth-protected-resource/mcp"
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == stack.resource
    assert metadata["authorization_servers"] == [stack.auth.issuer]
    assert set(metadata["scopes_supported"]) == {"db:read", "db:write", "db:delete"}
    assert httpx.get(stack.server.origin + "/healthz").json() == {"status": "ok"}
    assert httpx.get(stack.server.origin + "/readyz").json() == {"status": "ready"}


def test_token_for_another_audience_is_rejected(stack: Stack) -> None:
    token = stack.token("alice-agent", resource=OTHER_RESOURCE)
    refused(stack.call(token, "list_tables", {}), 401, "not issued for this server")
    listed = stack.forge("alice-agent", aud=[OTHER_RESOURCE, "https://third.example.com"])
    refused(stack.call(listed, "list_tables", {}), 401, "not issued for this server")
    including = stack.forge("alice-agent", aud=[OTHER_RESOURCE, stack.resource])
    assert stack.call(including, "list_tables", {}).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.com"}, "another authorization server"),
        ({"exp": -3600}, "expired"),
        ({"exp": -100}, "expired"),  # beyond the 30 s skew
        ({"nbf": 3600}, "not valid yet"),
        ({"exp": None}, "invalid"),
    ],
)
def test_bad_claims_are_rejected(stack: Stack, overrides: dict[str, Any], reason: str) -> None:
    now = int(time.time())
    claims = {
        key: (now + value if key in ("exp", "nbf") and value is not None else value)
        for key, value in overrides.items()
    }
    refused(stack.call(stack.forge("bob-agent", **claims), "list_tables", {}), 401, reason)


def test_expiry_within_the_skew_is_accepted(stack: Stack) -> None:
    token = stack.forge("bob-agent", exp=int(time.time()) - 10)
    assert stack.call(token, "list_tables", {}).status_code == 200


def test_forged_signatures_are_rejected(stack: Stack) -> None:
    claims = stack.auth.claims_for("alice-agent", resource=stack.resource)
    rsa = stack.auth.key(alg="RS256")
    forged = {
        "alg none": stack.auth.forge(claims, alg="none"),
        "HS256 keyed with the public key": stack.auth.forge(
            claims, alg="HS256", key=rsa.public_pem, kid=rsa.kid
        ),
        "unknown kid": stack.auth.forge(claims, key=generate_key("RS256").private_key, kid="nope"),
        "garbled": stack.token("alice-agent")[:-12] + "A" * 12,
        "not a JWT": "definitely.not-a-jwt",
    }
    for name, token in forged.items():
        stack.tokens.append(token)
        response = stack.call(token, "select_rows", {"table": "orders"})
        assert response.status_code == 401, (name, response.text)


def test_role_not_on_the_allowlist_is_refused(stack: Stack) -> None:
    response = stack.call(stack.token("eve-agent"), "list_tables", {})
    assert response.status_code == 403 and "service_role" in response.json()["error_description"]


async def test_missing_scope_is_403_naming_it_and_changes_nothing(
    stack: Stack, admin: asyncpg.Connection
) -> None:
    token = stack.token("bob-readonly")
    assert rows_of(stack.call(token, "select_rows", {"table": "orders", "limit": 1}))
    before = await admin.fetchval("SELECT count(*) FROM public.orders")
    response = stack.call(
        token,
        "insert_rows",
        {"table": "orders", "rows": [{"status": "new", "total": 1}], "idempotency_key": "ro-1"},
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="db:write"' in response.headers["www-authenticate"]
    assert await admin.fetchval("SELECT count(*) FROM public.orders") == before
    listing = stack.post(token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).json()
    names = {tool["name"] for tool in listing["result"]["tools"]}
    assert names == {"list_tables", "describe_table", "select_rows"}


def test_users_never_see_each_others_rows(stack: Stack) -> None:
    everything = {"table": "customers", "limit": 500}
    alice = {
        r["id"] for r in rows_of(stack.call(stack.token("alice-agent"), "select_rows", everything))
    }
    carol = {
        r["id"] for r in rows_of(stack.call(stack.token("carol-agent"), "select_rows", everything))
    }
    assert alice and carol and not alice & carol


def test_same_user_through_two_clients_sees_what_policies_give_each(stack: Stack) -> None:
    agent = stack.token("alice-agent")
    bot = stack.token("alice-support-bot")
    assert rows_of(stack.call(agent, "select_rows", {"table": "invoices"}))
    assert rows_of(stack.call(bot, "select_rows", {"table": "invoices"})) == []
    orders = {"table": "orders", "limit": 20, "order_by": "id"}
    assert rows_of(stack.call(agent, "select_rows", orders)) == rows_of(
        stack.call(bot, "select_rows", orders)
    )


def test_opaque_tokens_are_introspected(stack: Stack) -> None:
    """A second server whose resource the authorization server issues opaque tokens for."""
    with RowgateHttp(stack.env, port=stack.opaque_port) as server:
        token = stack.token("dave-agent", resource=opaque_resource(stack.opaque_port))
        assert token.count(".") != 2
        headers = dict(MCP_HEADERS, authorization=f"Bearer {token}")
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "select_rows", "arguments": {"table": "orders"}}}  # fmt: skip
        response = httpx.post(server.url, json=message, headers=headers, timeout=30)
        assert {r["org_id"] for r in rows_of(response)} == {GLOBEX}
        # The same opaque token at the first server: issued for another resource.
        refused(stack.call(token, "list_tables", {}), 401, "not issued for this server")
        unknown = stack.call("x" * 43, "list_tables", {})
        assert unknown.status_code == 401


def test_key_rotation(stack: Stack) -> None:
    old = stack.token("bob-agent")
    assert stack.call(old, "list_tables", {}).status_code == 200
    stack.auth.restart(keys=[generate_key("RS256"), generate_key("ES256")])
    new = stack.token("bob-agent")
    assert stack.call(new, "list_tables", {}).status_code == 200
    refused(stack.call(old, "list_tables", {}), 401, "signing key")


@asynccontextmanager
async def mcp_client(
    url: str, token: str, mode: Literal["legacy", "auto"]
) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_real_mcp_client_in_both_protocol_modes(
    stack: Stack, mode: Literal["legacy", "auto"]
) -> None:
    async with mcp_client(stack.server.url, stack.token("bob-readonly"), mode) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {"list_tables", "describe_table", "select_rows"}
        result = await client.call_tool("select_rows", {"table": "orders", "limit": 3})
        assert not result.is_error
        assert result.structured_content is not None
        assert {r["org_id"] for r in result.structured_content["rows"]} == {ACME}


def test_tokens_never_reach_the_log_and_failures_are_audited(stack: Stack) -> None:
    assert stack.call(stack.token("alice-agent"), "list_tables", {}).status_code == 200
    expired = stack.forge("alice-agent", exp=int(time.time()) - 3600)
    assert stack.call(expired, "list_tables", {}).status_code == 401
    elsewhere = stack.token("alice-agent", resource=OTHER_RESOURCE)
    assert stack.call(elsewhere, "list_tables", {}).status_code == 401
    log = stack.server.log_text()
    assert stack.tokens and not [t for t in stack.tokens if t[-40:] in log]
    failures = [json.loads(line) for line in log.splitlines() if '"event":"auth_failure"' in line]
    reasons = {f["reason"] for f in failures}
    assert any("expired" in r for r in reasons) and any("not issued" in r for r in reasons)
    assert any(f["client_id"] == "alice-agent" and f["subject"] for f in failures)
