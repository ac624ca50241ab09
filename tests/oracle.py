"""Postgres as the oracle for filters: the ids a filter selects when Postgres itself reads
the text, as the same role and claims, next to the ids rowgate's tools return."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.app import Rowgate
from server.identity import Principal

LIMIT = 500


@dataclass(frozen=True)
class Refusal:
    """Postgres (or rowgate) refused the filter."""

    message: str


async def postgres_ids(
    admin: asyncpg.Connection, who: Principal, table: str, where: str, *, limit: int = LIMIT
) -> list[int] | Refusal:
    """`SELECT id FROM table WHERE <where> ORDER BY id` as `who`, on a superuser connection
    that drops to the caller's role for one rolled-back transaction."""
    try:
        async with admin.transaction():
            await admin.execute(
                f"SET LOCAL ROLE {who.role}; SET LOCAL TimeZone = 'UTC';"
                " SET LOCAL statement_timeout = '10s'"
            )
            await admin.execute(
                "SELECT set_config('request.jwt.claims', $1, true)", who.claims_json
            )
            rows = await admin.fetch(
                f"SELECT id FROM {table} WHERE {where} ORDER BY id LIMIT {limit}"
            )
            raise _Rollback([r["id"] for r in rows])
    except _Rollback as done:
        return done.ids
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Refusal(f"{type(exc).__name__}: {exc}")


class _Rollback(Exception):
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


async def rowgate_ids(
    rg: Rowgate, who: Principal, table: str, where: str, *, limit: int = LIMIT
) -> list[int]:
    result = await rg.call(
        "select_rows",
        {"table": table, "where": where, "columns": ["id"], "order_by": "id", "limit": limit},
        who,
    )
    return [row["id"] for row in result.model_dump()["rows"]]
