"""Agent-written SQL fragments (`where`, `order_by`) -> a new, checked sqlglot tree.

Nothing of the agent's text reaches Postgres: the fragment is parsed, every node is
checked against an allowlist and rebuilt from scratch (no comments, no unknown
arguments), identifiers are resolved against the columns this caller may see, and
every literal becomes a bind parameter. Hidden and unknown columns get the same error,
so a filter can never tell whether a hidden column exists.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

from server.errors import RowgateError, bad_request
from server.sql.params import Bindings

MAX_FRAGMENT_DEPTH = 64
MAX_IN_LIST = 1000


@dataclass(frozen=True, slots=True)
class ColumnScope:
    """The columns a fragment may name: the table's columns visible to this caller."""

    table: str  # qualified, for messages
    table_name: str  # bare name, accepted as a qualifier (`orders.total`)
    visible: Collection[str]

    def resolve(self, node: exp.Column) -> str:
        if not isinstance(node.this, exp.Identifier):
            raise bad_request("`*` is not allowed in a filter; name a column")
        if node.args.get("db") or node.args.get("catalog"):
            raise bad_request("qualify columns with the table name only, e.g. `orders.total`")
        qualifier = node.args.get("table")
        if qualifier is not None and _name(qualifier) != self.table_name:
            raise bad_request(
                f"columns can only be qualified with {self.table_name!r}, not {_name(qualifier)!r}"
            )
        name = _name(node.this)
        if name not in self.visible:
            raise unknown_column(name, self)
        return name


def _name(identifier: exp.Expression) -> str:
    """Postgres folds unquoted identifiers to lower case (ASCII letters only)."""
    text = identifier.this if isinstance(identifier, exp.Identifier) else identifier.name
    if isinstance(identifier, exp.Identifier) and identifier.quoted:
        return str(text)
    return str(text).translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = ", ".join(options) if len(options) <= 60 else ", ".join(options[:60]) + ", ..."
    return f"{hint} Available: {listing or '(none)'}."


def unknown_column(name: str, scope: ColumnScope) -> RowgateError:
    return bad_request(
        f"unknown column {name!r} in {scope.table}.{did_you_mean(name, scope.visible)}"
    )


def quoted_column(name: str) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True))


def _parse(text: str, what: str) -> exp.Expression:
    try:
        statements = sqlglot.parse(text, read="postgres")
    except (ParseError, TokenError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise bad_request(f"could not parse {what}: {first_line}") from None
    except RecursionError:
        raise bad_request(f"{what} is nested too deeply") from None
    expressions = [s for s in statements if isinstance(s, exp.Expression)]
    if len(expressions) != 1 or len(statements) != 1:
        raise bad_request(f"{what} must be a single expression (no ';')")
    return expressions[0]


# Units accepted by date_trunc / extract; sqlglot renders them as constants.
_UNITS = {
    "microseconds", "milliseconds", "second", "minute", "hour", "day", "week", "month",
    "quarter", "year", "decade", "century", "millennium", "dow", "doy", "isodow", "epoch",
    "isoyear", "seconds", "minutes", "hours", "days", "weeks", "months", "years",
}  # fmt: skip

_CAST_TYPES = {
    exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
    exp.DataType.Type.SMALLINT, exp.DataType.Type.INT, exp.DataType.Type.BIGINT,
    exp.DataType.Type.DECIMAL, exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE,
    exp.DataType.Type.BOOLEAN, exp.DataType.Type.DATE, exp.DataType.Type.TIME,
    exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.INTERVAL,
    exp.DataType.Type.UUID, exp.DataType.Type.JSONB, exp.DataType.Type.JSON,
}  # fmt: skip

_BINARY = (
    exp.And, exp.Or, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe,
)  # fmt: skip

# Function node -> the argument names it may carry. Anything else is refused by name.
_FUNCTIONS: dict[type[exp.Expression], tuple[str, ...]] = {
    exp.Lower: ("this",),
    exp.Upper: ("this",),
    exp.Length: ("this",),
    exp.Trim: ("this",),
    exp.Abs: ("this",),
    exp.Round: ("this", "decimals"),
    exp.Coalesce: ("this", "expressions"),
    exp.CurrentTimestamp: (),
    exp.CurrentDate: (),
    exp.TimestampTrunc: ("this", "unit"),
    exp.Extract: ("this", "expression"),
}
ALLOWED_FUNCTIONS = (
    "lower, upper, length, trim, abs, round, coalesce, now, current_timestamp, "
    "current_date, date_trunc, extract"
)


class _Compiler:
    def __init__(self, scope: ColumnScope, bindings: Bindings) -> None:
        self.scope = scope
        self.bindings = bindings
        self.depth = 0

    def compile(self, node: exp.Expression) -> exp.Expression:
        self.depth += 1
        if self.depth > MAX_FRAGMENT_DEPTH:
            raise bad_request("the filter is nested too deeply")
        try:
            return self._compile(node)
        finally:
            self.depth -= 1

    def _compile(self, node: exp.Expression) -> exp.Expression:
        c = self.compile
        if isinstance(node, _BINARY):
            return type(node)(this=c(node.this), expression=c(node.expression))
        if isinstance(node, exp.Column):
            return quoted_column(self.scope.resolve(node))
        if isinstance(node, exp.Literal):
            if node.is_string:
                return self.bindings.placeholder(node.this)
            return self.bindings.placeholder(_number(node.this))
        if isinstance(node, exp.RawString):
            return self.bindings.placeholder(node.this)
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        if isinstance(node, exp.Null):
            return exp.Null()
        if isinstance(node, exp.Not):
            return exp.Not(this=c(node.this))
        if isinstance(node, exp.Paren):
            return exp.Paren(this=c(node.this))
        if isinstance(node, exp.Neg):
            inner = node.this
            if isinstance(inner, exp.Literal) and not inner.is_string:
                return self.bindings.placeholder(-_number(inner.this))
            return exp.Neg(this=c(inner))
        if isinstance(node, exp.Is):
            target = node.expression
            if not isinstance(target, exp.Null | exp.Boolean):
                raise bad_request("IS may only be followed by NULL, TRUE or FALSE")
            return exp.Is(this=c(node.this), expression=c(target))
        if isinstance(node, exp.In):
            if any(node.args.get(k) for k in ("query", "unnest", "field")):
                raise bad_request("IN takes a list of values, not a subquery")
            values = node.expressions
            if not values or len(values) > MAX_IN_LIST:
                raise bad_request(f"IN needs between 1 and {MAX_IN_LIST} values")
            return exp.In(this=c(node.this), expressions=[c(v) for v in values])
        if isinstance(node, exp.Between):
            return exp.Between(
                this=c(node.this), low=c(node.args["low"]), high=c(node.args["high"])
            )
        if isinstance(node, exp.Like | exp.ILike):
            if node.args.get("escape"):
                raise bad_request("LIKE ... ESCAPE is not supported")
            return type(node)(
                this=c(node.this), expression=c(node.expression), negate=node.args.get("negate")
            )
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.Interval):
            value = node.this
            if not isinstance(value, exp.Literal) or not value.is_string:
                raise bad_request("write intervals as INTERVAL '7 days'")
            unit = node.args.get("unit")
            text = f"{value.this} {unit.name}" if unit is not None else str(value.this)
            return exp.Cast(
                this=self.bindings.placeholder(text, as_text=True),
                to=exp.DataType.build("interval"),
            )
        if type(node) in _FUNCTIONS:
            return self._function(node)
        raise self._refusal(node)

    def _cast(self, node: exp.Cast) -> exp.Expression:
        target = node.args.get("to")
        if not isinstance(target, exp.DataType) or target.this not in _CAST_TYPES:
            raise bad_request(
                "CAST is limited to text, varchar, integer types, numeric, float, boolean, date, "
                "time, timestamp, timestamptz, interval, uuid, json and jsonb"
            )
        if target.expressions:
            raise bad_request("type modifiers such as numeric(10,2) are not supported in CAST")
        inner = node.this
        if isinstance(inner, exp.Literal) and inner.is_string:
            operand = self.bindings.placeholder(inner.this, as_text=True)
        else:
            operand = self.compile(inner)
        return exp.Cast(this=operand, to=exp.DataType(this=target.this))

    def _function(self, node: exp.Expression) -> exp.Expression:
        allowed = _FUNCTIONS[type(node)]
        rebuilt: dict[str, object] = {}
        for key, value in node.args.items():
            if value is None or value == []:
                continue
            if key not in allowed:
                raise bad_request(f"this form of {node.key}() is not supported")
            if isinstance(value, exp.Var):
                if value.name.lower() not in _UNITS:
                    raise bad_request(f"unknown date/time unit {value.name!r}")
                rebuilt[key] = exp.var(value.name.upper())
            elif isinstance(value, list):
                rebuilt[key] = [self.compile(item) for item in value]
            elif isinstance(value, exp.Expression):
                rebuilt[key] = self.compile(value)
            else:
                raise bad_request(f"this form of {node.key}() is not supported")
        return type(node)(**rebuilt)

    @staticmethod
    def _refusal(node: exp.Expression) -> RowgateError:
        if isinstance(node, exp.Select | exp.Subquery | exp.Exists | exp.Union | exp.Query):
            return bad_request("subqueries are not allowed in filters")
        if isinstance(node, exp.Anonymous | exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.key
            return bad_request(
                f"function {name}() is not allowed; allowed functions: {ALLOWED_FUNCTIONS}"
            )
        if isinstance(node, exp.Parameter | exp.Placeholder):
            return bad_request("placeholders are not allowed; write the value itself")
        if isinstance(node, exp.Star):
            return bad_request("`*` is not allowed in a filter")
        return bad_request(f"unsupported syntax in filter: {node.key}")


def _number(text: str) -> int | Decimal:
    return int(text) if text.isdigit() else Decimal(text)


@dataclass(frozen=True, slots=True)
class ConditionShape:
    """A filter's tokens with its literal values taken out: `id = 5` and `id = 6` share a shape,
    so the SQL generated for one serves the other with new bind values."""

    key: tuple[tuple[str, str | None], ...]
    literals: tuple[str | int | Decimal, ...]


_TOKENIZER = Postgres().tokenizer()  # one instance: building a tokenizer costs more than using it
_T = TokenType
# Tokens whose meaning never depends on a literal's value. Filters with anything else
# (functions, casts, intervals, escape strings, signs) are compiled afresh every time.
_SHAPE_TOKENS = {
    _T.VAR, _T.IDENTIFIER, _T.STRING, _T.NUMBER, _T.EQ, _T.NEQ, _T.GT, _T.GTE, _T.LT, _T.LTE,
    _T.AND, _T.OR, _T.NOT, _T.L_PAREN, _T.R_PAREN, _T.COMMA, _T.IN, _T.BETWEEN, _T.IS,
    _T.NULL, _T.TRUE, _T.FALSE, _T.LIKE, _T.ILIKE, _T.DOT,
}  # fmt: skip


@functools.lru_cache(maxsize=1024)
def condition_shape(text: str) -> ConditionShape | None:
    try:
        tokens = _TOKENIZER.tokenize(text)
    except (TokenError, ParseError, RecursionError):
        return None
    key: list[tuple[str, str | None]] = []
    literals: list[str | int | Decimal] = []
    for token in tokens:
        kind = token.token_type
        if kind not in _SHAPE_TOKENS:
            return None
        if kind is _T.STRING:
            literals.append(token.text)
        elif kind is _T.NUMBER:
            literals.append(_number(token.text))
        key.append((kind.name, None if kind in (_T.STRING, _T.NUMBER) else token.text))
    return ConditionShape(tuple(key), tuple(literals))


def compile_condition(text: str, scope: ColumnScope, bindings: Bindings) -> exp.Expression:
    """The agent's `where` text as a checked boolean expression with bound literals."""
    return _Compiler(scope, bindings).compile(_parse(text, "where"))


@dataclass(frozen=True, slots=True)
class OrderTerm:
    column: str
    descending: bool


_SIMPLE_ORDER = re.compile(
    r"\s*[A-Za-z_][A-Za-z0-9_]*(\s+(?i:asc|desc))?(\s*,\s*[A-Za-z_][A-Za-z0-9_]*(\s+(?i:asc|desc))?)*\s*"
)


def parse_order_by(text: str, scope: ColumnScope) -> list[OrderTerm]:
    """`total DESC, id` -> order terms over visible columns (Postgres' default NULL order)."""
    terms: list[OrderTerm] = []
    if _SIMPLE_ORDER.fullmatch(text):
        # The common case needs no SQL parser: bare names, folded like Postgres does.
        for part in text.split(","):
            name, *direction = part.split()
            column = exp.Column(this=exp.to_identifier(name))
            descending = [d.lower() for d in direction] == ["desc"]
            terms.append(OrderTerm(scope.resolve(column), descending))
        return _distinct(terms)
    query = _parse(f"SELECT 1 ORDER BY {text}", "order_by")
    order = query.args.get("order") if isinstance(query, exp.Select) else None
    extra = {k for k, v in query.args.items() if v and k not in {"expressions", "order"}}
    if order is None or extra or len(query.expressions) != 1:
        raise bad_request("order_by must be a comma-separated list of columns with ASC/DESC")
    for ordered in order.expressions:
        column = ordered.this
        if not isinstance(column, exp.Column):
            raise bad_request("order_by takes column names only, e.g. `total DESC, id`")
        descending = bool(ordered.args.get("desc"))
        if bool(ordered.args.get("nulls_first")) != descending:
            raise bad_request("NULLS FIRST/LAST is not supported in order_by")
        terms.append(OrderTerm(scope.resolve(column), descending))
    return _distinct(terms)


def _distinct(terms: list[OrderTerm]) -> list[OrderTerm]:
    names = [t.column for t in terms]
    for name in names:
        if names.count(name) > 1:
            raise bad_request(f"column {name!r} appears twice in order_by")
    return terms


def column_list(names: Iterable[str], scope: ColumnScope, what: str) -> list[str]:
    """Plain column names from JSON (`columns`, `returning`, row keys), checked like filters."""
    result: list[str] = []
    for name in names:
        if name not in scope.visible:
            raise bad_request(
                f"unknown column {name!r} in {what} for {scope.table}."
                f"{did_you_mean(name, scope.visible)}"
            )
        if name not in result:
            result.append(name)
    return result
