"""What each demo user sees: organizations are disjoint, hidden columns never appear,
pages are complete and stable."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal

ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"


async def call(rg: Rowgate, who: Principal, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await rg.call(tool, arguments, who)
    return result.model_dump(mode="json")


async def all_ids(rg: Rowgate, who: Principal, **arguments: Any) -> list[int]:
    """Follows next_cursor to the end; the ids of every page, in order."""
    ids: list[int] = []
    cursor = None
    for _ in range(1000):
        page = await call(
            rg,
            who,
            "select_rows",
            columns=["id"],
            **arguments,
            **({"cursor": cursor} if cursor else {}),
        )
        ids += [r["id"] for r in page["rows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


async def test_users_of_different_orgs_see_disjoint_orders(
    rg: Rowgate, bob: Principal, carol: Principal, admin: asyncpg.Connection
) -> None:
    bob_rows = (await call(rg, bob, "select_rows", table="orders", limit=500))["rows"]
    carol_rows = (await call(rg, carol, "select_rows", table="public.orders", limit=500))["rows"]
    assert {r["org_id"] for r in bob_rows} == {ACME}
    assert {r["org_id"] for r in carol_rows} == {GLOBEX}
    assert not {r["id"] for r in bob_rows} & {r["id"] for r in carol_rows}


async def test_list_tables_shows_each_role_its_own_operations(
    rg: Rowgate, alice: Principal, bob: Principal
) -> None:
    bob_tables = {t["name"]: t for t in (await call(rg, bob, "list_tables"))["tables"]}
    alice_tables = {t["name"]: t for t in (await call(rg, alice, "list_tables"))["tables"]}
    assert "delete" not in bob_tables["public.orders"]["operations"]
    assert alice_tables["public.orders"]["operations"] == ["select", "insert", "update", "delete"]
    assert bob_tables["public.orders"]["description"]
    assert not any(name.startswith(("rowgate.", "auth.", "app.")) for name in alice_tables)


async def test_describe_table_hides_columns_the_role_cannot_select(
    rg: Rowgate, alice: Principal, bob: Principal
) -> None:
    bob_view = await call(rg, bob, "describe_table", table="customers")
    alice_view = await call(rg, alice, "describe_table", table="customers")
    bob_columns = {c["name"] for c in bob_view["columns"]}
    assert "email" not in bob_columns and "phone" not in bob_columns
    assert {"email", "phone"} <= {c["name"] for c in alice_view["columns"]}
    assert bob_view["primary_key"] == ["id"]
    orders = await call(rg, bob, "describe_table", table="orders")
    by_name = {c["name"]: c for c in orders["columns"]}
    assert by_name["status"]["updatable"] and not by_name["id"]["writable"]
    assert by_name["total"]["type"] == "numeric(12,2)"
    assert by_name["created_at"]["default"] == "now()"


async def test_hidden_columns_never_come_back(rg: Rowgate, bob: Principal) -> None:
    rows = (await call(rg, bob, "select_rows", table="customers", limit=5))["rows"]
    assert rows and all("email" not in r and "phone" not in r for r in rows)
    orders = (await call(rg, bob, "select_rows", table="orders", limit=5))["rows"]
    assert all("internal_margin" not in r for r in orders)


@pytest.mark.parametrize(
    "arguments",
    [
        {"columns": ["email"]},
        {"where": "email LIKE 'a%'"},
        {"where": "lower(email) = 'x'"},
        {"order_by": "email"},
    ],
)
async def test_hidden_column_is_reported_exactly_like_a_missing_one(
    rg: Rowgate, bob: Principal, arguments: dict[str, Any]
) -> None:
    """A different error for hidden vs. non-existent columns would be an oracle."""
    with pytest.raises(RowgateError) as hidden:
        await rg.call("select_rows", {"table": "customers", **arguments}, bob)
    missing_args = {
        k: (v.replace("email", "nosuchcol") if isinstance(v, str) else ["nosuchcol"])
        for k, v in arguments.items()
    }
    with pytest.raises(RowgateError) as missing:
        await rg.call("select_rows", {"table": "customers", **missing_args}, bob)
    assert hidden.value.code == missing.value.code == "invalid_request"
    assert hidden.value.message.replace("email", "nosuchcol") == missing.value.message
    assert "phone" not in hidden.value.message


async def test_filters_and_ordering(rg: Rowgate, alice: Principal) -> None:
    page = await call(
        rg,
        alice,
        "select_rows",
        table="orders",
        columns=["id", "total", "status"],
        where="status = 'open' AND total > 100 AND created_at > now() - interval '3 years'",
        order_by="total DESC, id",
        limit=20,
    )
    totals = [r["total"] for r in page["rows"]]
    assert totals == sorted(totals, reverse=True) and totals[-1] > 100
    assert all(set(r) == {"id", "total", "status"} and r["status"] == "open" for r in page["rows"])


async def test_pages_cover_every_visible_row_exactly_once(
    rg: Rowgate, dave: Principal, admin: asyncpg.Connection
) -> None:
    where = "status IN ('draft', 'open', 'cancelled') AND note IS NULL"
    expected = await admin.fetchval(
        "SELECT count(*) FROM public.orders WHERE org_id = $1::uuid"
        " AND status IN ('draft', 'open', 'cancelled') AND note IS NULL",
        GLOBEX,
    )
    seen = await all_ids(
        rg, dave, table="orders", where=where, order_by="created_at DESC", limit=97
    )
    assert expected > 200
    assert len(seen) == len(set(seen)) == expected


async def test_nullable_sort_column_paginates_completely(rg: Rowgate, carol: Principal) -> None:
    seen = await all_ids(rg, carol, table="customers", order_by="notes DESC", limit=7)
    everything = await call(rg, carol, "select_rows", table="customers", limit=500)
    assert sorted(seen) == sorted(r["id"] for r in everything["rows"])
    assert len(seen) == len(set(seen))


async def test_default_and_maximum_limit(rg: Rowgate, bob: Principal) -> None:
    page = await call(rg, bob, "select_rows", table="orders")
    assert page["row_count"] == rg.settings.limits.default_limit and page["next_cursor"]
    with pytest.raises(RowgateError, match="maximum"):
        await rg.call("select_rows", {"table": "orders", "limit": 100000}, bob)


async def test_cursor_of_another_query_is_refused(rg: Rowgate, bob: Principal) -> None:
    page = await call(rg, bob, "select_rows", table="orders", where="total > 10", limit=5)
    with pytest.raises(RowgateError, match="different query"):
        await rg.call(
            "select_rows",
            {"table": "orders", "where": "total > 11", "cursor": page["next_cursor"]},
            bob,
        )
    with pytest.raises(RowgateError, match="cursor is not valid"):
        await rg.call("select_rows", {"table": "orders", "cursor": "%%%not-base64"}, bob)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"table": "ordrs"}, "Did you mean"),
        ({"table": "orders", "columns": ["totl"]}, "Did you mean total"),
        ({"table": "orders", "where": "totl > 1"}, "Did you mean total"),
        ({"table": "orders", "where": "total >"}, "could not parse where"),
        ({"table": "orders", "limit": 0}, "limit"),
        ({"table": "orders", "limit": "5"}, "limit"),
        ({"table": "orders", "bogus": 1}, "unknown argument 'bogus'"),
        ({}, "table is required"),
        # Postgres' own typing: text = integer has no operator; the literal is read by the
        # column type's input function; a bigint equals no numeric 1.5.
        ({"table": "orders", "where": "status = 5"}, "Types do not match"),
        ({"table": "orders", "where": "total > 'abc'"}, "invalid input syntax for type numeric"),
        ({"table": "orders", "where": "created_at > 'yesterday-ish'"}, "timestamp with time zone"),
        ({"table": "orders", "where": "id = 1.5"}, None),
    ],
)
async def test_bad_requests_get_clear_errors(
    rg: Rowgate, bob: Principal, arguments: dict[str, Any], fragment: str | None
) -> None:
    if fragment is None:  # a valid filter that matches nothing
        assert (await call(rg, bob, "select_rows", **arguments))["rows"] == []
        return
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", arguments, bob)
    assert fragment in error.value.message
    assert "Traceback" not in error.value.message


async def test_settings_do_not_leak_between_calls_on_a_pooled_connection(
    rg: Rowgate, alice: Principal, carol: Principal
) -> None:
    for _ in range(3):
        a = await call(rg, alice, "select_rows", table="orders", columns=["org_id"], limit=50)
        c = await call(rg, carol, "select_rows", table="orders", columns=["org_id"], limit=50)
        assert {r["org_id"] for r in a["rows"]} == {ACME}
        assert {r["org_id"] for r in c["rows"]} == {GLOBEX}
    async with rg.db.pool.acquire() as conn:
        state = await conn.fetchrow(
            "SELECT current_user, current_setting('request.jwt.claims', true) AS claims,"
            " current_setting('statement_timeout') AS timeout"
        )
    assert state["current_user"] == "authenticator"
    assert not state["claims"]
    assert state["timeout"] == "0"
