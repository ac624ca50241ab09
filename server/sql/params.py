"""Bind values: a request's literals travel as parameters, converted to the Python type
asyncpg expects for the type Postgres inferred for each placeholder."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
from sqlglot import exp

from server.errors import bad_request

Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Param:
    value: Any
    # "sql": a literal written in a filter; "json": a JSON value (row values, cursors).
    # A JSON value bound to a json/jsonb column is serialized; a SQL string is JSON text already.
    source: str = "sql"


class Bindings:
    """Collects parameters while a statement is built; `placeholder` returns `$n`."""

    def __init__(self) -> None:
        self.params: list[Param] = []

    def placeholder(
        self, value: Any, *, source: str = "sql", as_text: bool = False
    ) -> exp.Expression:
        self.params.append(Param(value, source))
        node: exp.Expression = exp.Parameter(this=exp.Literal.number(len(self.params)))
        if as_text:
            # Postgres parses the text itself (typed literals such as interval '7 days').
            node = exp.Cast(this=node, to=exp.DataType.build("text"))
        return node


def _reject_bool(value: Any) -> None:
    if isinstance(value, bool):
        raise ValueError("a boolean")


def _to_int(value: Any) -> int:
    _reject_bool(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError("expected a whole number")


def _to_decimal(value: Any) -> Decimal:
    _reject_bool(value)
    if isinstance(value, int | float | Decimal | str):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
    raise ValueError(type(value).__name__)


def _to_float(value: Any) -> float:
    _reject_bool(value)
    if isinstance(value, int | float | Decimal | str):
        return float(value)
    raise ValueError(type(value).__name__)


_TRUE = {"t", "true", "yes", "y", "on", "1"}
_FALSE = {"f", "false", "no", "n", "off", "0"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("not true/false")


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    raise ValueError(type(value).__name__)


def _iso(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 string")
    text = value.strip()
    return text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text


def _to_date(value: Any) -> date:
    text = _iso(value)
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()


def _to_timestamptz(value: Any) -> datetime:
    parsed = datetime.fromisoformat(_iso(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _to_timestamp(value: Any) -> datetime:
    parsed = datetime.fromisoformat(_iso(value))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _to_time(value: Any) -> time:
    return time.fromisoformat(_iso(value))


def _to_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError("expected a UUID string")
    return uuid.UUID(value.strip())


_SCALARS: dict[str, Converter] = {
    "int2": _to_int,
    "int4": _to_int,
    "int8": _to_int,
    "oid": _to_int,
    "numeric": _to_decimal,
    "float4": _to_float,
    "float8": _to_float,
    "bool": _to_bool,
    "text": _to_text,
    "varchar": _to_text,
    "bpchar": _to_text,
    "char": _to_text,
    "name": _to_text,
    "citext": _to_text,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "timestamptz": _to_timestamptz,
    "time": _to_time,
    "uuid": _to_uuid,
}

_JSON_TYPES = {"json", "jsonb"}
_UNSUPPORTED = {"bytea", "interval"}


def _converter(type_name: str, kind: str) -> tuple[Converter, str]:
    if kind == "array" or type_name.startswith("_"):
        element, _ = _converter(type_name.lstrip("_"), "scalar")

        def to_array(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise ValueError("expected a JSON array")
            return [None if item is None else element(item) for item in value]

        return to_array, type_name.lstrip("_") + "[]"
    if type_name in _SCALARS:
        return _SCALARS[type_name], type_name
    if type_name in _UNSUPPORTED:

        def unsupported(value: Any) -> Any:
            raise ValueError(f"write it as CAST('...' AS {type_name})")

        return unsupported, type_name
    # Enums, domains and other types with a text form: Postgres parses the string.
    return _to_text, type_name


def _bind_one(param: Param, converter: Converter, type_name: str) -> Any:
    value = param.value
    if value is None:
        return None
    if type_name in _JSON_TYPES:
        if param.source == "sql" and isinstance(value, str):
            return value
        return json.dumps(value)
    if isinstance(value, dict | list) and not type_name.endswith("[]"):
        raise ValueError(f"a JSON {type(value).__name__} cannot be stored in a {type_name}")
    return converter(value)


class ParamBinder:
    """Converts parameters for one statement text; learns each text's parameter types once
    (a prepare round trip) and caches them for the life of the process."""

    def __init__(self, max_entries: int = 2048) -> None:
        self._types: OrderedDict[str, tuple[tuple[Converter, str], ...]] = OrderedDict()
        self._max_entries = max_entries

    async def bind(self, conn: asyncpg.Connection, sql: str, params: Sequence[Param]) -> list[Any]:
        converters = self._types.get(sql)
        if converters is None:
            statement = await conn.prepare(sql)
            converters = tuple(_converter(t.name, t.kind) for t in statement.get_parameters())
            self._types[sql] = converters
            if len(self._types) > self._max_entries:
                self._types.popitem(last=False)
        values = []
        for index, (param, (convert, type_name)) in enumerate(
            zip(params, converters, strict=True), start=1
        ):
            try:
                values.append(_bind_one(param, convert, type_name))
            except (ValueError, TypeError, OverflowError) as exc:
                shown = json.dumps(param.value, default=str)
                if len(shown) > 60:
                    shown = shown[:57] + "..."
                raise bad_request(
                    f"value {shown} (parameter {index}) is not a valid {type_name}: {exc}"
                ) from None
        return values

    def clear(self) -> None:
        self._types.clear()
