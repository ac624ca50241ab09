"""Writes: RLS decides, caps hold, retries are safe, and a refused write changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal

ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"
BOB = "00000000-0000-4000-a000-000000000b0b"
ALICE = "00000000-0000-4000-a000-00000000a11c"


def key() -> str:
    return str(uuid.uuid4())


async def write(rg: Rowgate, who: Principal, tool: str, **arguments: Any) -> dict[str, Any]:
    arguments.setdefault("idempotency_key", key())
    return (await rg.call(tool, arguments, who)).model_dump(mode="json")


async def fingerprint(admin: asyncpg.Connection) -> Any:
    return await admin.fetchval(
        "SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM public.orders o"
    )


@pytest.fixture(scope="module")
async def acme_customer(admin: asyncpg.Connection) -> int:
    customer: int = await admin.fetchval(
        "SELECT min(id) FROM public.customers WHERE org_id = $1", ACME
    )
    return customer


@pytest.fixture(scope="module")
async def globex_customer(admin: asyncpg.Connection) -> int:
    customer: int = await admin.fetchval(
        "SELECT min(id) FROM public.customers WHERE org_id = $1", GLOBEX
    )
    return customer


async def an_order(admin: asyncpg.Connection, created_by: str, status: str = "open") -> int:
    order_id: int = await admin.fetchval(
        "SELECT min(id) FROM public.orders o WHERE created_by = $1::uuid AND status = $2"
        " AND NOT EXISTS (SELECT 1 FROM public.invoices i WHERE i.order_id = o.id)",
        created_by,
        status,
    )
    return order_id


async def test_member_inserts_into_own_org_and_defaults_fill_in(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    customer = await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", ACME)
    result = await write(
        rg,
        bob,
        "insert_rows",
        table="orders",
        rows=[{"customer_id": customer, "status": "draft", "total": 12.5, "note": "via rowgate"}],
        returning=["id", "org_id", "created_by", "total"],
    )
    assert result["row_count"] == 1 and not result["replayed"]
    row = result["rows"][0]
    assert (row["org_id"], row["created_by"], row["total"]) == (ACME, BOB, 12.5)
    stored = await admin.fetchrow(
        "SELECT note, org_id::text FROM public.orders WHERE id = $1", row["id"]
    )
    assert stored["note"] == "via rowgate" and stored["org_id"] == ACME


async def test_insert_into_another_org_is_refused_by_rls_and_changes_nothing(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    customer = await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", ACME)
    before = await fingerprint(admin)
    with pytest.raises(RowgateError) as error:
        await write(
            rg,
            bob,
            "insert_rows",
            table="orders",
            rows=[
                {"customer_id": customer, "status": "draft", "total": 1},
                {"org_id": GLOBEX, "customer_id": customer, "status": "draft", "total": 1},
            ],
        )
    assert error.value.code in {"rls_denied", "foreign_key_violation"}
    assert "Nothing was changed" in error.value.message
    assert await fingerprint(admin) == before


async def test_update_of_someone_elses_order_changes_nothing(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    alices = await an_order(admin, ALICE)
    before = await fingerprint(admin)
    result = await write(
        rg, bob, "update_rows", table="orders", set={"note": "hijacked"}, where=f"id = {alices}"
    )
    assert result["row_count"] == 0
    assert await fingerprint(admin) == before


async def test_member_updates_own_order(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    own = await an_order(admin, BOB)
    result = await write(
        rg,
        bob,
        "update_rows",
        table="orders",
        set={"status": "paid", "note": "paid by card"},
        where=f"id = {own}",
        returning=["id", "status"],
    )
    assert result == {
        "rows": [{"id": own, "status": "paid"}],
        "row_count": 1,
        "replayed": False,
        "dry_run": False,
    }
    assert (
        await admin.fetchval("SELECT note FROM public.orders WHERE id = $1", own) == "paid by card"
    )


async def test_moving_a_row_to_another_org_is_refused(rg: Rowgate, bob: Principal) -> None:
    with pytest.raises(RowgateError) as error:
        await write(rg, bob, "update_rows", table="orders", set={"org_id": GLOBEX}, where="id = 1")
    assert error.value.code == "column_not_writable"


async def test_member_may_not_delete(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    before = await fingerprint(admin)
    with pytest.raises(RowgateError) as error:
        await write(rg, bob, "delete_rows", table="orders", where="id > 0")
    assert error.value.code == "operation_not_allowed"
    assert await fingerprint(admin) == before


async def test_write_cap_refuses_mass_update_and_delete(
    rg: Rowgate, alice: Principal, admin: asyncpg.Connection
) -> None:
    before = await fingerprint(admin)
    with pytest.raises(RowgateError) as error:
        await write(rg, alice, "update_rows", table="orders", set={"note": "x"}, where="total > 0")
    assert error.value.code == "too_many_rows" and "Nothing was changed" in error.value.message
    with pytest.raises(RowgateError) as error:
        await write(rg, alice, "delete_rows", table="orders", where="status = 'draft'")
    assert error.value.code in {"too_many_rows", "foreign_key_violation"}
    assert await fingerprint(admin) == before
    with pytest.raises(RowgateError, match="cap"):
        await write(rg, alice, "insert_rows", table="orders", rows=[{"total": 1}] * 101)


async def test_admin_deletes_one_order(
    rg: Rowgate, alice: Principal, carol: Principal, admin: asyncpg.Connection
) -> None:
    target = await an_order(admin, BOB, "draft")
    assert (await write(rg, carol, "delete_rows", table="orders", where=f"id = {target}"))[
        "row_count"
    ] == 0
    result = await write(rg, alice, "delete_rows", table="orders", where=f"id = {target}")
    assert result == {"rows": [{"id": target}], "row_count": 1, "replayed": False, "dry_run": False}
    assert await admin.fetchval("SELECT count(*) FROM public.orders WHERE id = $1", target) == 0


@pytest.mark.parametrize("where", ["", "   "])
async def test_update_and_delete_require_a_where(rg: Rowgate, alice: Principal, where: str) -> None:
    for tool, extra in (("update_rows", {"set": {"note": "x"}}), ("delete_rows", {})):
        with pytest.raises(RowgateError, match="where"):
            await write(rg, alice, tool, table="orders", where=where, **extra)


async def test_retry_with_the_same_key_does_not_write_twice(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection, acme_customer: int
) -> None:
    k = key()
    row = {"customer_id": acme_customer, "status": "draft", "total": 3, "note": f"retry-{k}"}
    first = await write(rg, bob, "insert_rows", table="orders", rows=[row], idempotency_key=k)
    again = await write(rg, bob, "insert_rows", table="orders", rows=[row], idempotency_key=k)
    assert again == {**first, "replayed": True}
    count = await admin.fetchval("SELECT count(*) FROM public.orders WHERE note = $1", row["note"])
    assert count == 1
    with pytest.raises(RowgateError) as error:
        await write(
            rg, bob, "insert_rows", table="orders", rows=[{**row, "total": 4}], idempotency_key=k
        )
    assert error.value.code == "idempotency_key_reused"


async def test_keys_are_per_principal(
    rg: Rowgate, bob: Principal, dave: Principal, acme_customer: int, globex_customer: int
) -> None:
    k = key()
    a = await write(
        rg,
        bob,
        "insert_rows",
        table="orders",
        rows=[{"customer_id": acme_customer, "total": 1}],
        idempotency_key=k,
    )
    b = await write(
        rg,
        dave,
        "insert_rows",
        table="orders",
        rows=[{"customer_id": globex_customer, "total": 1}],
        idempotency_key=k,
    )
    assert not a["replayed"] and not b["replayed"] and a["rows"] != b["rows"]


async def test_concurrent_calls_with_one_key_write_once(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection, acme_customer: int
) -> None:
    k = key()
    note = f"concurrent-{k}"
    results = await asyncio.gather(
        *(
            write(
                rg,
                bob,
                "insert_rows",
                table="orders",
                rows=[{"customer_id": acme_customer, "total": 5, "note": note}],
                idempotency_key=k,
            )
            for _ in range(4)
        ),
        return_exceptions=True,
    )
    successes = [r for r in results if isinstance(r, dict)]
    assert successes and all(r["rows"] == successes[0]["rows"] for r in successes)
    assert all(
        isinstance(r, dict) or (isinstance(r, RowgateError) and r.retryable) for r in results
    )
    assert await admin.fetchval("SELECT count(*) FROM public.orders WHERE note = $1", note) == 1


async def test_a_failed_write_leaves_its_key_unused(
    rg: Rowgate, bob: Principal, acme_customer: int
) -> None:
    k = key()
    row = {"customer_id": acme_customer, "total": -1}
    with pytest.raises(RowgateError) as error:
        await write(rg, bob, "insert_rows", table="orders", rows=[row], idempotency_key=k)
    assert error.value.code == "check_violation"
    ok = await write(
        rg, bob, "insert_rows", table="orders", rows=[{**row, "total": 1}], idempotency_key=k
    )
    assert ok["row_count"] == 1 and not ok["replayed"]


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ({"total": -1}, "check_violation"),
        ({"status": "paid' OR '1'='1"}, "check_violation"),
        ({"customer_id": 999999}, "foreign_key_violation"),
        ({"total": "lots"}, "invalid_value"),
        ({"total": {"nested": True}}, "invalid_request"),
        ({"internal_margin": 1}, "invalid_request"),
        ({"id": 5}, "column_not_writable"),
    ],
)
async def test_constraint_and_type_errors_are_clear_and_change_nothing(
    rg: Rowgate,
    bob: Principal,
    admin: asyncpg.Connection,
    acme_customer: int,
    row: dict[str, Any],
    code: str,
) -> None:
    before = await fingerprint(admin)
    with pytest.raises(RowgateError) as error:
        await write(
            rg,
            bob,
            "insert_rows",
            table="orders",
            rows=[{"customer_id": acme_customer, "total": 1, **row}],
        )
    assert error.value.code == code
    message = error.value.message
    assert "Failing row" not in message and "DETAIL" not in message
    assert "internal_margin" not in message.partition("Available:")[2]
    assert await fingerprint(admin) == before


async def test_hostile_values_are_stored_as_plain_data(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection, acme_customer: int
) -> None:
    hostile = "'); DROP TABLE public.orders; COMMIT; SELECT set_config('role','postgres',false); --"
    result = await write(
        rg,
        bob,
        "insert_rows",
        table="orders",
        rows=[{"customer_id": acme_customer, "total": 1, "note": hostile}],
        returning=["id", "note"],
    )
    assert result["rows"][0]["note"] == hostile
    assert await admin.fetchval("SELECT to_regclass('public.orders') IS NOT NULL")
