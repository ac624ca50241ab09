"""The MCP tools as plain async functions: a typed request and the caller in, a typed
result out. They know nothing of the MCP SDK, so any transport can register them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.tools import (
    ColumnInfo,
    DeleteRowsRequest,
    DescribeTableRequest,
    DescribeTableResult,
    InsertRowsRequest,
    ListTablesRequest,
    ListTablesResult,
    Operation,
    Request,
    Result,
    SelectRowsRequest,
    SelectRowsResult,
    TableInfo,
    UpdateRowsRequest,
    WriteResult,
)
from server.errors import RowgateError, bad_request
from server.identity import Principal
from server.policy import TableAccess
from server.sql.filters import column_list, condition_shape, did_you_mean
from server.sql.statements import (
    SelectPlan,
    Statement,
    fingerprint,
    plan_delete,
    plan_insert,
    plan_select,
    plan_update,
)

if TYPE_CHECKING:
    from server.app import Rowgate


def _summary(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else None


async def list_tables(rg: Rowgate, req: ListTablesRequest, who: Principal) -> ListTablesResult:
    tables = await rg.policy.tables(who)
    listing = []
    for name, access in sorted(tables.items()):
        operations = _permitted(rg, who, name, access.operations)
        if operations:
            listing.append(
                TableInfo(
                    name=name, description=_summary(access.description), operations=operations
                )
            )
    return ListTablesResult(tables=listing)


def _permitted(
    rg: Rowgate, who: Principal, table: str, operations: tuple[Operation, ...]
) -> list[Operation]:
    """The operations the caller's scopes leave on a table (Postgres allowed them all)."""
    return [op for op in operations if rg.permissions.covers(who, f"{op}_rows", table)]


async def describe_table(
    rg: Rowgate, req: DescribeTableRequest, who: Principal
) -> DescribeTableResult:
    access = await rg.policy.table(who, req.table, "select")
    operations = _permitted(rg, who, access.table.qualified, access.operations)
    columns = []
    for name in access.selectable:
        column = access.table.columns[name]
        insertable = "insert" in operations and name in access.insertable
        updatable = "update" in operations and name in access.updatable
        columns.append(
            ColumnInfo(
                name=name,
                type=column.type,
                nullable=column.nullable,
                default=column.default,
                description=column.description,
                insertable=insertable,
                updatable=updatable,
                writable=insertable or updatable,
            )
        )
    return DescribeTableResult(
        name=access.table.qualified,
        description=access.description,
        operations=operations,
        primary_key=list(access.visible_primary_key),
        columns=columns,
    )


async def select_rows(rg: Rowgate, req: SelectRowsRequest, who: Principal) -> SelectRowsResult:
    access = await rg.policy.table(who, req.table, "select")
    limits = rg.settings.limits
    limit = req.limit or limits.default_limit
    if limit > limits.max_limit:
        raise bad_request(
            f"limit {limit} is above the maximum of {limits.max_limit}; page with next_cursor"
        )
    columns = (
        column_list(req.columns, access.scope, "columns")
        if req.columns
        else list(access.selectable)
    )
    plan = _select_plan(access, columns, req, limit)
    statement = plan.statement

    async def work(conn: asyncpg.Connection) -> Any:
        return await rg.db.fetchval(conn, statement.sql, statement.params)

    rows, next_cursor = plan.page(json.loads(await rg.db.run(who, work, read_only=True)))
    # Rows are Postgres' own JSON, already of the declared shape: validating them again
    # would copy every value on the hottest path.
    return SelectRowsResult.model_construct(rows=rows, row_count=len(rows), next_cursor=next_cursor)


def _select_plan(
    access: TableAccess, columns: list[str], req: SelectRowsRequest, limit: int
) -> SelectPlan:
    """Generating SQL costs more than running a point lookup, so first pages are planned once
    per request shape: a filter that differs only in its literal values reuses the SQL text.
    A later page depends on its cursor and is planned afresh."""
    if req.cursor:
        return plan_select(access, columns, req.where, req.order_by, limit, req.cursor)
    shape = condition_shape(req.where) if req.where else None
    where_key = shape.key if shape is not None else req.where
    key = (tuple(columns), where_key, req.order_by, limit)
    cached: SelectPlan | None = access.plans.get(key)
    if cached is not None:
        if shape is None:
            return cached
        return cached.with_literals(shape.literals, fingerprint(access, req.where, cached.order))
    plan = plan_select(access, columns, req.where, req.order_by, limit, None)
    if shape is None or plan.binds_literals(shape.literals):
        access.remember(key, plan)
    return plan


def _writable(access: TableAccess, names: list[str], allowed: frozenset[str], verb: str) -> None:
    for name in names:
        if name in allowed:
            continue
        if name in access.scope.visible:
            raise RowgateError(
                "column_not_writable",
                f"column {name!r} of {access.table.qualified} is not {verb} for you; "
                f"{verb} columns: {', '.join(sorted(allowed)) or '(none)'}.",
            )
        raise bad_request(
            f"unknown column {name!r} in {access.table.qualified}.{did_you_mean(name, allowed)}"
        )


def _returning(access: TableAccess, requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(access.visible_primary_key)
    return column_list(requested, access.scope, "returning")


async def insert_rows(rg: Rowgate, req: InsertRowsRequest, who: Principal) -> WriteResult:
    access = await rg.policy.table(who, req.table, "insert")
    cap = rg.settings.limits.max_write_rows
    if len(req.rows) > cap:
        raise RowgateError(
            "too_many_rows",
            f"{len(req.rows)} rows is more than the cap of {cap} per call; split the insert. "
            "Nothing was changed.",
        )
    for row in req.rows:
        _writable(access, list(row), access.insertable, "insertable")
    statement = plan_insert(access, req.rows, _returning(access, req.returning))
    return await _write(rg, who, "insert_rows", req, statement, access)


async def update_rows(rg: Rowgate, req: UpdateRowsRequest, who: Principal) -> WriteResult:
    access = await rg.policy.table(who, req.table, "update")
    _writable(access, list(req.set_), access.updatable, "updatable")
    statement = plan_update(access, req.set_, req.where, _returning(access, req.returning))
    return await _write(rg, who, "update_rows", req, statement, access)


async def delete_rows(rg: Rowgate, req: DeleteRowsRequest, who: Principal) -> WriteResult:
    access = await rg.policy.table(who, req.table, "delete")
    statement = plan_delete(access, req.where, list(access.visible_primary_key))
    return await _write(rg, who, "delete_rows", req, statement, access)


def _request_hash(tool: str, req: Request) -> str:
    body = req.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    canonical = json.dumps([tool, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _write(
    rg: Rowgate, who: Principal, tool: str, req: Any, statement: Statement, access: TableAccess
) -> WriteResult:
    """Run one write with its idempotency record, in one transaction: either both land or
    neither does; a retry with the same key returns the stored result. A dry run makes the
    same write, reports it and rolls it back, storing nothing."""
    if not rg.migrated:
        raise RowgateError(
            "not_migrated",
            "writes need rowgate's own migrations in this database (idempotency keys): "
            "run `rowgate migrate`. Nothing was changed.",
        )
    key: str = req.idempotency_key
    cap = rg.settings.limits.max_write_rows
    ttl = timedelta(seconds=rg.settings.limits.idempotency_ttl_seconds)
    request_hash = _request_hash(tool, req)

    dry_run: bool = getattr(req, "dry_run", False)

    async def work(conn: asyncpg.Connection) -> WriteResult:
        if not dry_run:
            stored = await conn.fetchval(
                "SELECT rowgate.idempotency_begin($1, $2, $3)", key, request_hash, ttl
            )
            if stored is not None:
                return WriteResult.model_validate({**json.loads(stored), "replayed": True})
        count, rows_json = await rg.db.fetchrow(conn, statement.sql, statement.params)
        if count > cap:
            raise RowgateError(
                "too_many_rows",
                f"this call would change {count} rows, more than the cap of {cap}; narrow "
                "`where` (or raise ROWGATE_MAX_WRITE_ROWS). Nothing was changed.",
            )
        result = WriteResult(rows=json.loads(rows_json), row_count=count, dry_run=dry_run)
        if not dry_run:
            await conn.execute(
                "SELECT rowgate.idempotency_finish($1, $2::jsonb)", key, result.model_dump_json()
            )
        return result

    return await rg.db.run(
        who, work, read_only=False, visible=access.scope.visible, commit=not dry_run
    )


Handler = Callable[["Rowgate", Any, Principal], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    request: type[Request]
    result: type[Result]
    handler: Handler
    read_only: bool
    destructive: bool
    idempotent: bool


_WHERE_HELP = (
    "`where` is a Postgres boolean expression over the table's visible columns, e.g. "
    "`status = 'open' AND total > 100` (its argument description lists the grammar)."
)

TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec(
            "list_tables",
            "List tables",
            "List the tables you may use, each with a one-line description and the operations "
            "(select/insert/update/delete) you may perform on it.",
            ListTablesRequest, ListTablesResult, list_tables,
            read_only=True, destructive=False, idempotent=True,
        ),
        ToolSpec(
            "describe_table",
            "Describe a table",
            "Describe a table's columns visible to you: type, nullability, default, "
            "description, whether you may write them, and the primary key.",
            DescribeTableRequest, DescribeTableResult, describe_table,
            read_only=True, destructive=False, idempotent=True,
        ),
        ToolSpec(
            "select_rows",
            "Select rows",
            "Read rows you are allowed to see. " + _WHERE_HELP + " Results are paged: pass "
            "`next_cursor` back as `cursor` (with the same table/where/order_by) for more.",
            SelectRowsRequest, SelectRowsResult, select_rows,
            read_only=True, destructive=False, idempotent=True,
        ),
        ToolSpec(
            "insert_rows",
            "Insert rows",
            "Insert rows (column -> value). Give a fresh `idempotency_key` per intended write; "
            "retrying with the same key does not insert twice.",
            InsertRowsRequest, WriteResult, insert_rows,
            read_only=False, destructive=False, idempotent=True,
        ),
        ToolSpec(
            "update_rows",
            "Update rows",
            "Set columns on the rows matching `where` (required). " + _WHERE_HELP + " Refuses "
            "to change more rows than the configured cap; reports how many rows changed. "
            "`dry_run` reports the rows it would change and changes nothing.",
            UpdateRowsRequest, WriteResult, update_rows,
            read_only=False, destructive=True, idempotent=True,
        ),
        ToolSpec(
            "delete_rows",
            "Delete rows",
            "Delete the rows matching `where` (required). " + _WHERE_HELP + " Refuses to "
            "delete more rows than the configured cap; reports how many rows were deleted. "
            "`dry_run` reports the rows it would delete and deletes nothing.",
            DeleteRowsRequest, WriteResult, delete_rows,
            read_only=False, destructive=True, idempotent=True,
        ),
    ]
}  # fmt: skip
