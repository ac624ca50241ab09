"""The schema cache: tables, columns and keys of the exposed schemas, and what each role
may do with them according to Postgres itself (table and column privileges)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

_TABLES_SQL = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       c.relrowsecurity AS rls_enabled, obj_description(c.oid, 'pg_class') AS description,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS primary_key
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND NOT c.relispartition
 ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid AS table_oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default,
       col_description(a.attrelid, a.attnum) AS description,
       a.attidentity = 'a' OR a.attgenerated <> '' AS generated
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

_TABLE_PRIVILEGES_SQL = """
SELECT c.oid,
       has_schema_privilege($1, c.relnamespace, 'USAGE') AS schema_usage,
       has_table_privilege($1, c.oid, 'SELECT') AS can_select,
       has_table_privilege($1, c.oid, 'INSERT') AS can_insert,
       has_table_privilege($1, c.oid, 'UPDATE') AS can_update,
       has_table_privilege($1, c.oid, 'DELETE') AS can_delete
  FROM pg_class c WHERE c.oid = ANY($2::oid[])
"""

_COLUMN_PRIVILEGES_SQL = """
SELECT a.attrelid AS table_oid, a.attname AS name,
       has_column_privilege($1, a.attrelid, a.attnum, 'SELECT') AS can_select,
       has_column_privilege($1, a.attrelid, a.attnum, 'INSERT') AS can_insert,
       has_column_privilege($1, a.attrelid, a.attnum, 'UPDATE') AS can_update
  FROM pg_attribute a
 WHERE a.attrelid = ANY($2::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
"""

_ROLE_SQL = """
SELECT r.rolsuper, r.rolbypassrls, pg_has_role(session_user, r.oid, 'MEMBER') AS can_switch
  FROM pg_roles r WHERE r.rolname = $1
"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None
    description: str | None
    generated: bool  # GENERATED ALWAYS (identity or expression): Postgres computes it


@dataclass(frozen=True, slots=True)
class Table:
    oid: int
    schema: str
    name: str
    kind: str
    rls_enabled: bool
    description: str | None
    primary_key: tuple[str, ...]
    columns: dict[str, Column]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def generated(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns.values() if c.generated)


@dataclass(frozen=True, slots=True)
class Privileges:
    """What Postgres grants one role on one table (before rowgate's config narrows it)."""

    select: frozenset[str]
    insert: frozenset[str]
    update: frozenset[str]
    delete: bool


@dataclass(frozen=True, slots=True)
class RoleInfo:
    exists: bool
    superuser: bool = False
    bypass_rls: bool = False
    can_switch: bool = False


@dataclass
class Catalog:
    schemas: tuple[str, ...]
    tables: dict[str, Table]
    _privileges: dict[str, dict[str, Privileges]] = field(default_factory=dict)
    _roles: dict[str, RoleInfo] = field(default_factory=dict)

    @classmethod
    async def load(cls, conn: asyncpg.Connection, schemas: list[str]) -> Catalog:
        table_rows = await conn.fetch(_TABLES_SQL, schemas)
        column_rows = await conn.fetch(_COLUMNS_SQL, [r["oid"] for r in table_rows])
        columns: dict[int, dict[str, Column]] = {r["oid"]: {} for r in table_rows}
        for r in column_rows:
            columns[r["table_oid"]][r["name"]] = Column(
                name=r["name"],
                type=r["type"],
                nullable=r["nullable"],
                default=r["default"],
                description=r["description"],
                generated=r["generated"],
            )
        tables = {
            f"{r['schema']}.{r['name']}": Table(
                oid=r["oid"],
                schema=r["schema"],
                name=r["name"],
                kind=r["kind"],
                rls_enabled=r["rls_enabled"],
                description=r["description"],
                primary_key=tuple(r["primary_key"]),
                columns=columns[r["oid"]],
            )
            for r in table_rows
        }
        return cls(schemas=tuple(schemas), tables=tables)

    async def privileges(self, conn: asyncpg.Connection, role: str) -> dict[str, Privileges]:
        """Per-table privileges of `role`, cached: grants change rarely (reload to refresh)."""
        cached = self._privileges.get(role)
        if cached is not None:
            return cached
        oids = {t.oid: t for t in self.tables.values()}
        table_rows = await conn.fetch(_TABLE_PRIVILEGES_SQL, role, list(oids))
        column_rows = await conn.fetch(_COLUMN_PRIVILEGES_SQL, role, list(oids))
        by_table: dict[int, dict[str, set[str]]] = {
            oid: {"select": set(), "insert": set(), "update": set()} for oid in oids
        }
        for r in column_rows:
            for op in ("select", "insert", "update"):
                if r[f"can_{op}"]:
                    by_table[r["table_oid"]][op].add(r["name"])
        result: dict[str, Privileges] = {}
        for r in table_rows:
            if not r["schema_usage"]:
                continue
            table = oids[r["oid"]]
            cols = by_table[r["oid"]]
            result[table.qualified] = Privileges(
                select=frozenset(cols["select"]),
                insert=frozenset(cols["insert"]),
                update=frozenset(cols["update"]),
                delete=bool(r["can_delete"]),
            )
        self._privileges[role] = result
        return result

    async def role(self, conn: asyncpg.Connection, role: str) -> RoleInfo:
        cached = self._roles.get(role)
        if cached is not None:
            return cached
        row: Any = await conn.fetchrow(_ROLE_SQL, role)
        info = (
            RoleInfo(exists=False)
            if row is None
            else RoleInfo(
                exists=True,
                superuser=row["rolsuper"],
                bypass_rls=row["rolbypassrls"],
                can_switch=row["can_switch"],
            )
        )
        self._roles[role] = info
        return info
