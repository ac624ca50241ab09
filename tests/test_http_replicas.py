"""Two stateless replicas over one database, behind one canonical resource URL (as behind a
load balancer): either answers any request, retried writes run once, and under load no
principal ever sees another's rows."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from server.demo import demo_users
from tests.authserver import AuthServer, Resource
from tests.node_tools import require_node_tools
from tests.rowgate_http import RowgateHttp

RESOURCE = "https://rowgate.replicas.test/mcp"
ORGS = {
    "alice": "a0000000-0000-4000-8000-000000000001",
    "bob": "a0000000-0000-4000-8000-000000000001",
    "carol": "b0000000-0000-4000-8000-000000000002",
    "dave": "b0000000-0000-4000-8000-000000000002",
}
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
}
LOAD_SECONDS = float(os.environ.get("ROWGATE_LOAD_SECONDS", "30"))
SESSIONS = 50


class Replicas:
    def __init__(self, auth: AuthServer, servers: list[RowgateHttp]) -> None:
        self.auth = auth
        self.servers = servers


@pytest.fixture(scope="module")
def replicas(login_dsn: str) -> Iterator[Replicas]:
    require_node_tools()
    auth = AuthServer(resources={RESOURCE: Resource(ttl=600)}).start()
    env = {
        "DATABASE_URL": login_dsn,
        "ROWGATE_RESOURCE_URL": RESOURCE,
        "ROWGATE_AUTH_ISSUER": auth.issuer,
        "ROWGATE_AUTH_ALLOWED_ROLES": "authenticated,org_admin",
        "ROWGATE_POOL_MAX_SIZE": "8",
    }
    first, second = RowgateHttp(env), RowgateHttp(env)
    try:
        first.start()
        second.start()
        yield Replicas(auth, [first, second])
    finally:
        first.stop()
        second.stop()
        auth.stop()


def message(tool: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def post(server: RowgateHttp, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.url, json=body, headers={**HEADERS, "authorization": f"Bearer {token}"}, timeout=30
    )


def result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["result"]
    assert not answer.get("isError"), answer
    return answer["structuredContent"]  # type: ignore[no-any-return]


def test_both_replicas_accept_the_same_token(replicas: Replicas) -> None:
    token = replicas.auth.token("dave-agent", resource=RESOURCE)
    answers = [
        result(post(server, token, message("select_rows", {"table": "orders", "limit": 5})))
        for server in replicas.servers
    ]
    assert answers[0] == answers[1] and answers[0]["rows"]


async def test_a_write_retried_on_the_other_replica_runs_once(
    replicas: Replicas, admin: asyncpg.Connection
) -> None:
    token = replicas.auth.token("bob-agent", resource=RESOURCE)
    marker = f"replica-retry-{random.randrange(10**9)}"
    write = message(
        "insert_rows",
        {
            "table": "orders",
            "rows": [{"customer_id": 1, "status": "draft", "total": 10, "note": marker}],
            "idempotency_key": marker,
        },
    )
    first = result(post(replicas.servers[0], token, write))
    retried = result(post(replicas.servers[1], token, write))
    assert first["row_count"] == 1 and not first["replayed"]
    assert retried["replayed"] and retried["rows"] == first["rows"]
    assert await admin.fetchval("SELECT count(*) FROM public.orders WHERE note = $1", marker) == 1

    # The same key sent to both replicas at once still writes once.
    racing = f"replica-race-{random.randrange(10**9)}"
    write["params"]["arguments"]["idempotency_key"] = racing
    write["params"]["arguments"]["rows"][0]["note"] = racing
    both = await asyncio.gather(
        *(asyncio.to_thread(post, server, token, write) for server in replicas.servers)
    )
    outcomes = [response.json()["result"] for response in both]
    assert sum(1 for o in outcomes if not o.get("isError")) >= 1
    assert await admin.fetchval("SELECT count(*) FROM public.orders WHERE note = $1", racing) == 1


async def test_load_many_users_two_replicas_no_leaks(replicas: Replicas) -> None:
    """SESSIONS concurrent sessions, each with its own token for one of the demo users,
    spread over both replicas for LOAD_SECONDS. Every answer is checked for its user."""
    users = list(ORGS)
    clients = {name: f"{name}-agent" for name in users}
    subjects = {name: str(demo_users()[name].principal.subject) for name in users}
    tokens = [
        (name, replicas.auth.token(clients[name], resource=RESOURCE))
        for name in itertools.islice(itertools.cycle(users), SESSIONS)
    ]
    calls: Counter[str] = Counter()
    problems: list[str] = []
    deadline = time.monotonic() + LOAD_SECONDS

    async def session(index: int, user: str, token: str) -> None:
        server = replicas.servers[index % 2]
        rng = random.Random(index)
        headers = {**HEADERS, "authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            done = 0
            while done == 0 or time.monotonic() < deadline:
                done += 1
                table = rng.choice(["orders", "customers", "invoices", "users"])
                arguments: dict[str, Any] = {"table": table, "limit": rng.choice([1, 10, 50])}
                if table == "orders" and rng.random() < 0.5:
                    arguments["where"] = rng.choice(
                        ["status = 'shipped'", "total > 100", f"created_by = '{subjects[user]}'"]
                    )
                response = await http.post(server.url, json=message("select_rows", arguments))
                calls[user] += 1
                if response.status_code != 200:
                    problems.append(f"{user}: HTTP {response.status_code} {response.text[:200]}")
                    continue
                answer = response.json()["result"]
                if answer.get("isError"):
                    problems.append(f"{user}: {answer['content'][0]['text'][:200]}")
                    continue
                for row in answer["structuredContent"]["rows"]:
                    if row.get("org_id", ORGS[user]) != ORGS[user]:
                        problems.append(f"{user} saw a row of org {row['org_id']} in {table}")

    await asyncio.gather(*(session(i, user, token) for i, (user, token) in enumerate(tokens)))
    assert not problems, problems[:10]
    assert all(calls[user] > 0 for user in users) and sum(calls.values()) >= SESSIONS
