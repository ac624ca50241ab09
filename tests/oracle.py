"""Postgres as the oracle for filters: what Postgres itself answers for a statement, run as
a given role and claims, to compare with what rowgate's tools answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from server.app import Rowgate
from server.identity import Principal

ORACLE_STATEMENT_TIMEOUT = "10s"
ORACLE_CLIENT_TIMEOUT_S = 30.0
LIMIT = 500


@dataclass(frozen=True, slots=True)
class Answer:
    """Selected ids (in order), or an error: a RowgateError code or a SQLSTATE."""

    ids: tuple[Any, ...] | None = None
    code: str | None = None
    message: str | None = None

    def show(self) -> str:
        if self.ids is None:
            return f"error {self.code}: {self.message}"
        head = ", ".join(map(str, self.ids[:12]))
        more = f", ... ({len(self.ids)} rows)" if len(self.ids) > 12 else ""
        return f"{len(self.ids)} rows [{head}{more}]"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def postgres_answer(admin: asyncpg.Connection, who: Principal, sql: str) -> Answer:
    """Postgres' own answer to `sql` as `who`, in a transaction that is always rolled back
    (so a failed statement never leaves the shared connection aborted)."""
    tx = admin.transaction()
    await tx.start()
    try:
        await admin.execute(
            f"SET LOCAL statement_timeout = '{ORACLE_STATEMENT_TIMEOUT}';"
            " SET LOCAL TimeZone = 'UTC';"
            f" SET LOCAL ROLE {quote_ident(who.role)}"
        )
        await admin.execute("SELECT set_config('request.jwt.claims', $1, true)", who.claims_json)
        rows = await admin.fetch(sql, timeout=ORACLE_CLIENT_TIMEOUT_S)
        return Answer(ids=tuple(row[0] for row in rows))
    except asyncpg.PostgresError as exc:
        return Answer(code=exc.sqlstate, message=str(exc).splitlines()[0])
    except TimeoutError:
        return Answer(code="timeout", message="no answer within the client timeout")
    finally:
        await tx.rollback()


def select_ids(table: str, where: str, *, limit: int = LIMIT) -> str:
    return f"SELECT id FROM {table} WHERE {where}\nORDER BY id LIMIT {limit}"


async def rowgate_ids(
    rg: Rowgate, who: Principal, table: str, where: str, *, limit: int = LIMIT
) -> tuple[Any, ...]:
    result = await rg.call(
        "select_rows",
        {"table": table, "where": where, "columns": ["id"], "order_by": "id", "limit": limit},
        who,
    )
    return tuple(row["id"] for row in result.model_dump()["rows"])
