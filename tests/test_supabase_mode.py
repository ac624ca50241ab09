"""Supabase Auth as the authorization server (ROWGATE_SUPABASE_URL). Its tokens are not
bound to a resource (`aud` is always `authenticated`), so only tokens of OAuth clients
registered for this server are trusted. The hosted service cannot run here:
tests/supabase_auth.py stands in for it, with tokens of exactly its shape."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.demo import demo_users
from tests.rowgate_http import RowgateHttp
from tests.supabase_auth import SupabaseAuth

ACME = "a0000000-0000-4000-8000-000000000001"
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
REGISTERED = "mcp-agent-1f3a"


def user(name: str) -> dict[str, Any]:
    principal = demo_users()[name].principal
    return {"sub": principal.subject, "role": principal.role, "email": principal.claims["email"]}


@pytest.fixture(scope="module")
def supabase() -> Iterator[SupabaseAuth]:
    auth = SupabaseAuth().start()
    yield auth
    auth.stop()


def supabase_env(login_dsn: str, auth: SupabaseAuth, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": login_dsn,
        "ROWGATE_SUPABASE_URL": auth.url,
        "ROWGATE_SUPABASE_CLIENT_IDS": f"{REGISTERED},other-registered-client",
        "ROWGATE_AUTH_ALLOWED_ROLES": "authenticated,org_admin",
        "ROWGATE_AUTH_SCOPES_WHEN_ABSENT": "db:read",
        **extra,
    }


@pytest.fixture(scope="module")
def server(login_dsn: str, supabase: SupabaseAuth) -> Iterator[RowgateHttp]:
    env = supabase_env(login_dsn, supabase, ROWGATE_SUPABASE_JWT_SECRET=supabase.legacy_secret)
    with RowgateHttp(env) as running:
        yield running


@pytest.fixture(scope="module")
def remote_server(login_dsn: str, supabase: SupabaseAuth) -> Iterator[RowgateHttp]:
    """No legacy secret here: HS256 tokens are checked at Supabase Auth (supabase-py)."""
    with RowgateHttp(
        supabase_env(login_dsn, supabase, ROWGATE_SUPABASE_KEY=supabase.anon_key)
    ) as s:
        yield s


def select(server: RowgateHttp, token: str, tool: str = "select_rows") -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"table": "orders", "limit": 5}}}  # fmt: skip
    return httpx.post(
        server.url, json=body, headers={**HEADERS, "authorization": f"Bearer {token}"}
    )


def org_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert not result.get("isError"), result
    return {row["org_id"] for row in result["structuredContent"]["rows"]}


def test_registered_client_reads_as_the_user(server: RowgateHttp, supabase: SupabaseAuth) -> None:
    assert org_ids(select(server, supabase.token(user("bob"), REGISTERED))) == {ACME}


def test_unregistered_or_missing_client_is_refused(
    server: RowgateHttp, supabase: SupabaseAuth
) -> None:
    for client_id in ("some-other-app", None):
        response = select(server, supabase.token(user("bob"), client_id))
        assert response.status_code == 403, response.text
        assert "not registered for this server" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"aud": "https://other.example.com"}, 401),
        ({"iss": "https://other-project.supabase.co/auth/v1"}, 401),
        ({"role": "service_role"}, 403),
        ({"exp": 1}, 401),
    ],
)
def test_wrong_claims_are_refused(
    server: RowgateHttp, supabase: SupabaseAuth, overrides: dict[str, Any], status: int
) -> None:
    assert (
        select(server, supabase.token(user("bob"), REGISTERED, **overrides)).status_code == status
    )


def test_scopes_when_absent_narrow_supabase_tokens(
    server: RowgateHttp, supabase: SupabaseAuth
) -> None:
    response = select(server, supabase.token(user("alice"), REGISTERED), tool="delete_rows")
    assert response.status_code == 403 and "db:delete" in response.headers["www-authenticate"]


def test_legacy_hs256_with_the_project_secret(server: RowgateHttp, supabase: SupabaseAuth) -> None:
    assert org_ids(select(server, supabase.legacy_token(user("bob"), REGISTERED))) == {ACME}
    forged = supabase.legacy_token(user("bob"), REGISTERED, secret="not-the-secret" * 3)
    assert select(server, forged).status_code == 401


def test_legacy_hs256_checked_remotely_at_supabase_auth(
    remote_server: RowgateHttp, supabase: SupabaseAuth
) -> None:
    before = supabase.user_lookups
    assert org_ids(select(remote_server, supabase.legacy_token(user("bob"), REGISTERED))) == {ACME}
    assert supabase.user_lookups == before + 1
    forged = supabase.legacy_token(user("bob"), REGISTERED, secret="not-the-secret" * 3)
    assert select(remote_server, forged).status_code == 401
    # The asymmetric tokens never need the round trip.
    assert org_ids(select(remote_server, supabase.token(user("bob"), REGISTERED))) == {ACME}
    assert supabase.user_lookups == before + 2


def test_supabase_mode_needs_the_registered_clients(login_dsn: str, supabase: SupabaseAuth) -> None:
    env = supabase_env(login_dsn, supabase)
    del env["ROWGATE_SUPABASE_CLIENT_IDS"]
    completed = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2 and b"ROWGATE_SUPABASE_CLIENT_IDS" in completed.stderr
