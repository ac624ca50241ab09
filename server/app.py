"""The wiring: settings -> database pool, catalog, policy; and `call`, the one path every
tool call takes (validate -> tool -> audit), whatever transport it came in on."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from schemas.config import Settings
from schemas.tools import Result
from server import audit
from server.catalog import Catalog
from server.db import Database
from server.errors import DATABASE_FAILURES, RowgateError, bad_request, from_postgres
from server.identity import Principal
from server.policy import Policy
from server.scopes import Permissions
from server.tools import TOOLS

log = logging.getLogger("rowgate")
READY_TIMEOUT_S = 2.0

_MIGRATED_SQL = (
    "SELECT to_regprocedure('rowgate.idempotency_begin(text, text, interval)') IS NOT NULL"
)


class Rowgate:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        policy: Policy,
        *,
        migrated: bool = True,
    ) -> None:
        self.settings = settings
        self.db = db
        self.policy = policy
        self.migrated = migrated
        self.permissions = Permissions(settings.scopes)

    @classmethod
    async def start(cls, settings: Settings) -> Rowgate:
        if not settings.database_url:
            raise RowgateError(
                "config_error", "DATABASE_URL is not set: point it at the pool's login role"
            )
        try:
            db = await Database.connect(
                settings.database_url,
                settings.limits,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                transaction_pooler=settings.transaction_pooler,
            )
        except Exception as exc:
            raise RowgateError(
                "database_unavailable", f"cannot connect with DATABASE_URL: {exc}"
            ) from None
        try:
            async with db.pool.acquire() as conn:
                await _warn_about_login_role(conn)
                catalog = await Catalog.load(conn, settings.schemas)
                migrated = bool(await conn.fetchval(_MIGRATED_SQL))
        except Exception as exc:
            await db.close()
            raise from_postgres(exc, writing=False) from exc
        policy = Policy(
            catalog,
            db.pool,
            settings.tables,
            allow_privileged_role=settings.allow_privileged_role,
            catalog_ttl_seconds=settings.catalog_ttl_seconds,
            on_reload=db.binder.clear,
        )
        if not migrated:
            log.warning(
                "rowgate's migrations are not applied to this database; writes are disabled "
                "until `rowgate migrate` has run"
            )
        return cls(settings, db, policy, migrated=migrated)

    async def close(self) -> None:
        await self.db.close()

    async def ready(self) -> bool:
        """The database answers and the catalog is loaded (for a load balancer's probe)."""
        try:
            async with self.db.pool.acquire(timeout=READY_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1", timeout=READY_TIMEOUT_S)
        except (*DATABASE_FAILURES, TimeoutError):
            return False
        return bool(self.policy.catalog.tables)

    async def call(self, tool: str, arguments: Mapping[str, Any], who: Principal) -> Result:
        started = time.perf_counter()
        raw_table = arguments.get("table")
        table = raw_table[:200] if isinstance(raw_table, str) else None
        rows: int | None = None
        error: RowgateError | None = None
        try:
            spec = TOOLS.get(tool)
            if spec is None:
                raise RowgateError(
                    "unknown_tool", f"unknown tool {tool!r}; tools: {', '.join(TOOLS)}"
                )
            narrowed_by_table = self.permissions.check_tool(who, tool)
            try:
                request = spec.request.model_validate(arguments)
            except ValidationError as exc:
                raise bad_request(_describe_validation(tool, spec.request, exc)) from None
            table_name = getattr(request, "table", None)
            if narrowed_by_table and isinstance(table_name, str):
                access = await self.policy.resolve(who, table_name)
                self.permissions.check_table(who, tool, access.table.qualified)
            result = await spec.handler(self, request, who)
            rows = getattr(result, "row_count", None)
            return result
        except RowgateError as exc:
            error = exc
            raise
        except DATABASE_FAILURES as exc:  # outside a call's transaction, e.g. reading grants
            error = from_postgres(exc, writing=False)
            raise error from exc
        except Exception as exc:
            log.exception("internal error in %s", tool)
            error = RowgateError("internal_error", "Internal error; nothing was changed.")
            raise error from exc
        finally:
            audit.record(
                principal=who.label,
                tool=tool,
                table=table,
                rows=rows,
                ms=(time.perf_counter() - started) * 1000,
                outcome="error" if error else "ok",
                error_code=error.code if error else None,
            )


def _describe_validation(tool: str, model: type[Any], exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            fields = ", ".join(f.alias or n for n, f in model.model_fields.items())
            problems.append(f"unknown argument {where!r} (arguments: {fields})")
        elif err["type"] == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err['msg']}")
    return f"invalid arguments for {tool}: " + "; ".join(problems)


async def _warn_about_login_role(conn: Any) -> None:
    row = await conn.fetchrow(
        "SELECT r.rolsuper, r.rolbypassrls,"
        " EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid"
        "         AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,"
        "                                    'information_schema'::regnamespace)) AS owns"
        " FROM pg_roles r WHERE r.rolname = session_user"
    )
    if row and (row["rolsuper"] or row["rolbypassrls"] or row["owns"]):
        log.warning(
            "the login role %s is a superuser, bypasses RLS or owns tables; use a login role "
            "that owns nothing (e.g. `authenticator`) so a mistake cannot widen access",
            await conn.fetchval("SELECT session_user"),
        )
