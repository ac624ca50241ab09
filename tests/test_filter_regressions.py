"""Every filter that once meant something else in rowgate than in Postgres, fixed in place:
rowgate's rows must be Postgres' rows for the same text, role and claims."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal
from tests.oracle import postgres_answer, rowgate_ids, select_ids

# Each must give exactly Postgres' rows on public.orders (as alice, who sees every column).
SAME_AS_POSTGRES = [
    # Negations kept.
    "note IS NOT NULL",
    "note NOTNULL",
    "note ISNULL",
    "(total > 100) IS NOT UNKNOWN",
    "(total > 1000) IS UNKNOWN",
    "(note = 'x') IS UNKNOWN",
    "(id % 3 = 0) IS NOT TRUE",
    "(id % 3 = 0) IS NOT FALSE",
    "id NOT IN (1, 2, NULL)",
    "id NOT IN (1, 2)",
    "status NOT LIKE 'p%'",
    "status NOT ILIKE 'P%'",
    "status NOT BETWEEN 'a' AND 'p' = false",
    "id NOT BETWEEN SYMMETRIC 100 AND 1",
    "NOT id > 5 AND id < 10",
    # Number literals keep Postgres' types.
    "'0111' = 111",
    "96.22 > 699.74",
    "CAST(total AS real) = 1611.59",
    "'x' || 1e2 = 'x100'",
    "'x' || 1.50 = 'x1.50'",
    "id = -2147483648",
    "id < 2147483648",
    "id > -9223372036854775808",
    "id = - -5",
    "id = -(-5)",
    "id > 2.5",
    "id = 5.0",
    # Integer division, modulo, BETWEEN SYMMETRIC.
    "id / 2 = 1",
    "id % 7 = 3",
    "72 % 7 = 2",
    "10 - id % 4 = 7",
    "id BETWEEN SYMMETRIC 5 AND 2",
    # Postgres reads date, time and uuid strings.
    "created_at > '2024-09-03 11:00:00+01'",
    "created_at::timestamp > '2024-09-03 11:00:00+01'",
    "created_at::timestamp >= '2024-09-03 11:00:13.3999999'",
    "created_at > 'today'",
    "created_at < 'infinity'",
    "now() - created_at > '30 days'",
    "created_at > current_date - 7",
    "created_at > now() - interval '400 days'",
    "org_id = 'A0000000-0000-4000-8000-000000000001'",
    "org_id = '{a0000000-0000-4000-8000-000000000001}'",
    "total > '1000.5'",
    # Escape strings, dollar quotes, quotes and backslashes.
    "status = E'p\\141id'",
    "status = E'pa\\x69d'",
    "note = E'a\\nb'",
    "status = $$paid$$",
    "status = $tag$paid$tag$",
    "note LIKE '%\\%%'",
    "note LIKE 'a!%' ESCAPE '!'",
    "status <> 'it''s'",
    "status <> ''",
    # Literals whose type nothing determines.
    "'abc' IS NULL",
    "'abc' IS NOT NULL",
    "'a' = 'a'",
    # Functions and casts.
    "date_trunc('mon', created_at) = '2024-09-01'",
    "extract(epoch from created_at) > 1700000000",
    "round(total, 1) > 100.55",
    "trim(both 'p' from status) = 'aid'",
    "coalesce(note, 'none') = 'none'",
    "greatest(id, 10) = 10",
    "status::char(2) = 'pa'",
    "total::numeric(10,1) > 100.0",
    "created_at AT TIME ZONE 'America/New_York' > '2024-09-03'",
    "public.orders.id = 5",
    # A literal Postgres copies (the operand of BETWEEN and IN) is typed once per copy.
    "'0111' BETWEEN '0111' AND id",
    "'2025-06-01' BETWEEN SYMMETRIC '2025-06-01' AND created_at",
    "'0111' BETWEEN SYMMETRIC id AND '96.22'",
    "'A0000000-0000-4000-8000-000000000001' IN (NULL, org_id)",
    "'2024-09-03 11:00:00+01' NOT BETWEEN created_at AND created_at::timestamp",
    # A typed literal is one constant: `::date` applies to it, not to its string.
    "'2025-06-01'::date - timestamp '2024-09-03T10:00:00Z'::date > 0",
    "created_at > timestamp with time zone '2024-09-03 10:00+02'",
    "status NOT BETWEEN SYMMETRIC ('a' || 'b') AND 'z'",
]

# Postgres rejects these; rowgate must refuse them too (with Postgres' own reason).
REJECTED_BY_POSTGRES = [
    "status = 5",
    "created_at::date = '2024-W40-7'",
    "org_id = 'urn:uuid:a0000000-0000-4000-8000-000000000001'",
    "total > '1_000.5x'",
    "id = '٣'",
    "note IS UNKNOWN",
    "-5::text = '-5'",
    "total / 0 > 1",
    "status = E'\\u12'",
    # Postgres reads every literal while parsing, even one evaluation would skip.
    "'a' = 'a' OR '1.5' = id",
    "true OR (CAST(TRUE AS int) <= '96.22')",
    "id = -5 AND created_at > 'garbage'",
]

# Other dialects and forms outside the grammar: refused with a hint, never given a meaning.
REFUSED = {
    "ifnull(note, 'x') = 'x'": "coalesce",
    "nvl(note, 'x') = 'x'": "coalesce",
    "len(status) = 4": "length",
    "ucase(status) = 'PAID'": "upper",
    "id == 1": "use =",
    "created_at > now() - interval 30 day": "INTERVAL '30 days'",
    "created_at > now() - interval '30' day": "inside the quotes",
    "created_at::date = current_date()": "no parentheses",
    "id = 1_000": "underscores",
    "id = 0x1F": "decimal",
    "+5 = id": "unary +",
    "status ~ 'p'": "regular expressions",
    "status !~ 'p'": "regular expressions",
    "status = 'pa' 'id'": "two string literals",
    "status = U&'p\\0061id'": "U&",
}


@pytest.mark.parametrize("where", SAME_AS_POSTGRES)
async def test_rows_are_postgres_rows(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection, where: str
) -> None:
    expected = await postgres_answer(admin, alice, select_ids("public.orders", where))
    assert expected.ids is not None, f"Postgres refused {where!r}: {expected.show()}"
    assert await rowgate_ids(rg, alice, "orders", where) == expected.ids


@pytest.mark.parametrize("where", REJECTED_BY_POSTGRES)
async def test_filters_postgres_rejects_are_refused(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection, where: str
) -> None:
    assert (await postgres_answer(admin, alice, select_ids("public.orders", where))).ids is None
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": "orders", "where": where}, alice)
    assert "Traceback" not in error.value.message


@pytest.mark.parametrize(("where", "hint"), REFUSED.items())
async def test_other_dialects_are_refused_with_the_postgres_spelling(
    rg: Rowgate, alice: Principal, where: str, hint: str
) -> None:
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": "orders", "where": where}, alice)
    assert error.value.code == "invalid_request"
    assert hint in error.value.message


async def test_an_update_never_lands_on_a_row_its_filter_excludes(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection
) -> None:
    target = await admin.fetchval(
        "SELECT id FROM public.orders WHERE note IS NULL AND org_id = "
        "'a0000000-0000-4000-8000-000000000001' ORDER BY id LIMIT 1"
    )
    result = await rg.call(
        "update_rows",
        {
            "table": "orders",
            "set": {"note": "should not land"},
            "where": f"note IS NOT NULL AND id = {target}",
            "idempotency_key": str(uuid.uuid4()),
        },
        alice,
    )
    assert result.model_dump()["row_count"] == 0
    assert await admin.fetchval("SELECT note FROM public.orders WHERE id = $1", target) is None


async def test_a_second_filter_of_the_same_shape_pages_on(rg: Rowgate, alice: Principal) -> None:
    async def pages(status: str) -> list[int]:
        ids: list[int] = []
        arguments: dict[str, Any] = {
            "table": "orders",
            "columns": ["id", "status"],
            "where": f"status = '{status}'",
            "limit": 200,
        }
        for _ in range(3):
            page = (await rg.call("select_rows", arguments, alice)).model_dump()
            assert {r["status"] for r in page["rows"]} <= {status}
            ids += [r["id"] for r in page["rows"]]
            if page["next_cursor"] is None:
                break
            arguments["cursor"] = page["next_cursor"]
        return ids

    shipped, paid = await pages("shipped"), await pages("paid")
    assert len(shipped) == len(paid) == 600
    assert len(set(paid)) == 600


async def test_a_cursor_does_not_serve_another_filter_of_the_same_shape(
    rg: Rowgate, alice: Principal
) -> None:
    first = await rg.call(
        "select_rows", {"table": "orders", "where": "status = 'paid'", "limit": 5}, alice
    )
    cursor = first.model_dump()["next_cursor"]
    with pytest.raises(RowgateError) as error:
        await rg.call(
            "select_rows",
            {"table": "orders", "where": "status = 'open'", "limit": 5, "cursor": cursor},
            alice,
        )
    assert "different query" in error.value.message


async def test_a_dry_run_reports_the_rows_and_changes_nothing(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection
) -> None:
    where = "status = 'cancelled' AND id < 300"
    before = await admin.fetch("SELECT id, note FROM public.orders ORDER BY id LIMIT 400")
    expected = await postgres_answer(admin, alice, select_ids("public.orders", where))
    key = str(uuid.uuid4())
    for tool, extra in (("update_rows", {"set": {"note": "dry"}}), ("delete_rows", {})):
        result = await rg.call(
            tool,
            {"table": "orders", "where": where, "idempotency_key": key, "dry_run": True, **extra},
            alice,
        )
        dumped = result.model_dump()
        assert dumped["dry_run"] is True
        assert tuple(sorted(r["id"] for r in dumped["rows"])) == expected.ids
    assert await admin.fetch("SELECT id, note FROM public.orders ORDER BY id LIMIT 400") == before
    # The key was not used up: a real write with it runs.
    real = await rg.call(
        "update_rows",
        {"table": "orders", "set": {"note": None}, "where": "id = -1", "idempotency_key": key},
        alice,
    )
    assert real.model_dump()["replayed"] is False
