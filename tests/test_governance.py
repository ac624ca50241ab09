"""Audit events, warnings about unprotected tables, and more than one exposed schema."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from schemas.config import Settings
from server import audit
from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal

ACME = "a0000000-0000-4000-8000-000000000001"


async def test_one_audit_event_per_call_without_data_values(rg: Rowgate, bob: Principal) -> None:
    stream = io.StringIO()
    audit.configure(stream)
    try:
        await rg.call(
            "select_rows", {"table": "orders", "where": "note = 'SECRET-VALUE'", "limit": 3}, bob
        )
        with pytest.raises(RowgateError):
            await rg.call("select_rows", {"table": "orders", "where": "pg_sleep(1) IS NULL"}, bob)
    finally:
        audit.audit_log.setLevel(logging.WARNING)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    ok, refused = (json.loads(line) for line in lines)
    assert ok["principal"] == f"authenticated:{bob.subject}"
    assert (ok["tool"], ok["table"], ok["rows"], ok["outcome"]) == (
        "select_rows", "orders", 0, "ok",
    )  # fmt: skip
    assert ok["ms"] >= 0 and ok["time"].endswith("Z")
    assert (refused["outcome"], refused["error_code"]) == ("error", "invalid_request")
    assert "SECRET-VALUE" not in stream.getvalue() and "pg_sleep" not in stream.getvalue()


@pytest.fixture
async def sales_schema(admin: asyncpg.Connection) -> AsyncIterator[None]:
    await admin.execute(
        "CREATE SCHEMA sales;"
        " CREATE TABLE sales.orders (id int PRIMARY KEY, region text);"
        " INSERT INTO sales.orders VALUES (1, 'north'), (2, 'south');"
        " GRANT USAGE ON SCHEMA sales TO authenticated;"
        " GRANT SELECT ON sales.orders TO authenticated;"
    )
    yield
    await admin.execute("DROP SCHEMA sales CASCADE")


async def test_several_schemas_and_a_warning_for_tables_without_rls(
    login_dsn: str, bob: Principal, sales_schema: None, caplog: pytest.LogCaptureFixture
) -> None:
    app = await Rowgate.start(Settings(database_url=login_dsn, schemas=["public", "sales"]))
    try:
        with (
            caplog.at_level(logging.WARNING, logger="rowgate"),
            pytest.raises(RowgateError, match=r"ambiguous; use one of: public\.orders, sales"),
        ):
            await app.call("select_rows", {"table": "orders"}, bob)
        assert any(
            "sales.orders has NO row-level security" in r.getMessage() for r in caplog.records
        )
        rows = (await app.call("select_rows", {"table": "sales.orders"}, bob)).model_dump()
        assert [r["region"] for r in rows["rows"]] == ["north", "south"]
    finally:
        await app.close()


async def test_unmigrated_database_reads_but_refuses_writes_clearly(
    admin_dsn: str, bob: Principal
) -> None:
    from urllib.parse import urlsplit

    from server.demo import create_database, with_user_and_database

    name = f"rowgate_plain_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    owner = with_user_and_database(admin_dsn, urlsplit(admin_dsn).username or "postgres", name)
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute(
            "CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);"
            " ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
            " CREATE POLICY everyone ON notes TO authenticated USING (true) WITH CHECK (true);"
            " GRANT SELECT, INSERT ON notes TO authenticated;"
            " INSERT INTO notes (body) VALUES ('hello');"
        )
        app = await Rowgate.start(
            Settings(database_url=with_user_and_database(admin_dsn, "authenticator", name))
        )
        try:
            rows = (await app.call("select_rows", {"table": "notes"}, bob)).model_dump()["rows"]
            assert rows == [{"id": 1, "body": "hello"}]
            described = (await app.call("describe_table", {"table": "notes"}, bob)).model_dump()
            insertable = {c["name"]: c["insertable"] for c in described["columns"]}
            assert insertable == {"id": False, "body": True}  # id is GENERATED ALWAYS
            with pytest.raises(RowgateError) as error:
                await app.call(
                    "insert_rows",
                    {"table": "notes", "rows": [{"body": "x"}], "idempotency_key": "k"},
                    bob,
                )
            assert error.value.code == "not_migrated" and "rowgate migrate" in error.value.message
            assert await conn.fetchval("SELECT count(*) FROM notes") == 1
        finally:
            await app.close()
    finally:
        await conn.close()
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_grant_changes_apply_without_a_restart(
    login_dsn: str, bob: Principal, admin: asyncpg.Connection
) -> None:
    app = await Rowgate.start(Settings(database_url=login_dsn, catalog_ttl_seconds=0))
    try:

        async def bob_columns() -> set[str]:
            described = await app.call("describe_table", {"table": "customers"}, bob)
            return {c["name"] for c in described.model_dump()["columns"]}

        assert "tier" not in await bob_columns()
        await admin.execute(
            "ALTER TABLE public.customers ADD COLUMN tier text DEFAULT 'gold';"
            " GRANT SELECT (tier) ON public.customers TO authenticated"
        )
        assert "tier" in await bob_columns()
        await admin.execute("REVOKE SELECT (tier) ON public.customers FROM authenticated")
        assert "tier" not in await bob_columns()
        with pytest.raises(RowgateError, match="unknown column 'tier'"):
            await app.call("select_rows", {"table": "customers", "where": "tier = 'gold'"}, bob)
    finally:
        await admin.execute("ALTER TABLE public.customers DROP COLUMN IF EXISTS tier")
        await app.close()


async def test_missing_required_values_name_only_visible_columns(
    rg: Rowgate, bob: Principal, admin: asyncpg.Connection
) -> None:
    customer = await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", ACME)
    with pytest.raises(RowgateError) as visible:
        await rg.call(
            "insert_rows", {"table": "orders", "rows": [{"total": 1}], "idempotency_key": "v"}, bob
        )
    assert "'customer_id' needs a value" in visible.value.message
    await admin.execute(
        "ALTER TABLE public.orders ADD COLUMN secret_code text DEFAULT 'x';"
        " ALTER TABLE public.orders ALTER COLUMN secret_code DROP DEFAULT,"
        " ALTER COLUMN secret_code SET NOT NULL"
    )
    try:
        with pytest.raises(RowgateError) as hidden:
            await rg.call(
                "insert_rows",
                {"table": "orders", "rows": [{"customer_id": customer}], "idempotency_key": "h"},
                bob,
            )
        assert hidden.value.code == "not_null_violation"
        assert "secret_code" not in hidden.value.message
        assert "cannot see" in hidden.value.message
    finally:
        await admin.execute("ALTER TABLE public.orders DROP COLUMN secret_code")
