"""Requests and results of the MCP tools. Names and shapes are a public contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Operation = Literal["select", "insert", "update", "delete"]
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")

TableName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="`schema.table`, or just `table` where the name is unambiguous.",
    ),
]
ColumnName = Annotated[str, Field(min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description=(
            "A fresh unique string per intended write (e.g. a UUID). Retrying with the same "
            "key and request returns the first result without writing again."
        ),
    ),
]
Returning = Annotated[
    list[ColumnName] | None,
    Field(
        default=None,
        max_length=200,
        description="Columns to return for each affected row (default: the primary key).",
    ),
]
# The filter language, stated once for every tool that takes a `where` (README: "Filters").
FILTER_GRAMMAR = (
    "A Postgres boolean expression over the table's visible columns, read exactly as Postgres "
    "reads it, e.g. `status = 'open' AND total > 100`. Allowed: comparisons (= <> != < <= > "
    ">=), AND/OR/NOT, + - * / % ^ and unary minus, ||, IS [NOT] NULL/TRUE/FALSE/UNKNOWN, "
    "IS [NOT] DISTINCT FROM, [NOT] BETWEEN [SYMMETRIC], [NOT] IN (...), [NOT] LIKE/ILIKE "
    "[ESCAPE], AT TIME ZONE, CAST(x AS type) and x::type, 'strings', E'escapes', $$dollar$$ "
    "strings, decimal numbers, TRUE/FALSE/NULL, typed literals (date '2024-01-31', "
    "interval '7 days'), and the functions lower upper length char_length trim btrim abs round "
    "floor ceil ceiling coalesce nullif greatest least now date_trunc extract, plus "
    "current_date current_timestamp localtimestamp. A quoted literal takes its type from its "
    "context, as in Postgres (`created_at > '2024-09-01'`). Refused: subqueries, other "
    "functions, regular expressions, ANY/arrays, COLLATE, and other SQL dialects' spellings."
)
WriteWhere = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4000,
        pattern=r"\S",
        description=(
            "Selects the rows to change (required), e.g. `id = 42`: a Postgres boolean "
            "expression, the same grammar as select_rows' `where`."
        ),
    ),
]
Row = dict[str, JsonValue]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListTablesRequest(Request):
    pass


class DescribeTableRequest(Request):
    table: TableName


class SelectRowsRequest(Request):
    table: TableName
    columns: list[ColumnName] | None = Field(
        default=None, max_length=200, description="Columns to return (default: all visible)."
    )
    where: str | None = Field(default=None, max_length=4000, description=FILTER_GRAMMAR)
    order_by: str | None = Field(
        default=None,
        max_length=1000,
        description="Comma-separated columns, each optionally ASC or DESC, e.g. `total DESC, id`.",
    )
    limit: int | None = Field(
        default=None, ge=1, description="Rows per page (a default and a maximum apply)."
    )
    cursor: str | None = Field(
        default=None,
        max_length=8000,
        description="`next_cursor` from the previous page, with the same table/where/order_by.",
    )


class InsertRowsRequest(Request):
    table: TableName
    rows: list[Row] = Field(min_length=1, description="Rows to insert, as column -> value.")
    idempotency_key: IdempotencyKey
    returning: Returning


DryRun = Annotated[
    bool,
    Field(
        default=False,
        description=(
            "Make the change, report the rows it would affect, and undo it: nothing is stored "
            "(not even the idempotency key)."
        ),
    ),
]


class UpdateRowsRequest(Request):
    table: TableName
    set_: Row = Field(alias="set", min_length=1, description="Column -> new value.")
    where: WriteWhere
    idempotency_key: IdempotencyKey
    returning: Returning
    dry_run: DryRun


class DeleteRowsRequest(Request):
    table: TableName
    where: WriteWhere
    idempotency_key: IdempotencyKey
    dry_run: DryRun


class TableInfo(Result):
    name: str = Field(description="Qualified name, `schema.table`.")
    description: str | None
    operations: list[Operation] = Field(description="What this caller may do with the table.")


class ListTablesResult(Result):
    tables: list[TableInfo]


class ColumnInfo(Result):
    name: str
    type: str
    nullable: bool
    default: str | None
    description: str | None
    insertable: bool
    updatable: bool
    writable: bool = Field(description="insertable or updatable by this caller.")


class DescribeTableResult(Result):
    name: str
    description: str | None
    operations: list[Operation]
    primary_key: list[str]
    columns: list[ColumnInfo]


class SelectRowsResult(Result):
    rows: list[dict[str, Any]]
    row_count: int
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page.")


class WriteResult(Result):
    rows: list[dict[str, Any]] = Field(description="The `returning` columns of affected rows.")
    row_count: int = Field(description="How many rows the write changed.")
    replayed: bool = Field(
        default=False,
        description="True when this is the stored result of an earlier call with the same key.",
    )
    dry_run: bool = Field(
        default=False, description="True when nothing was changed: the write was rolled back."
    )
