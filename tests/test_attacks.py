"""Hostile arguments, as an agent driven by injected text would send them. Each is
refused with a clear error (or is harmless data), and the database is unchanged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlglot import exp

from schemas.config import Settings
from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal
from server.sql.filters import ColumnScope, _Compiler
from server.sql.params import Bindings

ACME = "a0000000-0000-4000-8000-000000000001"


@pytest.fixture
async def unchanged(admin: asyncpg.Connection) -> AsyncIterator[None]:
    """Fails the test if anything about the data or the roles changed."""
    query = (
        "SELECT (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM public.orders o),"
        " (SELECT count(*) FROM pg_roles WHERE rolsuper),"
        " (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)"
    )
    before = await admin.fetchrow(query)
    yield
    assert await admin.fetchrow(query) == before


WHERE_ATTACKS = [
    "1=1; DROP TABLE public.orders",
    "id = 1; COMMIT; DROP TABLE public.orders",
    "id = 1 COMMIT",
    "1=1) OR (1=1",
    "set_config('role', 'postgres', true) IS NOT NULL",
    "set_config('request.jwt.claims', '{\"sub\":\"x\"}', true) = ''",
    "current_setting('request.jwt.claims') LIKE '%'",
    "pg_sleep(10) IS NULL",
    "id IN (SELECT id FROM public.orders)",
    "EXISTS (SELECT 1 FROM pg_authid)",
    "id = (SELECT max(id) FROM public.orders)",
    "nextval('public.orders_id_seq') > 0",
    "setval('public.orders_id_seq', 1) > 0",
    "dblink('dbname=postgres', 'DROP TABLE public.orders') IS NULL",
    "query_to_xml('select * from pg_authid', true, true, '') IS NULL",
    "pg_read_file('/etc/passwd') IS NOT NULL",
    "lo_import('/etc/passwd') > 0",
    'U&"d\\0061ta" = 1',
    'U&"internal\\005Fmargin" > 0',
    "ctid = '(0,1)'",
    "xmin::text = '1'",
    "tableoid > 0",
    "internal_margin > 10",
    "orders.internal_margin > 10",
    "pg_catalog.orders.id = 1",
    "other.orders.id = 1",
    "other.id = 1",
    "public.lower(status) = 'x'",
    "pg_catalog.pg_sleep(1) IS NULL",
    "current_user = 'postgres'",
    "session_user IS NOT NULL",
    "status = E'\\u0000'",
    "status = E'\\000'",
    "status = U&'\\0000'",
    "interval '1' day IS NULL",
    "\"lower\"(status) = 'x'",
    "status::regclass IS NULL",
    # Postgres itself never returns from lexing this (a backend spinning in PARSE, deaf to
    # cancel): rowgate decodes E'' strings itself and must refuse it without asking Postgres.
    "status = E'\\ud83d\U000a5b45'",
    "CAST(status AS pg_catalog.regclass) IS NULL",
    "id = $1",
    "id = ?",
    "id::regclass IS NULL",
    "row(id, total) = row(1, 2)",
    "total > ANY('{1,2}')",
    "note ~ '(a+)+$'",
    "status COLLATE \"C\" = 'open'",
    "(" * 300 + "id = 1" + ")" * 300,
    "NOT " * 200 + "id = 1",
    "id = 1 UNION SELECT 1",
    "id = 1 ORDER BY 1",
    "*",
    "'a' = 'a' -- comment",
    "note = E'\\' OR 1=1 --'",
    "public.orders.id = 1 /* ; DROP TABLE public.orders */",
    # The operand of IN / BETWEEN is rendered as a literal in the generated SQL.
    "'a'' OR true OR ''' IN (status)",
    "E'\\' OR true; DROP TABLE public.orders --' BETWEEN status AND status",
]
# Valid filters among the attacks: they must read only the caller's rows and columns.
HARMLESS = {
    "'a' = 'a' -- comment",
    "note = E'\\' OR 1=1 --'",
    "public.orders.id = 1 /* ; DROP TABLE public.orders */",
    "'a'' OR true OR ''' IN (status)",
    "E'\\' OR true; DROP TABLE public.orders --' BETWEEN status AND status",
}


@pytest.mark.parametrize("where", WHERE_ATTACKS)
async def test_where_attacks_are_refused(
    rg: Rowgate, bob: Principal, where: str, unchanged: None
) -> None:
    try:
        result = await rg.call("select_rows", {"table": "orders", "where": where, "limit": 5}, bob)
    except RowgateError as error:
        assert error.code == "invalid_request", error.message
        assert "Traceback" not in error.message
        return
    rows = result.model_dump()["rows"]
    assert where in HARMLESS
    if "IN (status)" in where or "BETWEEN status" in where:
        assert rows == []  # the literal is compared with status, never run
    assert all(r["org_id"] == ACME and "internal_margin" not in r for r in rows)


@pytest.mark.parametrize("where", WHERE_ATTACKS[:20])
async def test_write_where_attacks_are_refused(
    rg: Rowgate, alice: Principal, where: str, unchanged: None
) -> None:
    for tool, extra in (("update_rows", {"set": {"note": "pwned"}}), ("delete_rows", {})):
        with pytest.raises(RowgateError):
            await rg.call(
                tool,
                {"table": "orders", "where": where, "idempotency_key": "k", **extra},
                alice,
            )


@pytest.mark.parametrize(
    "order_by",
    [
        "id; DROP TABLE public.orders",
        "id LIMIT 1",
        "id OFFSET 5",
        "(SELECT 1)",
        "random()",
        "internal_margin",
        "1",
        "id NULLS FIRST",
        "id, id",
        "ctid",
        "pg_sleep(1)",
        "id USING <",
    ],
)
async def test_order_by_attacks_are_refused(
    rg: Rowgate, bob: Principal, order_by: str, unchanged: None
) -> None:
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": "orders", "order_by": order_by}, bob)
    assert error.value.code == "invalid_request"


@pytest.mark.parametrize(
    "columns",
    [
        ["*"],
        ["id; DROP TABLE public.orders"],
        ['"id"'],
        ["internal_margin"],
        ["ctid"],
        ["ID"],
        ["id", "count(*)"],
        ["org_id AS id"],
    ],
)
async def test_column_attacks_are_refused(
    rg: Rowgate, bob: Principal, columns: list[str], unchanged: None
) -> None:
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": "orders", "columns": columns}, bob)
    assert error.value.code == "invalid_request"


@pytest.mark.parametrize(
    "table",
    [
        "orders; DROP TABLE public.orders",
        'public."orders"',
        "pg_catalog.pg_authid",
        "pg_authid",
        "rowgate.idempotency_keys",
        "rowgate.schema_migrations",
        "information_schema.tables",
        "app.current_org_id",
        "auth.jwt",
        "../orders",
        "generate_series(1,10)",
        "public.orders AS o, pg_authid",
    ],
)
async def test_table_attacks_are_refused(
    rg: Rowgate, alice: Principal, table: str, unchanged: None
) -> None:
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": table}, alice)
    assert error.value.code == "unknown_table"


async def test_hostile_claims_are_data_not_sql(
    rg: Rowgate, bob: Principal, unchanged: None
) -> None:
    claims = {
        **bob.claims,
        "email": "x'), set_config('role', 'postgres', true); --",
        "note": "\\'; RESET ROLE; --",
    }
    attacker = Principal(role="authenticated", claims=claims)
    rows = (await rg.call("select_rows", {"table": "orders", "limit": 5}, attacker)).model_dump()
    assert rows["rows"] and all(r["org_id"] == ACME for r in rows["rows"])
    nul = Principal(role="authenticated", claims={"sub": "\x00' OR true --"})
    try:
        result = await rg.call("select_rows", {"table": "orders"}, nul)
    except RowgateError as error:
        assert error.code not in {"internal_error", "database_error"}
    else:
        assert result.model_dump()["rows"] == []


@pytest.mark.parametrize(
    "role",
    [
        "authenticated', true), set_config('role', 'postgres",
        "postgres",
        "service_role",
        "authenticator",
        "pg_read_server_files",
        "nosuchrole",
    ],
)
async def test_privileged_or_foreign_roles_are_refused(
    rg: Rowgate, role: str, unchanged: None
) -> None:
    with pytest.raises(RowgateError) as error:
        await rg.call("select_rows", {"table": "orders"}, Principal(role=role, claims={}))
    assert error.value.code in {"identity_error", "unknown_table"}


async def test_unknown_tool_and_non_object_arguments(rg: Rowgate, bob: Principal) -> None:
    with pytest.raises(RowgateError, match="unknown tool"):
        await rg.call("execute_sql", {"sql": "DROP TABLE public.orders"}, bob)
    with pytest.raises(RowgateError):
        await rg.call("select_rows", {"table": ["orders"]}, bob)


async def test_a_long_statement_times_out_cleanly(rg: Rowgate, alice: Principal) -> None:
    """A filter that makes Postgres work hard hits the statement timeout, not a hang."""
    original = rg.db.limits.statement_timeout_ms
    rg.db.limits.statement_timeout_ms = 1
    try:
        with pytest.raises(RowgateError) as error:
            await rg.call(
                "select_rows",
                {
                    "table": "orders",
                    "where": "length(note || note || note) > 100000 OR "
                    "abs(total * total * total) < 0",
                    "order_by": "note",
                },
                alice,
            )
        assert error.value.code == "timeout" and error.value.retryable
    finally:
        rg.db.limits.statement_timeout_ms = original


async def test_claims_quoting_holds_even_where_the_database_defaults_to_backslash_escapes(
    login_dsn: str, database: str, admin: asyncpg.Connection, bob: Principal, unchanged: None
) -> None:
    """The per-call role/claims literal relies on standard_conforming_strings; rowgate sets it
    on every connection, overriding a role's or database's own default."""
    await admin.execute(
        f'ALTER ROLE authenticator IN DATABASE "{database}" SET standard_conforming_strings = off'
    )
    app = await Rowgate.start(Settings(database_url=login_dsn))
    try:
        claims = {**bob.claims, "x": "\\', true), set_config('role', 'postgres', true) --"}
        attacker = Principal(role="authenticated", claims=claims)
        rows = (
            await app.call("select_rows", {"table": "orders", "limit": 5}, attacker)
        ).model_dump()
        assert rows["rows"] and all(r["org_id"] == ACME for r in rows["rows"])
        async with app.db.pool.acquire() as conn:
            assert await conn.fetchval("SHOW standard_conforming_strings") == "on"
    finally:
        await app.close()
        await admin.execute(f'ALTER ROLE authenticator IN DATABASE "{database}" RESET ALL')


async def test_a_privileged_login_role_is_warned_about(
    db_admin_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rowgate"):
        app = await Rowgate.start(Settings(database_url=db_admin_dsn))
        await app.close()
    assert any("superuser, bypasses RLS or owns tables" in r.getMessage() for r in caplog.records)


def test_a_flag_that_carries_an_expression_is_refused_not_printed() -> None:
    """Flags (NOT, SYMMETRIC, ...) are kept from the parsed tree; one that held an
    expression would be printed into the SQL unchecked, so the compiler refuses it."""
    scope = ColumnScope("public.orders", "orders", frozenset({"status"}), "public")
    smuggled = exp.Like(
        this=exp.column("status"),
        expression=exp.Literal.string("p%"),
        negate=exp.Anonymous(this="pg_sleep", expressions=[exp.Literal.number(10)]),
    )
    with pytest.raises(RowgateError, match="not supported"):
        _Compiler(scope, Bindings()).compile(smuggled)
