"""Agent-written SQL fragments (`where`, `order_by`) -> a checked sqlglot tree.

Nothing of the agent's text reaches Postgres: the fragment's tokens are checked against
Postgres' spelling (lexer.py), the parsed tree is checked node by node against an allowlist
(each node with every argument it carries either kept or refused), identifiers are resolved
against the columns this caller may see, and every literal becomes a bind parameter typed
as Postgres types that literal. The SQL sent is generated from that tree, so it means what
Postgres makes of the agent's text. Hidden and unknown columns get the same error, so a
filter can never tell whether a hidden column exists.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from server.errors import RowgateError, bad_request
from server.sql.lexer import FUNCTIONS, TOKENIZER, is_number, lex
from server.sql.params import Bindings, number_type, number_value

MAX_FRAGMENT_DEPTH = 64
MAX_IN_LIST = 1000


@dataclass(frozen=True, slots=True)
class ColumnScope:
    """The columns a fragment may name: the table's columns visible to this caller."""

    table: str  # qualified, for messages
    table_name: str  # bare name, accepted as a qualifier (`orders.total`)
    visible: Collection[str]
    schema: str = ""  # accepted before the table name (`public.orders.total`)

    def resolve(self, node: exp.Column) -> str:
        if not isinstance(node.this, exp.Identifier):
            raise bad_request("`*` is not allowed in a filter; name a column")
        if node.args.get("catalog"):
            raise bad_request("qualify columns with at most schema and table, e.g. `orders.total`")
        schema = node.args.get("db")
        if schema is not None and _name(schema) != self.schema:
            raise bad_request(
                f"columns can only be qualified with {self.schema!r}.{self.table_name!r}"
            )
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
    """Plain sqlglot parsing, for fragments that are not filters (order_by)."""
    try:
        tokens = TOKENIZER.tokenize(text)
    except (ParseError, TokenError) as exc:
        raise _unparsable(exc, what) from None
    return _parse_tokens(tokens, text, what)


def _parse_filter(text: str) -> exp.Expression:
    return _parse_tokens(lex(text, "where"), text, "where")


_POSTGRES = Postgres()


def _parse_tokens(tokens: list[Token], text: str, what: str) -> exp.Expression:
    try:
        statements = _POSTGRES.parser().parse(tokens, text)
    except (ParseError, TokenError) as exc:
        raise _unparsable(exc, what) from None
    except RecursionError:
        raise bad_request(f"{what} is nested too deeply") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Expression):
        raise bad_request(f"{what} must be a single expression (no ';')")
    return statements[0]


def _unparsable(exc: Exception, what: str) -> RowgateError:
    first_line = str(exc).splitlines()[0] if str(exc) else "syntax error"
    return bad_request(f"could not parse {what}: {first_line}")


_BINARY = frozenset({"this", "expression"})
_UNARY = frozenset({"this"})
# Node type -> the arguments it may carry (everything else it carries is refused). Nodes are
# kept, not rebuilt, so every flag they carry (NOT, SYMMETRIC, typed division) survives.
_NODES: dict[type[exp.Expression], frozenset[str]] = {
    **dict.fromkeys(
        (
            exp.And,
            exp.Or,
            exp.EQ,
            exp.NEQ,
            exp.GT,
            exp.GTE,
            exp.LT,
            exp.LTE,
            exp.NullSafeEQ,
            exp.NullSafeNEQ,
            exp.Add,
            exp.Sub,
            exp.Mul,
            exp.Mod,
            exp.Pow,
            exp.Nullif,
            exp.Escape,
        ),
        _BINARY,
    ),
    exp.Div: _BINARY | {"typed", "safe"},
    exp.DPipe: _BINARY | {"safe"},
    exp.Like: _BINARY | {"negate"},
    exp.ILike: _BINARY | {"negate"},
    exp.Is: _BINARY | {"negate"},
    exp.In: frozenset({"this", "expressions"}),
    exp.Between: frozenset({"this", "low", "high", "symmetric"}),
    exp.AtTimeZone: frozenset({"this", "zone"}),
    **dict.fromkeys(
        (exp.Paren, exp.Lower, exp.Upper, exp.Length, exp.Abs, exp.Floor, exp.Ceil), _UNARY
    ),
    exp.Trim: frozenset({"this", "expression", "position"}),
    exp.Round: frozenset({"this", "decimals"}),
    exp.Coalesce: frozenset({"this", "expressions"}),
    exp.Greatest: frozenset({"this", "expressions", "ignore_nulls"}),
    exp.Least: frozenset({"this", "expressions", "ignore_nulls"}),
    exp.CurrentTimestamp: frozenset(),
    exp.CurrentDate: frozenset(),
    exp.Localtimestamp: frozenset(),
}
_FLAGS = frozenset({"negate", "symmetric", "typed", "safe", "ignore_nulls"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRIM_POSITIONS = {"BOTH", "LEADING", "TRAILING"}

_CAST_TYPES = {
    exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
    exp.DataType.Type.BPCHAR, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT, exp.DataType.Type.DECIMAL, exp.DataType.Type.FLOAT,
    exp.DataType.Type.DOUBLE, exp.DataType.Type.BOOLEAN, exp.DataType.Type.DATE,
    exp.DataType.Type.TIME, exp.DataType.Type.TIMETZ, exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.INTERVAL, exp.DataType.Type.UUID,
    exp.DataType.Type.JSONB, exp.DataType.Type.JSON,
}  # fmt: skip
# Types that take a modifier, and how many numbers it has at most.
_TYPE_MODIFIERS = {
    exp.DataType.Type.VARCHAR: 1, exp.DataType.Type.CHAR: 1, exp.DataType.Type.BPCHAR: 1,
    exp.DataType.Type.DECIMAL: 2, exp.DataType.Type.TIME: 1, exp.DataType.Type.TIMETZ: 1,
    exp.DataType.Type.TIMESTAMP: 1, exp.DataType.Type.TIMESTAMPTZ: 1,
}  # fmt: skip
CAST_TYPES_HELP = (
    "text, varchar[(n)], char[(n)], smallint, integer, bigint, numeric[(p[,s])], real, "
    "double precision, boolean, date, time[(p)], timestamp[(p)], timestamptz[(p)], interval, "
    "uuid, json and jsonb"
)


class _Compiler:
    """Checks a parsed filter node by node against the allowlist, in place: columns are
    resolved against what the caller may see, literals become parameters."""

    def __init__(self, scope: ColumnScope, bindings: Bindings) -> None:
        self.scope = scope
        self.bindings = bindings
        self.depth = 0
        # Postgres copies the operand of BETWEEN (all three for SYMMETRIC) and of IN before
        # typing each copy on its own: `'x' BETWEEN a AND b` types 'x' once from a, once
        # from b. One placeholder cannot have two types, so quoted literals in those
        # operands stay literals in the generated SQL (rendered, quoted and escaped, by the
        # generator; standard_conforming_strings is on for every connection).
        self.literal_operands = 0

    def compile(self, node: exp.Expression) -> exp.Expression:
        self.depth += 1
        if self.depth > MAX_FRAGMENT_DEPTH:
            raise bad_request("the filter is nested too deeply")
        try:
            return self._compile(node)
        finally:
            self.depth -= 1

    def _compile(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            return quoted_column(self.scope.resolve(node))
        if isinstance(node, exp.Literal):
            if node.is_string:
                if self.literal_operands:
                    return exp.Literal.string(node.this)
                return self.bindings.text(node.this)
            return self.bindings.number(node.this)
        if isinstance(node, exp.Between | exp.In):
            return self._copied_operands(node)
        if isinstance(node, exp.Boolean | exp.Null):
            return node
        if isinstance(node, exp.Neg):
            folded = _negated_number(node)
            if folded is not None:
                return self.bindings.number(folded)
        if isinstance(node, exp.Not):
            # Parenthesised: `a NOT BETWEEN 1 AND 2 = false` must not print as `NOT a ...`.
            return exp.Paren(this=exp.Not(this=self.compile(node.this)))
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.Extract):
            return self._with_unit(node, "this", "expression")
        if isinstance(node, exp.TimestampTrunc):
            return self._with_unit(node, "unit", "this")
        if isinstance(node, exp.Neg):
            node.set("this", self.compile(node.this))
            return node
        return self._generic(node)

    def _generic(
        self, node: exp.Expression, compiled: frozenset[str] = frozenset()
    ) -> exp.Expression:
        """Any allowlisted node: every argument it carries is allowed, then compiled."""
        allowed = _NODES.get(type(node))
        if allowed is None:
            raise _refusal(node)
        self._check(node)
        for key, value in list(node.args.items()):
            if value is None or value is False or value == []:
                continue
            if key not in allowed:
                raise bad_request(f"this form of {node.key} is not supported in filters")
            if key in _FLAGS:
                if not isinstance(value, bool):  # never an expression that would be printed
                    raise bad_request(f"this form of {node.key} is not supported in filters")
                continue
            if key in compiled:
                continue
            if isinstance(value, list):
                node.set(key, [self.compile(item) for item in value])
            elif isinstance(value, exp.Expression):
                node.set(key, self.compile(value))
            elif not (key == "position" and str(value).upper() in _TRIM_POSITIONS):
                raise bad_request(f"this form of {node.key} is not supported in filters")
        return node

    def _copied_operands(self, node: exp.Between | exp.In) -> exp.Expression:
        copied = frozenset({"this"} | ({"low", "high"} if node.args.get("symmetric") else set()))
        self._check(node)
        self.literal_operands += 1
        try:
            for key in ("this", "low", "high"):
                value = node.args.get(key)
                if key in copied and isinstance(value, exp.Expression):
                    node.set(key, self.compile(value))
        finally:
            self.literal_operands -= 1
        return self._generic(node, compiled=copied)

    @staticmethod
    def _check(node: exp.Expression) -> None:
        if isinstance(node, exp.Is) and not isinstance(node.expression, exp.Null | exp.Boolean):
            raise bad_request("IS may only be followed by [NOT] NULL, TRUE, FALSE or UNKNOWN")
        if isinstance(node, exp.In) and not 1 <= len(node.expressions) <= MAX_IN_LIST:
            if node.args.get("query") is not None:
                raise bad_request("IN takes a list of values, not a subquery")
            raise bad_request(f"IN needs between 1 and {MAX_IN_LIST} values")
        if isinstance(node, exp.Escape) and not isinstance(node.this, exp.Like | exp.ILike):
            raise bad_request("ESCAPE belongs to LIKE / ILIKE")

    def _cast(self, node: exp.Cast) -> exp.Expression:
        extra = {k for k, v in node.args.items() if v and k not in ("this", "to")}
        target = node.args.get("to")
        if extra or not isinstance(target, exp.DataType) or target.this not in _CAST_TYPES:
            raise bad_request(f"CAST is limited to {CAST_TYPES_HELP}")
        if {k for k, v in target.args.items() if v and k not in ("this", "expressions", "nested")}:
            raise bad_request(f"CAST is limited to {CAST_TYPES_HELP}")
        modifiers = target.expressions
        if len(modifiers) > _TYPE_MODIFIERS.get(target.this, 0) or not all(
            isinstance(m, exp.DataTypeParam)
            and isinstance(m.this, exp.Literal)
            and not m.this.is_string
            and str(m.this.this).isascii()
            and str(m.this.this).isdigit()
            for m in modifiers
        ):
            raise bad_request(f"type modifiers are limited to whole numbers: {CAST_TYPES_HELP}")
        node.set("this", self.compile(node.this))
        return node

    def _with_unit(self, node: exp.Expression, unit_key: str, value_key: str) -> exp.Expression:
        """extract(field FROM x), date_trunc('field', x): Postgres judges the field name."""
        unit = node.args.get(unit_key)
        extra = {k for k, v in node.args.items() if v and k not in (unit_key, value_key)}
        if extra or not isinstance(unit, exp.Var) or not _WORD.fullmatch(unit.name):
            raise bad_request(f"unsupported date/time field in {node.key}")
        node.set(value_key, self.compile(node.args[value_key]))
        return node


def _negated_number(node: exp.Neg) -> str | None:
    """`-5`, `-(5)`, `- -5`: Postgres folds a minus on a number into the constant itself
    (so `-2147483648` is an int4); other operands keep the operator."""
    inner: exp.Expression = node.this
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.Neg):
        folded = _negated_number(inner)
        if folded is None:
            return None
        text = folded
    elif isinstance(inner, exp.Literal) and not inner.is_string:
        text = str(inner.this)
    else:
        return None
    return text[1:] if text.startswith("-") else "-" + text


def _refusal(node: exp.Expression) -> RowgateError:
    if isinstance(node, exp.Select | exp.Subquery | exp.Exists | exp.Union | exp.Query):
        return bad_request("subqueries are not allowed in filters")
    if isinstance(node, exp.Anonymous | exp.Func):
        name = node.name if isinstance(node, exp.Anonymous) else node.key
        return bad_request(
            f"function {name}() is not allowed here; allowed functions: {', '.join(FUNCTIONS)}"
        )
    if isinstance(node, exp.Parameter | exp.Placeholder):
        return bad_request("placeholders are not allowed; write the value itself")
    if isinstance(node, exp.Star):
        return bad_request("`*` is not allowed in a filter")
    return bad_request(f"unsupported syntax in filter: {node.key}")


@dataclass(frozen=True, slots=True)
class ConditionShape:
    """A filter's tokens with its literal values taken out: `id = 5` and `id = 6` share a shape,
    so the SQL generated for one serves the other with new bind values."""

    key: tuple[tuple[str, str | None], ...]
    literals: tuple[str | int | Decimal, ...]


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
        tokens = TOKENIZER.tokenize(text)
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
            key.append((kind.name, None))
        elif kind is _T.NUMBER:
            if not is_number(token.text):
                return None
            # The literal's SQL type depends on its value (int4, int8, numeric).
            literals.append(number_value(token.text))
            key.append((kind.name, number_type(token.text)))
        else:
            key.append((kind.name, token.text))
    return ConditionShape(tuple(key), tuple(literals))


def compile_condition(text: str, scope: ColumnScope, bindings: Bindings) -> exp.Expression:
    """The agent's `where` text as a checked boolean expression with bound literals."""
    return _Compiler(scope, bindings).compile(_parse_filter(text))


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
