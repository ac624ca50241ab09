"""Bind values: every value of a request travels as a parameter, and Postgres, not Python,
reads it.

A quoted literal in a filter and a value from a request's JSON become placeholders of no
declared type, so Postgres infers each one's type from its context exactly as it would for
a quoted literal (`'0111' = 111` compares integers, `created_at > 'today'` reads a
timestamp). The value then reaches Postgres as text and is read by that type's own input
function: `CAST($n::text AS <inferred type>)`. The inferred types and the rewritten SQL are
learned once per statement text (one prepare round trip) and cached.
"""

from __future__ import annotations

import enum
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from sqlglot import exp

from server.errors import bad_request
from server.sql.lexer import is_valid_unicode


class Kind(enum.Enum):
    TEXT = "text"  # a quoted literal written in a filter: Postgres reads its text
    JSON = "json"  # a JSON value of the request (row values, cursors): Postgres reads its text form
    TYPED = "typed"  # a value whose type the generated SQL fixes (numbers, limit, offset)


@dataclass(frozen=True, slots=True)
class Param:
    value: Any
    kind: Kind = Kind.TEXT


# sqlglot renders these types for the Postgres type a number literal gets (see `number_type`).
INT4, INT8, NUMERIC = "INT", "BIGINT", "NUMERIC"
_INT4_RANGE = range(-(2**31), 2**31)
_INT8_RANGE = range(-(2**63), 2**63)


def number_type(text: str) -> str:
    """The type Postgres gives a numeric constant: int4 if the digits fit, else int8, else
    numeric; anything with a point or an exponent is numeric."""
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit():
        value = int(text)
        if value in _INT4_RANGE:
            return INT4
        if value in _INT8_RANGE:
            return INT8
    return NUMERIC


def number_value(text: str) -> int | Decimal:
    return Decimal(text) if number_type(text) == NUMERIC else int(text)


class Bindings:
    """Collects parameters while a statement is built; each method returns its `$n`."""

    def __init__(self) -> None:
        self.params: list[Param] = []

    def _next(self, param: Param) -> exp.Expression:
        self.params.append(param)
        return exp.Parameter(this=exp.Literal.number(len(self.params)))

    def text(self, value: str) -> exp.Expression:
        """A quoted literal: typed by its context, read by Postgres."""
        return self._next(Param(value, Kind.TEXT))

    def number(self, text: str) -> exp.Expression:
        """A number literal, typed as Postgres types the constant."""
        sql_type = number_type(text)
        return exp.Cast(
            this=self._next(Param(number_value(text), Kind.TYPED)),
            to=exp.DataType.build(sql_type, dialect="postgres"),
        )

    def json(self, value: Any) -> exp.Expression:
        """A JSON value from the request, for a column or a cursor position."""
        return self._next(Param(value, Kind.JSON))

    def typed(self, value: Any) -> exp.Expression:
        """A value whose type the SQL around it fixes (LIMIT, OFFSET)."""
        return self._next(Param(value, Kind.TYPED))


_PLACEHOLDER = re.compile(r"(\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*')|\$(\d+)\b")
_UNDETERMINED = re.compile(r"parameter \$(\d+)")
_TEXT_TYPES = {"text"}
_JSON_TYPES = {"json", "jsonb"}
_INT_TYPES = {"int2", "int4", "int8"}


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str  # with `$n::text::type` where Postgres reads a value's text
    types: tuple[str, ...]  # the type Postgres inferred for each parameter
    kinds: tuple[Kind, ...]
    # Postgres reads a quoted literal when it parses the statement, so an invalid one is an
    # error even where evaluation never reaches it (`true OR id = 'x'`). A placeholder is
    # read only when evaluated: this statement reads the filter's literals up front.
    checks: str | None = None
    checked: tuple[int, ...] = ()  # indexes of the parameters `checks` takes


def _type_name(t: Any) -> str:
    name = '"' + str(t.name).replace('"', '""') + '"'
    return '"' + str(t.schema).replace('"', '""') + '".' + name if t.schema else name


def _read_as(sql: str, casts: dict[int, str]) -> str:
    """`$n` -> `$n::text::<type>` for the given parameters (outside quoted names/strings)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return match.group(1)
        n = int(match.group(2))
        return f"(${n}::text::{casts[n]})" if n in casts else match.group(0)

    return _PLACEHOLDER.sub(replace, sql)


class ParamBinder:
    """Turns a statement and its parameters into what asyncpg sends; learns each statement
    text's parameter types once and caches them for the life of the process."""

    def __init__(self, max_entries: int = 2048) -> None:
        self._prepared: OrderedDict[str, _Prepared] = OrderedDict()
        self._max_entries = max_entries

    async def bind(
        self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]
    ) -> tuple[str, list[Any]]:
        kinds = tuple(p.kind for p in params)
        prepared = self._prepared.get(sql)
        if prepared is None or prepared.kinds != kinds:
            prepared = await self._prepare(conn, sql, kinds)
            self._prepared[sql] = prepared
            if len(self._prepared) > self._max_entries:
                self._prepared.popitem(last=False)
        values = []
        for index, (param, type_name) in enumerate(zip(params, prepared.types, strict=True), 1):
            try:
                values.append(_value(param, type_name))
            except (ValueError, TypeError) as exc:
                shown = json.dumps(param.value, default=str)
                if len(shown) > 60:
                    shown = shown[:57] + "..."
                raise bad_request(
                    f"value {shown} (parameter {index}) is not a valid {type_name}: {exc}"
                ) from None
        if prepared.checks is not None:
            await conn.fetchval(prepared.checks, *[values[i] for i in prepared.checked])
        return prepared.sql, values

    async def _prepare(
        self, conn: asyncpg.Connection, sql: str, kinds: tuple[Kind, ...]
    ) -> _Prepared:
        # A literal whose type nothing determines (`'x' IS NULL`) stays text, as in Postgres.
        as_text: dict[int, str] = {}
        for _ in range(len(kinds) + 1):
            # A savepoint: a failed prepare must not abort the caller's transaction.
            await conn.execute("SAVEPOINT rowgate_prepare")
            try:
                # Unnamed: only its parameter types are wanted, and an unnamed statement is
                # gone at the next Parse. A named one would stay on the server connection
                # until asyncpg closes it later, maybe outside any transaction, which behind
                # a transaction pooler reaches another server connection.
                statement = await conn.prepare(_read_as(sql, as_text), name="")
                await conn.execute("RELEASE SAVEPOINT rowgate_prepare")
                break
            except asyncpg.IndeterminateDatatypeError as exc:
                await conn.execute("ROLLBACK TO SAVEPOINT rowgate_prepare")
                found = _UNDETERMINED.search(str(exc))
                if found is None or int(found.group(1)) in as_text:
                    raise
                as_text[int(found.group(1))] = '"pg_catalog"."text"'
        else:  # pragma: no cover - each retry fixes one more parameter
            raise bad_request("could not determine the types of this statement's values")
        types = statement.get_parameters()
        casts = dict(as_text)
        for n, (t, kind) in enumerate(zip(types, kinds, strict=True), start=1):
            if kind is not Kind.TYPED and t.name not in _TEXT_TYPES and n not in casts:
                casts[n] = _type_name(t)
        checked = tuple(
            n - 1 for n in sorted(casts) if kinds[n - 1] is Kind.TEXT and n not in as_text
        )
        checks = (
            "SELECT "
            + ", ".join(f"${i}::text::{casts[n + 1]}" for i, n in enumerate(checked, start=1))
            if checked
            else None
        )
        return _Prepared(_read_as(sql, casts), tuple(t.name for t in types), kinds, checks, checked)

    def clear(self) -> None:
        self._prepared.clear()


def _value(param: Param, type_name: str) -> Any:
    value = param.value
    if value is None or param.kind is Kind.TYPED:
        return value
    text = value if param.kind is Kind.TEXT else json_as_text(value, type_name)
    if not text.isascii() and not is_valid_unicode(text):
        raise ValueError("not valid Unicode (it contains a lone surrogate)")
    return text


def json_as_text(value: Any, type_name: str) -> str:
    """A JSON value in the text form Postgres' input function for `type_name` reads."""
    if type_name in _JSON_TYPES:
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and type_name in _INT_TYPES:
        return str(int(value))
    if isinstance(value, int | float | Decimal | str):
        return str(value)
    if isinstance(value, list):
        if not type_name.startswith("_"):
            raise ValueError(f"a JSON array cannot be stored in a {type_name}")
        return _array_literal(value, type_name[1:])
    raise ValueError(f"a JSON {type(value).__name__} cannot be stored in a {type_name}")


def _array_literal(items: list[Any], element_type: str) -> str:
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(_array_literal(item, element_type))
        else:
            text = json_as_text(item, element_type)
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"
