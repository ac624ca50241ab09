"""One transaction per call, on a pooled connection of the login role, as the caller.

Per call: BEGIN and every per-call setting travel in one simple-protocol message
(`set_config(..., true)`: transaction-local, so nothing survives the call on the pooled
connection), the generated statement follows through the extended protocol with its
values as parameters, then COMMIT: three round trips.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import asyncpg

from schemas.config import Limits
from server.errors import DATABASE_FAILURES, RowgateError, from_postgres
from server.identity import Principal
from server.sql.params import Param, ParamBinder

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_MARGIN_S = 5.0


def sql_literal(text: str) -> str:
    """A string literal that reads back as `text` whatever standard_conforming_strings is.

    An escape string (E'...') with every backslash and quote doubled: a pooled server
    connection may carry another client's `standard_conforming_strings = off`, and a
    simple-query message is lexed as a whole before any statement in it runs, so a SET in
    the same message could not protect a plain '...' literal.
    """
    if "\x00" in text:
        raise RowgateError("invalid_request", "NUL characters are not allowed")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class Database:
    def __init__(self, pool: asyncpg.Pool, limits: Limits) -> None:
        self.pool = pool
        self.limits = limits
        self.binder = ParamBinder()
        # Waiting for a free connection is bounded by how long the calls holding them may run.
        self._acquire_timeout = limits.statement_timeout_ms / 1000 + CONNECT_TIMEOUT_S

    @classmethod
    async def connect(
        cls,
        dsn: str,
        limits: Limits,
        *,
        min_size: int,
        max_size: int,
        transaction_pooler: bool = False,
    ) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            # Per-call state is transaction-local, so the default reset round trip
            # (RESET ALL; UNLISTEN *; ...) on every release buys nothing.
            reset=_no_reset,
            # A dead server or network must give a fast, retryable error, never a hang:
            # Postgres' own statement_timeout covers a slow query, these cover the wire.
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=limits.statement_timeout_ms / 1000 + COMMAND_TIMEOUT_MARGIN_S,
            server_settings={
                "standard_conforming_strings": "on",
                "application_name": "rowgate",
                "TimeZone": "UTC",
                "idle_in_transaction_session_timeout": "30000",
            },
        )
        return cls(pool, limits)

    async def close(self) -> None:
        await self.pool.close()

    def _begin(self, principal: Principal, *, read_only: bool) -> str:
        mode = "READ ONLY" if read_only else "READ WRITE"
        return (
            f"BEGIN ISOLATION LEVEL READ COMMITTED {mode};"
            " SELECT set_config('role', " + sql_literal(principal.role) + ", true),"
            " set_config('request.jwt.claims', " + sql_literal(principal.claims_json) + ", true),"
            f" set_config('statement_timeout', '{int(self.limits.statement_timeout_ms)}', true),"
            f" set_config('lock_timeout', '{int(self.limits.lock_timeout_ms)}', true)"
        )

    async def run(
        self,
        principal: Principal,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        read_only: bool,
        visible: Collection[str] = (),
        commit: bool = True,
    ) -> T:
        """Run `work` in one transaction as `principal`; any failure rolls everything back,
        and so does success when `commit` is False (a dry run)."""
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
                await conn.execute(self._begin(principal, read_only=read_only))
                try:
                    result = await work(conn)
                    await conn.execute("COMMIT" if commit else "ROLLBACK")
                except BaseException:
                    await _rollback(conn)
                    raise
                return result
        except RowgateError:
            raise
        except DATABASE_FAILURES as exc:
            raise from_postgres(exc, writing=not read_only, visible=visible) from exc

    async def fetchval(self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]) -> Any:
        sql, values = await self.binder.bind(conn, sql, params)
        return await conn.fetchval(sql, *values)

    async def fetchrow(self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]) -> Any:
        sql, values = await self.binder.bind(conn, sql, params)
        return await conn.fetchrow(sql, *values)


async def _rollback(conn: asyncpg.Connection) -> None:
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        conn.terminate()


async def _no_reset(conn: asyncpg.Connection) -> None:
    # A connection never goes back to the pool inside a transaction (e.g. after a
    # cancelled call): the next caller would inherit the previous caller's role.
    if conn.is_in_transaction():
        await _rollback(conn)
