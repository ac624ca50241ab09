"""The scope matrix narrows what a token may do before anything reaches Postgres; Postgres
still decides rows and columns. Same matrix for every transport (here: Rowgate.call)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from schemas.config import ScopeGrant, Settings
from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal
from server.scopes import ScopeError


def scoped(who: Principal, *scopes: str) -> Principal:
    return dataclasses.replace(who, scopes=frozenset(scopes))


async def test_read_scope_reads_and_cannot_write(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection
) -> None:
    reader = scoped(alice, "db:read")
    rows = (await rg.call("select_rows", {"table": "orders", "limit": 3}, reader)).model_dump()
    assert rows["row_count"] == 3
    before = await admin.fetchval("SELECT count(*) FROM public.orders")
    with pytest.raises(ScopeError, match="insert_rows needs the scope db:write") as refused:
        await rg.call(
            "insert_rows",
            {"table": "orders", "rows": [{"status": "new", "total": 1}], "idempotency_key": "s1"},
            reader,
        )
    assert refused.value.code == "insufficient_scope" and refused.value.scopes == ("db:write",)
    with pytest.raises(ScopeError, match="db:delete"):
        await rg.call("delete_rows", {"table": "orders", "where": "id = 1"}, reader)
    assert await admin.fetchval("SELECT count(*) FROM public.orders") == before


async def test_a_token_without_scopes_may_call_nothing(rg: Rowgate, bob: Principal) -> None:
    nobody = scoped(bob)
    for tool, arguments in [
        ("list_tables", {}),
        ("select_rows", {"table": "orders"}),
    ]:
        with pytest.raises(ScopeError):
            await rg.call(tool, arguments, nobody)
    assert rg.permissions.tools(nobody, ["list_tables", "select_rows"]) == []


async def test_listing_shows_only_what_the_scopes_allow(rg: Rowgate, alice: Principal) -> None:
    full = (await rg.call("list_tables", {}, alice)).model_dump()["tables"]
    read_only = (await rg.call("list_tables", {}, scoped(alice, "db:read"))).model_dump()["tables"]
    assert {t["name"] for t in full} == {t["name"] for t in read_only}
    assert any(set(t["operations"]) > {"select"} for t in full)
    assert all(t["operations"] == ["select"] for t in read_only)
    described = (
        await rg.call("describe_table", {"table": "orders"}, scoped(alice, "db:read"))
    ).model_dump()
    assert described["operations"] == ["select"]
    assert not any(c["writable"] for c in described["columns"])


@pytest.fixture(scope="module")
async def per_table(settings: Settings) -> AsyncIterator[Rowgate]:
    matrix = {
        "crm:read": ScopeGrant(
            tools=["list_tables", "describe_table", "select_rows"],
            tables=["customers", "public.organizations"],
        ),
        "orders:write": ScopeGrant(tools=["update_rows"], tables=["public.orders"]),
    }
    app = await Rowgate.start(settings.model_copy(update={"scopes": matrix}))
    yield app
    await app.close()


async def test_per_table_grants(per_table: Rowgate, alice: Principal) -> None:
    crm = scoped(alice, "crm:read")
    rows = await per_table.call("select_rows", {"table": "public.customers", "limit": 1}, crm)
    assert rows.model_dump()["row_count"] == 1
    with pytest.raises(ScopeError, match=r"select_rows on public\.orders"):
        await per_table.call("select_rows", {"table": "orders"}, crm)
    listed = {
        t["name"] for t in (await per_table.call("list_tables", {}, crm)).model_dump()["tables"]
    }
    assert listed == {"public.customers", "public.organizations"}
    with pytest.raises(ScopeError, match="update_rows needs the scope orders:write"):
        await per_table.call(
            "update_rows", {"table": "orders", "where": "id = 1", "set": {"status": "x"}}, crm
        )
    # A tool nobody configured is refused for everyone who is scope-limited.
    with pytest.raises(ScopeError, match="no scope allows delete_rows"):
        await per_table.call("delete_rows", {"table": "orders", "where": "id = 1"}, crm)


async def test_unknown_table_under_a_table_grant_names_the_table_not_the_scope(
    per_table: Rowgate, alice: Principal
) -> None:
    with pytest.raises(RowgateError) as refused:
        await per_table.call("select_rows", {"table": "nope"}, scoped(alice, "crm:read"))
    assert refused.value.code == "unknown_table"


async def test_local_user_is_not_narrowed_unless_configured(rg: Rowgate, alice: Principal) -> None:
    assert alice.scopes is None
    assert rg.permissions.tools(alice, ["delete_rows", "select_rows"]) == [
        "delete_rows",
        "select_rows",
    ]
