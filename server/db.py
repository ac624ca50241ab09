"""One transaction per call, on a pooled connection of the login role, as the caller.

Per call: BEGIN and every per-call setting travel in one simple-protocol message
(`set_config(..., true)`: transaction-local, so nothing survives the call on the pooled
connection), the generated statement follows through the extended protocol with its
values as parameters, then COMMIT: three round trips.

Behind a transaction-mode pooler (PgBouncer, Supavisor on port 6543; `transaction_pooler`)
consecutive transactions of one client connection may run on different server connections,
and other clients' transactions run on ours. So nothing may outlive a transaction:
- no named prepared statement: asyncpg's statement cache is off, so each statement is an
  unnamed one, described and then parsed again with its Bind in one message (asyncpg's
  behaviour for `statement_cache_size=0`): one more round trip per statement, four a read;
- no per-connection setting: the pooler does not forward (PgBouncer refuses some, Supavisor
  ignores them) the startup parameters a direct connection gets, so the BEGIN message sets
  them transaction-locally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg

from schemas.config import Limits
from server.errors import DATABASE_FAILURES, RowgateError, from_postgres
from server.identity import Principal
from server.sql.params import Param, ParamBinder

log = logging.getLogger("rowgate")
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_MARGIN_S = 5.0
SUPAVISOR_TRANSACTION_PORT = 6543

# What every call relies on. A direct connection gets them once, as startup parameters; behind
# a transaction pooler each call's BEGIN message sets them for its own transaction.
SESSION_SETTINGS = {
    # Generated SQL renders some quoted literals ('...' with '' for a quote): they must be
    # read with backslashes as ordinary characters.
    "standard_conforming_strings": "on",
    "TimeZone": "UTC",  # `created_at > '2024-01-01'` means UTC midnight
    "idle_in_transaction_session_timeout": "30000",
}


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
    def __init__(
        self, pool: asyncpg.Pool, limits: Limits, *, transaction_pooler: bool = False
    ) -> None:
        self.pool = pool
        self.limits = limits
        self.transaction_pooler = transaction_pooler
        self.binder = ParamBinder()
        # Waiting for a free connection is bounded by how long the calls holding them may run.
        self._acquire_timeout = limits.statement_timeout_ms / 1000 + CONNECT_TIMEOUT_S
        self._settings_sql = (
            "".join(
                f" set_config({sql_literal(name)}, {sql_literal(value)}, true),"
                for name, value in SESSION_SETTINGS.items()
            )
            if transaction_pooler
            else ""
        )
        self._warned_pooler = False

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
        if not transaction_pooler and SUPAVISOR_TRANSACTION_PORT in _ports(dsn):
            log.warning(
                "DATABASE_URL uses port %d, Supavisor's transaction mode, but "
                "ROWGATE_TRANSACTION_POOLER is off: set it to true, or calls will fail when "
                "the pooler moves this connection to another server connection",
                SUPAVISOR_TRANSACTION_PORT,
            )
        pooler: dict[str, Any] = (
            # No named prepared statement: it would stay on the server connection the
            # transaction ran on. Every statement is unnamed and parsed again when bound.
            {"statement_cache_size": 0, "server_settings": {"application_name": "rowgate"}}
            if transaction_pooler
            else {"server_settings": {"application_name": "rowgate", **SESSION_SETTINGS}}
        )
        try:
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
                **pooler,
            )
        except asyncpg.PostgresError as exc:
            if transaction_pooler or "unsupported startup parameter" not in str(exc):
                raise
            raise RowgateError(
                "config_error",
                f"{exc}: DATABASE_URL leads to a pooler (PgBouncer); set "
                "ROWGATE_TRANSACTION_POOLER=true",
            ) from None
        return cls(pool, limits, transaction_pooler=transaction_pooler)

    async def close(self) -> None:
        await self.pool.close()

    def _begin(self, principal: Principal, *, read_only: bool) -> str:
        mode = "READ ONLY" if read_only else "READ WRITE"
        return (
            f"BEGIN ISOLATION LEVEL READ COMMITTED {mode};"
            f" SELECT{self._settings_sql}"
            f" set_config('role', {sql_literal(principal.role)}, true),"
            f" set_config('request.jwt.claims', {sql_literal(principal.claims_json)}, true),"
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
            self._hint_pooler(exc)
            raise from_postgres(exc, writing=not read_only, visible=visible) from exc

    async def fetchval(self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]) -> Any:
        sql, values = await self.binder.bind(conn, sql, params)
        return await conn.fetchval(sql, *values)

    async def fetchrow(self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]) -> Any:
        sql, values = await self.binder.bind(conn, sql, params)
        return await conn.fetchrow(sql, *values)

    def _hint_pooler(self, exc: BaseException) -> None:
        """A prepared statement that vanished or already exists: the server connection
        changed under a client connection, the mark of a transaction-mode pooler."""
        if self.transaction_pooler or self._warned_pooler:
            return
        if isinstance(
            exc, asyncpg.InvalidSQLStatementNameError | asyncpg.DuplicatePreparedStatementError
        ):
            self._warned_pooler = True
            log.warning(
                "a prepared statement was missing from, or already on, the server connection "
                "(%s): DATABASE_URL looks like a transaction-mode pooler (PgBouncer, Supavisor "
                "on port 6543); set ROWGATE_TRANSACTION_POOLER=true",
                exc,
            )


def _ports(dsn: str) -> set[int]:
    """Every port a DSN names (its host list, a `port=` parameter); PGPORT or 5432 if none."""
    try:
        parts = urlsplit(dsn)
        found = set()
        for host in parts.netloc.rpartition("@")[2].split(","):
            _, colon, port = host.rpartition(":")
            if colon and port.isdigit():
                found.add(int(port))
        for value in parse_qs(parts.query).get("port", []):
            found |= {int(p) for p in value.split(",") if p.strip()}
        return found or {int(os.environ.get("PGPORT") or 5432)}
    except ValueError:
        return set()


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
