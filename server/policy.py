"""May this principal do this operation on this table, and with which columns?

Postgres grants decide (see catalog.py); rowgate's config only narrows them. The
answer is computed once per role and cached with the catalog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from schemas.config import TableConfig
from schemas.tools import OPERATIONS, Operation
from server.catalog import Catalog, Table
from server.errors import RowgateError, bad_request
from server.identity import Principal
from server.sql.filters import ColumnScope, did_you_mean

log = logging.getLogger("rowgate")
T = TypeVar("T")
PLANS_PER_TABLE = 512


@dataclass(frozen=True, slots=True)
class TableAccess:
    table: Table
    operations: tuple[Operation, ...]
    selectable: tuple[str, ...]  # in the table's column order
    insertable: frozenset[str]
    updatable: frozenset[str]
    description: str | None
    scope: ColumnScope = field(init=False)
    # Select plans by exact request, for repeated calls; lives and dies with this access view.
    plans: OrderedDict[tuple[Any, ...], Any] = field(
        init=False, default_factory=OrderedDict, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "scope",
            ColumnScope(
                self.table.qualified,
                self.table.name,
                frozenset(self.selectable),
                self.table.schema,
            ),
        )

    def remember(self, key: tuple[Any, ...], plan: T) -> T:
        self.plans[key] = plan
        if len(self.plans) > PLANS_PER_TABLE:
            self.plans.popitem(last=False)
        return plan

    @property
    def visible_primary_key(self) -> tuple[str, ...]:
        """The primary key, or () when any of its columns is hidden from this caller."""
        pk = self.table.primary_key
        return pk if pk and all(c in self.scope.visible for c in pk) else ()


class Policy:
    def __init__(
        self,
        catalog: Catalog,
        pool: asyncpg.Pool,
        tables: dict[str, TableConfig],
        *,
        allow_privileged_role: bool,
        catalog_ttl_seconds: float = 60,
        on_reload: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.allow_privileged_role = allow_privileged_role
        self.catalog_ttl_seconds = catalog_ttl_seconds
        self._on_reload = on_reload
        self._tables_config = tables
        self._reload_lock = asyncio.Lock()
        self._warned: set[tuple[str, str]] = set()  # once per process, not at every reload
        self._adopt(catalog)

    def _adopt(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._config = {
            _config_key(name, catalog): cfg for name, cfg in self._tables_config.items()
        }
        self._by_role: dict[str, dict[str, TableAccess]] = {}
        self._loaded_at = time.monotonic()

    async def reload(self) -> None:
        """Re-read tables, columns and grants, so a DBA's changes apply without a restart."""
        async with self._reload_lock:
            async with self.pool.acquire() as conn:
                catalog = await Catalog.load(conn, list(self.catalog.schemas))
            self._adopt(catalog)
            self._on_reload()

    async def tables(self, principal: Principal) -> dict[str, TableAccess]:
        """Every table this principal may use, keyed by qualified name."""
        if time.monotonic() - self._loaded_at > self.catalog_ttl_seconds:
            await self.reload()
        cached = self._by_role.get(principal.role)
        if cached is not None:
            return cached
        async with self.pool.acquire() as conn:
            await self._check_role(conn, principal.role)
            privileges = await self.catalog.privileges(conn, principal.role)
        access: dict[str, TableAccess] = {}
        for name, privs in privileges.items():
            table = self.catalog.tables[name]
            cfg = self._config.get(name, TableConfig())
            if cfg.hidden:
                continue
            allowed = _narrow_columns(table, cfg)
            selectable = tuple(c for c in table.columns if c in privs.select and c in allowed)
            writable = allowed - table.generated if table.kind in "rpf" else frozenset()
            insertable = frozenset(privs.insert & writable)
            updatable = frozenset(privs.update & writable)
            possible = {
                "select": bool(selectable),
                "insert": bool(insertable),
                "update": bool(updatable) and bool(selectable),
                "delete": privs.delete and bool(selectable) and table.kind in "rpf",
            }
            ops = tuple(
                op for op in OPERATIONS
                if possible[op] and (cfg.operations is None or op in cfg.operations)
            )  # fmt: skip
            if not ops:
                continue
            access[name] = TableAccess(
                table=table,
                operations=ops,
                selectable=selectable,
                insertable=insertable,
                updatable=updatable,
                description=cfg.description or table.description,
            )
            if (
                not table.rls_enabled
                and table.kind in "rp"
                and (principal.role, name) not in self._warned
            ):
                self._warned.add((principal.role, name))
                log.warning(
                    "table %s has NO row-level security: role %s can %s every row of it",
                    name, principal.role, "/".join(ops),
                )  # fmt: skip
        self._by_role[principal.role] = access
        return access

    async def table(self, principal: Principal, name: str, operation: Operation) -> TableAccess:
        access = await self.resolve(principal, name)
        if operation not in access.operations:
            raise RowgateError(
                "operation_not_allowed",
                f"you may not {operation} on {access.table.qualified}; "
                f"allowed: {', '.join(access.operations)}.",
            )
        return access

    async def resolve(self, principal: Principal, name: str) -> TableAccess:
        """The table a caller's name means (qualified, or bare when unambiguous)."""
        tables = await self.tables(principal)
        access = tables.get(name) or tables.get(name.lower())
        if access is None and "." not in name:
            matches = [a for a in tables.values() if a.table.name in (name, name.lower())]
            if len(matches) > 1:
                options = ", ".join(sorted(a.table.qualified for a in matches))
                raise bad_request(f"table name {name!r} is ambiguous; use one of: {options}")
            access = matches[0] if matches else None
        if access is None:
            choices = list(tables) + [a.table.name for a in tables.values()]
            raise RowgateError(
                "unknown_table", f"unknown table {name!r}.{did_you_mean(name, choices)}"
            )
        return access

    async def _check_role(self, conn: asyncpg.Connection, role: str) -> None:
        info = await self.catalog.role(conn, role)
        if not info.exists:
            raise RowgateError("identity_error", f"the Postgres role {role!r} does not exist")
        if not info.can_switch:
            raise RowgateError(
                "identity_error",
                f"the login role cannot act as {role!r}: GRANT {role} TO <login role>",
            )
        if (info.superuser or info.bypass_rls) and not self.allow_privileged_role:
            raise RowgateError(
                "identity_error",
                f"refusing to act as {role!r}: it is a superuser or bypasses row-level security. "
                "Set ROWGATE_ALLOW_PRIVILEGED_ROLE=true only if that is really intended.",
            )


def _config_key(name: str, catalog: Catalog) -> str:
    if "." in name:
        return name
    matches = [q for q, t in catalog.tables.items() if t.name == name]
    return matches[0] if len(matches) == 1 else name


def _narrow_columns(table: Table, cfg: TableConfig) -> frozenset[str]:
    names = set(table.columns if cfg.columns is None else cfg.columns) & set(table.columns)
    return frozenset(names - set(cfg.exclude_columns))
