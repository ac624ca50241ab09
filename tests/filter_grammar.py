"""Hypothesis strategies for `where` filter text: plain Postgres boolean expressions over a
given set of columns.

Generation is typed (bool, numbers, text, date, timestamp, timestamptz, interval, uuid) so
most filters are valid SQL that selects a data-dependent subset of rows; some are
deliberately invalid for Postgres too (bad literals, unknown operators for a type). Every
expression carries the precedence of its top operator, so parentheses are added where
Postgres' precedence requires them and, at random, also where it does not: filters mix
`a + b * c`, `x = y AND NOT z` and `-2 ^ 2` with fully parenthesized ones.

The text is the only thing that matters: the differential tests hand it verbatim to
Postgres and to rowgate and compare the rows each selects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from hypothesis import strategies as st

MAX_FILTER_LENGTH = 4000  # rowgate's `where` length limit

# Column kinds. int/dec/float are all "numbers"; date/ts/tstz are all "times".
Kind = Literal["bool", "int", "dec", "float", "text", "date", "ts", "tstz", "interval", "uuid"]
# What an expression strategy produces; "exact" = int or numeric (valid left of `%`).
Gen = Literal["bool", "num", "exact", "text", "date", "ts", "tstz", "interval", "uuid"]
# Comparable families: both sides of a comparison come from one family.
Family = Literal["num", "text", "time", "interval", "uuid", "bool"]

NUMBER_KINDS: frozenset[Kind] = frozenset({"int", "dec", "float"})
EXACT_KINDS: frozenset[Kind] = frozenset({"int", "dec"})
KIND_OF_GEN: dict[Gen, frozenset[Kind]] = {
    "bool": frozenset({"bool"}),
    "num": NUMBER_KINDS,
    "exact": EXACT_KINDS,
    "text": frozenset({"text"}),
    "date": frozenset({"date"}),
    "ts": frozenset({"ts"}),
    "tstz": frozenset({"tstz"}),
    "interval": frozenset({"interval"}),
    "uuid": frozenset({"uuid"}),
}
FAMILY_GENS: dict[Family, tuple[Gen, ...]] = {
    "num": ("num",),
    "text": ("text",),
    "time": ("date", "ts", "tstz"),
    "interval": ("interval",),
    "uuid": ("uuid",),
    "bool": ("bool",),
}


class Prec:
    """Postgres operator precedence, loosest first (docs: "Operator Precedence")."""

    OR = 1
    AND = 2
    NOT = 3
    IS = 4  # IS [NOT] NULL/TRUE/DISTINCT FROM, ISNULL, NOTNULL
    CMP = 5  # < > = <= >= <> (non-associative)
    RANGE = 6  # BETWEEN, IN, LIKE, ILIKE
    OTHER = 7  # any other operator: ||, ~, ~*, !~, !~*
    ADD = 8  # binary + -
    MUL = 9  # * / %
    POW = 10  # ^
    AT = 11  # AT TIME ZONE
    UNARY = 12  # unary minus
    CAST = 13  # ::
    ATOM = 14  # names, literals, function calls, (parenthesized)


class E(NamedTuple):
    """Expression text and the precedence of its outermost operator."""

    text: str
    prec: int


@dataclass(frozen=True)
class Column:
    """A column the filters may use.

    `casts`: cast targets that succeed for every stored value (e.g. a numeric column whose
    values all fit an int may list "int"). `literals`: SQL literals near the stored values,
    so comparisons often split the rows. `arithmetic`: False for columns holding values
    where `+ 1`, `* 2` or unary minus overflow (int extremes); they then appear in
    arithmetic only rarely. `weight`: relative frequency.
    """

    name: str
    kind: Kind
    casts: tuple[str, ...] = ()
    literals: tuple[str, ...] = ()
    arithmetic: bool = True
    weight: int = 1


# ---------------------------------------------------------------------------------------
# Literal pools. Plain strings: standard_conforming_strings is on, so a backslash is a
# backslash. Python escapes are doubled below (`\\` is one backslash in SQL).
# ---------------------------------------------------------------------------------------


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


UNSIGNED_NUMBERS = (
    "0", "1", "2", "7", "13", "42", "72", "100", "111", "0111", "96.22", "699.74",
    "1611.59", "100.5", "2.5", "1e2", "1E2", "1.5e-3", ".5", "5.", "0.0", "32767", "32768",
    "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "1e20",
)  # fmt: skip
SIGNED_NUMBERS = (
    "-1", "-5", "-2.5", "-0", "-2147483648", "-32768", "- -5", "-(5)", "-.5",
    "-2147483648::int", "-5::bigint", "-2.5::int",
)  # fmt: skip
DIVISORS = ("2", "3", "7", "-4", "0.5", "100", "1.5e-3", ".5", "5.", "96.22", "2147483648")
MODULI = ("2", "3", "7", "10", "100", "-4", "2.5")
EXPONENTS = ("0", "1", "2", "3")

TEXT_LITERALS = (
    "''", "'a'", "'A'", "'abc'", "'ABC'", "'ab'", "'ab '", "'x'", "'paid'", "'open'",
    "'O''Brien'", "''''", "'it''s'", "'back\\slash'", "'\\'", "'\\n'", "'100%'", "'a_b'",
    "'%_'", "'é'", "'É'", "'café'", "'CAFÉ'", "'日本'", "'日本語'", "'😀'", "' padded '",
    "'0111'", "'111'", "'NULL'", "'true'", "'line\nbreak'", "'tab\there'",
    "E'a\\nb'", "E'line\\nbreak'", "E'\\t'", "E'\\\\'", "E'back\\\\slash'", "E'\\''",
    "E'O\\'Brien'", "e'\\x41'", "E'\\101'", "E'\\u00e9'", "E'caf\\u00e9'", "E'\\x41BC'",
    "$$it's$$", "$$$$", "$q$a$q$", "$$back\\slash$$", "$$O''Brien$$", "$t$100%$t$",
)  # fmt: skip
TEXT_ALPHABET = "aAbBé日😀 '\\%_\n0"

LIKE_PATTERNS = (
    "'%'", "''", "'a%'", "'%a%'", "'%A%'", "'_'", "'___'", "'a_c'", "'ab'", "'ab%'",
    "'%\\%%'", "'%\\_%'", "'%\\\\%'", "'O''%'", "'%''%'", "'é%'", "'É%'", "'%日本%'",
    "'%😀'", "'100\\%'", "'% %'", "'%\n%'", "'back\\\\slash'", "E'%\\\\\\\\%'", "'a\\'",
)  # fmt: skip
ESCAPE_PATTERNS = ("'100!%'", "'%!_%'", "'!!%'", "'%!%%'", "'%\\%'", "'a!'")
REGEXES = (
    "'^a'", "'c$'", "'[0-9]+'", "'^$'", "'é'", "'^.{3}$'", "'\\d'", "'A'", "'^O''B'",
    "'\\\\'", "'日本'", "'('", "'[[:upper:]]'", "'^\\s'", "'%'", "'a|b'", "'😀'",
)  # fmt: skip

# Bare (untyped) strings that Postgres types from the other side of a comparison.
NUM_STRINGS = (
    "0111", "111", "100.5", "96.22", "1e2", " 5 ", "-0", "NaN", "Infinity", "2147483648",
    "0x1F", "1_000", "abc", "", "1.5", "9223372036854775808",
)  # fmt: skip
TIME_STRINGS = (
    "2024-09-03", "2024-09-03 10:00:00", "2024-09-03 11:00:00+01", "2024-09-03 11:00:13.3999999",
    "2024-09-03 09:59:59.999999", "2024-09-03T10:00:00Z", "2024-09-03 10:00:00 UTC",
    "2024-09-03 12:00:00 Europe/Paris", "Sep 3 2024 10:00", "20240903", "epoch", "infinity",
    "-infinity", "today", "yesterday", "tomorrow", "now", "2024-01-01", "2025-06-01",
    "2026-11-16 00:00:00+00", "2024-W40-7", "2024-02-30", "2024-13-01", "garbage",
)  # fmt: skip
DATE_STRINGS = (
    "2024-09-03", "2024-01-01", "1970-01-01", "2000-02-29", "2025-06-01", "epoch", "infinity",
    "-infinity", "today", "J2460557", "Sep 3 2024", "2024-02-30", "2024-W40-7",
)  # fmt: skip
INTERVAL_STRINGS = (
    "30 days", "1 month", "720 hours", "29 days 23:59:59", "1 day", "7 days", "-1 day", "0",
    "00:00:00", "P30D", "P1M", "1 year 2 months", "@ 1 day ago", "1.5 days", "2 weeks",
    "1 mon", "31 days", "1 microsecond", "bogus",
)  # fmt: skip
UUID_STRINGS = (
    "a0000000-0000-4000-8000-000000000001", "A0000000-0000-4000-8000-000000000001",
    "{a0000000-0000-4000-8000-000000000001}", "a0000000000040008000000000000001",
    "a000-0000-0000-4000-8000-0000-0000-0001", "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff", "b0000000-0000-4000-8000-000000000002",
    "urn:uuid:a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-00000000000",
    "not-a-uuid", "",
)  # fmt: skip
BOOL_STRINGS = ("t", "true", "TRUE", "yes", "on", "1", "f", "false", "off", "no", "0", " t ")
BAD_BOOL_STRINGS = ("maybe", "tr", "")
FAMILY_STRINGS: dict[Family, tuple[str, ...]] = {
    "num": NUM_STRINGS,
    "time": TIME_STRINGS,
    "interval": INTERVAL_STRINGS,
    "uuid": UUID_STRINGS,
    "bool": BOOL_STRINGS + BAD_BOOL_STRINGS,
}

CMP_OPS = ("=", "<>", "!=", "<", "<=", ">", ">=")
DATE_TRUNC_UNITS = ("day", "month", "hour", "year", "week", "minute", "quarter", "second")
EXTRACT_FIELDS = ("year", "month", "day", "hour", "minute", "epoch", "dow", "doy", "quarter")
# rowgate and Postgres read the clock in different transactions, milliseconds apart: of the
# current time, only parts that do not change between them are compared.
_NOW = re.compile(r"(?i)now|current_timestamp|localtimestamp|'today'|current_date")
COARSE_FIELDS = ("year", "month", "day", "dow", "doy", "quarter")
COARSE_UNITS = ("day", "month", "year", "week", "quarter")

INT_TYPES = ("int", "integer", "int4", "bigint", "int8", "smallint")
NUM_TYPES = ("numeric", "numeric(10,2)", "decimal", "real", "float", "float8",
             "double precision")  # fmt: skip
SAFE_NUM_TYPES = ("numeric", "decimal", "float8", "double precision", "float")
TEXT_TYPES = ("text", "varchar", "varchar(5)", "char(3)")


# ---------------------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------------------

Option = tuple[int, Callable[[], E]]
T = TypeVar("T")
_BOOLEANS = st.booleans()


@functools.cache
def _sampled(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def _sample(values: Sequence[T] | range) -> st.SearchStrategy[T]:
    """st.sampled_from, built once per distinct choice list (building one is not free)."""
    return _sampled(tuple(values))


@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _indices(weights: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i for i, weight in enumerate(weights) for _ in range(weight))


# Names `exclude` accepts besides the option names (the nested functions below, e.g.
# "regex", "power", "at_time_zone"): forms inside an option.
FORMS = frozenset(
    {"interval_unit", "symmetric", "like_escape", "negated_regex", "escape_string",
     "dollar_quote", "qualified_column", "quoted_column"}
)  # fmt: skip


class FilterGrammar:
    """Strategies for filters over `columns` (of table `table`, used for qualified names).

    `exclude` turns parts of the grammar off, so that a construct rowgate refuses on
    purpose does not take whole filters down with it: the name of an option (the nested
    functions of the builders: "regex", "like", "between", "in_list", "distinct",
    "is_truth", "power", "modulo", "extract", "at_time_zone", "truncate", "concat", ...;
    a name shared by several builders, such as "variadic", turns off all of them) or one
    of FORMS (`interval '1' day`, `BETWEEN SYMMETRIC`, `ESCAPE`, `!~`, E'' and $$ strings,
    `items.col`, `"col"`).
    """

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        table: str,
        max_depth: int = 3,
        exclude: Collection[str] = (),
    ) -> None:
        self.columns = tuple(columns)
        self.table = table
        self.max_depth = max_depth
        self.exclude = frozenset(exclude)
        self.text_literals = self._plain(TEXT_LITERALS)
        self.like_patterns = self._plain(LIKE_PATTERNS)
        self._memo: dict[tuple[Gen, int], st.SearchStrategy[E]] = {}
        self._builders: dict[Gen, Callable[[int], st.SearchStrategy[E]]] = {
            "bool": self._bool,
            "num": self._num,
            "exact": self._exact,
            "text": self._text,
            "date": self._date,
            "ts": self._ts,
            "tstz": self._tstz,
            "interval": self._interval,
            "uuid": self._uuid,
        }
        # Numbers have the most operators and functions: compare them most often.
        family_weights: dict[Family, int] = {"num": 4, "text": 2, "time": 2}
        self.families: tuple[Family, ...] = tuple(
            family
            for family, gens in FAMILY_GENS.items()
            if any(self._cols(g) for g in gens) or family in ("num", "text")
        )
        self.weighted_families = tuple(
            family for family in self.families for _ in range(family_weights.get(family, 1))
        )

    def filters(self) -> st.SearchStrategy[str]:
        return (
            self.expr("bool", self.max_depth)
            .map(lambda e: e.text)
            .filter(lambda text: len(text) <= MAX_FILTER_LENGTH)
        )

    def expr(self, gen: Gen, depth: int) -> st.SearchStrategy[E]:
        key = (gen, max(depth, 0))
        if key not in self._memo:
            self._memo[key] = self._builders[gen](key[1])
        return self._memo[key]

    # -- helpers ------------------------------------------------------------------------

    def off(self, name: str) -> bool:
        return name in self.exclude

    def _plain(self, literals: Sequence[str]) -> tuple[str, ...]:
        """`literals` without E'' or $$ strings when those are excluded."""
        return tuple(
            lit
            for lit in literals
            if not (self.off("escape_string") and lit[:2] in ("E'", "e'"))
            and not (self.off("dollar_quote") and lit.startswith("$"))
        )

    def _choose(self, draw: st.DrawFn, options: Sequence[Option]) -> E:
        """Calls one of the weighted options that is not excluded (leaves always stay);
        earlier options are what Hypothesis shrinks to."""
        kept = [o for o in options if o[1].__name__ not in self.exclude] or list(options[:1])
        weights = tuple(weight for weight, _ in kept)
        index = draw(_sample(_indices(weights)))
        return kept[index][1]()

    def _cols(self, gen: Gen, *, arithmetic: bool = False) -> list[Column]:
        kinds = KIND_OF_GEN[gen]
        return [c for c in self.columns if c.kind in kinds and (c.arithmetic or not arithmetic)]

    def _column_ref(self, draw: st.DrawFn, column: Column) -> E:
        form = draw(_sample(range(10)))
        if form == 7 and not self.off("quoted_column"):
            return E(f'"{column.name}"', Prec.ATOM)
        if form == 8:
            return E(column.name.upper(), Prec.ATOM)
        if form == 9 and not self.off("qualified_column"):
            return E(f"{self.table}.{column.name}", Prec.ATOM)
        return E(column.name, Prec.ATOM)

    def _column(self, draw: st.DrawFn, gen: Gen, *, arithmetic: bool = False) -> E | None:
        columns = self._cols(gen, arithmetic=arithmetic)
        if arithmetic and draw(_sample(range(12))) == 0:
            columns = self._cols(gen)  # now and then, the overflow-prone ones too
        if not columns:
            return None
        weighted = [c for c in columns for _ in range(c.weight)]
        return self._column_ref(draw, draw(_sample(weighted)))

    def _column_literal(self, draw: st.DrawFn, gen: Gen) -> E | None:
        pool = [lit for c in self._cols(gen) for lit in c.literals]
        if not pool:
            return None
        text = draw(_sample(pool))
        return E(text, _literal_prec(text))

    @staticmethod
    def _wrap(draw: st.DrawFn, e: E, need: int, *, extra: int = 4) -> str:
        """`e` as an operand that must bind at least as tightly as `need`: parenthesized
        when precedence requires it, and in `extra` of 10 other cases when not atomic."""
        if e.prec < need:
            return f"({e.text})"
        if e.prec < Prec.ATOM and draw(_sample(range(10))) < extra:
            return f"({e.text})"
        return e.text

    def _binary(self, draw: st.DrawFn, left: E, op: str, right: E, prec: int) -> E:
        """A left-associative binary operator (`a - b - c` is `(a - b) - c`)."""
        return E(f"{self._wrap(draw, left, prec)} {op} {self._wrap(draw, right, prec + 1)}", prec)

    def _nonassoc(self, draw: st.DrawFn, left: E, op: str, right: E, prec: int) -> E:
        return E(
            f"{self._wrap(draw, left, prec + 1)} {op} {self._wrap(draw, right, prec + 1)}", prec
        )

    def _negate(self, draw: st.DrawFn, e: E) -> E:
        operand = self._wrap(draw, e, Prec.UNARY, extra=3)
        return E(("- " if operand.startswith("-") else "-") + operand, Prec.UNARY)

    def _cast(self, draw: st.DrawFn, e: E, target: str) -> E:
        if draw(_BOOLEANS):
            return E(f"CAST({e.text} AS {target})", Prec.ATOM)
        return E(f"{self._wrap(draw, e, Prec.CAST, extra=2)}::{target}", Prec.CAST)

    def _call(self, name: str, *args: E) -> E:
        return E(f"{name}({', '.join(a.text for a in args)})", Prec.ATOM)

    def _sub(self, draw: st.DrawFn, gen: Gen, depth: int) -> E:
        return draw(self.expr(gen, depth))

    # -- numbers ------------------------------------------------------------------------

    def _number_literal(self, draw: st.DrawFn, *, signed: bool = True) -> E:
        which = draw(_sample(range(10)))
        if which < 5:
            return E(draw(_sample(UNSIGNED_NUMBERS)), Prec.ATOM)
        if which < 7:
            return E(str(draw(_ints(0, 2000))), Prec.ATOM)
        if which < 8:
            cents = draw(_ints(0, 200_000))
            return E(f"{cents // 100}.{cents % 100:02d}", Prec.ATOM)
        if signed:
            return E(draw(_sample(SIGNED_NUMBERS)), Prec.UNARY)
        return E(draw(_sample(UNSIGNED_NUMBERS)), Prec.ATOM)

    def _num_leaf(self, draw: st.DrawFn, gen: Gen, *, arithmetic: bool) -> E:
        options: list[Option] = []
        column = self._column(draw, gen, arithmetic=arithmetic)
        if column is not None:
            options.append((5, lambda: column))
        literal = self._column_literal(draw, gen)
        if literal is not None:
            options.append((2, lambda: literal))
        options.append((3, lambda: self._number_literal(draw)))
        options.append((1, lambda: self._string_to_number(draw)))
        return self._choose(draw, options)

    def _string_to_number(self, draw: st.DrawFn) -> E:
        text = draw(_sample(("12", " 12 ", "1.5", "-7", "abc", "0111", "99999", "1e2", "NaN")))
        target = draw(_sample(INT_TYPES + NUM_TYPES))
        return self._cast(draw, E(sql_string(text), Prec.ATOM), target)

    def _column_cast(self, draw: st.DrawFn, targets: frozenset[str]) -> E | None:
        """A column cast to one of `targets` that it lists as safe."""
        casts = [(c, t) for c in self.columns for t in c.casts if t in targets]
        if not casts:
            return None
        column, target = draw(_sample(casts))
        return self._cast(draw, self._column_ref(draw, column), target)

    def _num(self, depth: int) -> st.SearchStrategy[E]:
        return self._numeric(depth, exact=False)

    def _exact(self, depth: int) -> st.SearchStrategy[E]:
        return self._numeric(depth, exact=True)

    def _numeric(self, depth: int, *, exact: bool) -> st.SearchStrategy[E]:
        gen: Gen = "exact" if exact else "num"

        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = [(8, lambda: self._num_leaf(draw, gen, arithmetic=True))]
            if depth == 0:
                return self._choose(draw, options)
            sub = depth - 1

            def arith() -> E:
                op = draw(_sample(("+", "-", "*")))
                prec = Prec.MUL if op == "*" else Prec.ADD
                return self._binary(
                    draw, self._sub(draw, gen, sub), op, self._sub(draw, gen, sub), prec
                )

            def divide() -> E:
                divisor = E(draw(_sample(DIVISORS)), Prec.ATOM)
                if divisor.text.startswith("-"):
                    divisor = E(divisor.text, Prec.UNARY)
                return self._binary(draw, self._sub(draw, gen, sub), "/", divisor, Prec.MUL)

            def modulo() -> E:
                right = E(draw(_sample(MODULI)), Prec.ATOM)
                if right.text.startswith("-"):
                    right = E(right.text, Prec.UNARY)
                return self._binary(draw, self._sub(draw, "exact", sub), "%", right, Prec.MUL)

            def power() -> E:
                exponent = E(draw(_sample(EXPONENTS)), Prec.ATOM)
                return self._binary(draw, self._sub(draw, gen, sub), "^", exponent, Prec.POW)

            def negate() -> E:
                return self._negate(draw, self._sub(draw, gen, sub))

            def function() -> E:
                x = self._sub(draw, gen, sub)
                name = draw(_sample(("abs", "round", "round2", "floor", "ceil", "ceiling")))
                if name == "round2":
                    digits = E(draw(_sample(("0", "1", "2", "-1", "3"))), Prec.ATOM)
                    return self._call("round", x, digits)
                return self._call(name, x)

            def variadic() -> E:
                name = draw(_sample(("coalesce", "nullif", "greatest", "least")))
                count = 2 if name == "nullif" else draw(_ints(2, 3))
                args = [self._sub(draw, gen, sub) for _ in range(count)]
                if name == "coalesce" and draw(_BOOLEANS):
                    args.insert(0, E("NULL", Prec.ATOM))
                return self._call(name, *args)

            def length() -> E:
                name = draw(_sample(("length", "char_length")))
                return self._call(name, self._sub(draw, "text", sub))

            def extract() -> E:
                source = self._sub(draw, draw(_sample(self._time_gens())), sub)
                fields = COARSE_FIELDS if _NOW.search(source.text) else EXTRACT_FIELDS
                return E(f"extract({draw(_sample(fields))} FROM {source.text})", Prec.ATOM)

            def date_diff() -> E:
                return self._binary(
                    draw, self._sub(draw, "date", sub), "-", self._sub(draw, "date", sub), Prec.ADD
                )

            def cast() -> E:
                targets = INT_TYPES + SAFE_NUM_TYPES if exact else INT_TYPES + NUM_TYPES
                column_cast = self._column_cast(draw, frozenset(targets))
                if column_cast is not None and draw(_BOOLEANS):
                    return column_cast
                safe = ("numeric", "decimal") if exact else SAFE_NUM_TYPES
                return self._cast(draw, self._sub(draw, gen, sub), draw(_sample(safe)))

            def bool_to_int() -> E:
                return self._cast(
                    draw, self._sub(draw, "bool", sub), draw(_sample(("int", "integer")))
                )

            options += [(5, arith), (2, divide), (2, modulo), (2, function), (2, variadic)]
            options += [(2, cast), (1, negate), (1, length)]
            if not exact:
                options += [(1, power), (1, extract)]
            if self._cols("date"):
                options.append((1, date_diff))
            if self._cols("bool"):
                options.append((1, bool_to_int))
            return self._choose(draw, options)

        return build()

    # -- text ---------------------------------------------------------------------------

    def _text_literal(self, draw: st.DrawFn) -> E:
        if draw(_sample(range(4))) == 0:
            return E(sql_string(draw(st.text(TEXT_ALPHABET, max_size=5))), Prec.ATOM)
        return E(draw(_sample(self.text_literals)), Prec.ATOM)

    def _text(self, depth: int) -> st.SearchStrategy[E]:
        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = []
            column = self._column(draw, "text")
            if column is not None:
                options.append((6, lambda: column))
            literal = self._column_literal(draw, "text")
            if literal is not None:
                options.append((2, lambda: literal))
            options.append((3, lambda: self._text_literal(draw)))
            if depth == 0:
                return self._choose(draw, options)
            sub = depth - 1

            def concat() -> E:
                left = self._sub(draw, "text", sub)
                other: Gen = draw(_sample(("text", "text", "num", "date", "uuid")))
                right = self._sub(draw, other, sub)
                if draw(_BOOLEANS):
                    left, right = right, left
                return self._binary(draw, left, "||", right, Prec.OTHER)

            def function() -> E:
                x = self._sub(draw, "text", sub)
                name = draw(_sample(("lower", "upper", "trim", "btrim", "btrim2", "trimx")))
                if name == "btrim2":
                    return self._call("btrim", x, E(draw(_sample(("'x'", "' a'"))), Prec.ATOM))
                if name == "trimx":
                    where = draw(_sample(("both", "leading", "trailing")))
                    chars = draw(_sample(("", "'a' ", "' ' ")))
                    return E(f"trim({where} {chars}from {x.text})", Prec.ATOM)
                return self._call(name, x)

            def variadic() -> E:
                name = draw(_sample(("coalesce", "nullif", "greatest", "least")))
                args = [self._sub(draw, "text", sub), self._text_literal(draw)]
                return self._call(name, *args)

            def to_text() -> E:
                column_cast = self._column_cast(draw, frozenset(TEXT_TYPES))
                if column_cast is not None and draw(_BOOLEANS):
                    return column_cast
                source: Gen = draw(_sample(("num", "text", "date", "uuid", "bool")))
                target = draw(_sample(TEXT_TYPES))
                return self._cast(draw, self._sub(draw, source, sub), target)

            options += [(3, concat), (3, function), (1, variadic), (2, to_text)]
            return self._choose(draw, options)

        return build()

    # -- booleans -----------------------------------------------------------------------

    def _family_expr(self, draw: st.DrawFn, family: Family, depth: int) -> E:
        gens = [g for g in FAMILY_GENS[family] if self._cols(g)] or list(FAMILY_GENS[family])
        if draw(_sample(range(4))) == 0:
            # A plain column, overflow-prone ones included: they do not overflow here.
            columns = [c for g in gens for c in self._cols(g)]
            if columns:
                return self._column_ref(draw, draw(_sample(columns)))
        return self._sub(draw, draw(_sample(gens)), depth)

    def _bare_string(self, draw: st.DrawFn, family: Family) -> E:
        if family == "text":
            return self._text_literal(draw)
        return E(sql_string(draw(_sample(FAMILY_STRINGS[family]))), Prec.ATOM)

    def _operand(self, draw: st.DrawFn, family: Family, depth: int) -> E:
        """Usually an expression of the family; sometimes an untyped string literal."""
        if draw(_sample(range(4))) == 0:
            return self._bare_string(draw, family)
        return self._family_expr(draw, family, depth)

    def _bool(self, depth: int) -> st.SearchStrategy[E]:
        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = []
            column = self._column(draw, "bool")
            if column is not None:
                options.append((2, lambda: column))

            def constant() -> E:
                return E(draw(_sample(("TRUE", "FALSE", "true", "NULL"))), Prec.ATOM)

            def bool_cast() -> E:
                column_cast = self._column_cast(draw, frozenset({"boolean", "bool"}))
                if column_cast is not None and draw(_BOOLEANS):
                    return column_cast
                text = draw(_sample(BOOL_STRINGS + BAD_BOOL_STRINGS))
                return self._cast(draw, E(sql_string(text), Prec.ATOM), "boolean")

            options += [(1, constant), (1, bool_cast)]
            if depth == 0:
                return self._choose(draw, options)
            sub = depth - 1

            def family() -> Family:
                return draw(_sample(self.weighted_families))

            def compare() -> E:
                fam = family()
                op = draw(_sample(CMP_OPS))
                left = self._family_expr(draw, fam, sub)
                shape = draw(_sample(range(6)))
                if shape == 0 and fam != "text":
                    right = self._bare_string(draw, fam)
                elif shape == 1:
                    left, right = self._bare_string(draw, fam), left
                else:
                    right = self._family_expr(draw, fam, sub)
                return self._nonassoc(draw, left, op, right, Prec.CMP)

            def is_null() -> E:
                gen: Gen = draw(_sample(tuple(self._builders)))
                x = self._wrap(draw, self._sub(draw, gen, sub), Prec.IS + 1)
                suffix = draw(_sample(("IS NULL", "IS NOT NULL", "ISNULL", "NOTNULL")))
                return E(f"{x} {suffix}", Prec.IS)

            def is_truth() -> E:
                x = self._wrap(draw, self._sub(draw, "bool", sub), Prec.IS + 1)
                test = draw(_sample(("TRUE", "FALSE", "UNKNOWN")))
                negated = draw(_sample(("", "NOT ")))
                return E(f"{x} IS {negated}{test}", Prec.IS)

            def distinct() -> E:
                fam = family()
                left = self._wrap(draw, self._operand(draw, fam, sub), Prec.IS + 1)
                right = self._wrap(draw, self._family_expr(draw, fam, sub), Prec.IS + 1)
                negated = draw(_sample(("", "NOT ")))
                return E(f"{left} IS {negated}DISTINCT FROM {right}", Prec.IS)

            def between() -> E:
                fam = draw(_sample([f for f in self.families if f != "bool"]))
                x, low, high = (
                    self._wrap(draw, self._operand(draw, fam, sub), Prec.RANGE + 1)
                    for _ in range(3)
                )
                negated = draw(_sample(("", "NOT ")))
                symmetric = draw(_sample(("", "", "SYMMETRIC ", "ASYMMETRIC ")))
                if self.off("symmetric"):
                    symmetric = ""
                return E(f"{x} {negated}BETWEEN {symmetric}{low} AND {high}", Prec.RANGE)

            def in_list() -> E:
                fam = family()
                x = self._wrap(draw, self._family_expr(draw, fam, sub), Prec.RANGE + 1)
                count = draw(_ints(1, 5))
                items = [self._operand(draw, fam, max(sub - 1, 0)).text for _ in range(count)]
                if draw(_sample(range(4))) == 0:
                    items.insert(draw(_ints(0, len(items))), "NULL")
                negated = draw(_sample(("", "NOT ")))
                return E(f"{x} {negated}IN ({', '.join(items)})", Prec.RANGE)

            def like() -> E:
                x = self._wrap(draw, self._sub(draw, "text", sub), Prec.RANGE + 1)
                op = draw(_sample(("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")))
                form = draw(_sample(range(8)))
                if form == 0:
                    pattern = self._wrap(draw, self._sub(draw, "text", sub), Prec.RANGE + 1)
                    return E(f"{x} {op} {pattern}", Prec.RANGE)
                if form == 1 and not self.off("like_escape"):
                    pattern = draw(_sample(ESCAPE_PATTERNS))
                    escape = draw(_sample(("'!'", "'!'", "''", "'\\'")))
                    return E(f"{x} {op} {pattern} ESCAPE {escape}", Prec.RANGE)
                return E(f"{x} {op} {draw(_sample(self.like_patterns))}", Prec.RANGE)

            def regex() -> E:
                x = self._wrap(draw, self._sub(draw, "text", sub), Prec.OTHER + 1)
                ops = ("~", "~*") if self.off("negated_regex") else ("~", "~*", "!~", "!~*")
                op = draw(_sample(ops))
                return E(f"{x} {op} {draw(_sample(REGEXES))}", Prec.OTHER)

            def negation() -> E:
                x = self._wrap(draw, self._sub(draw, "bool", sub), Prec.NOT, extra=5)
                return E(f"NOT {x}", Prec.NOT)

            def junction() -> E:
                op = draw(_sample(("AND", "OR")))
                prec = Prec.AND if op == "AND" else Prec.OR
                return self._binary(
                    draw, self._sub(draw, "bool", sub), op, self._sub(draw, "bool", sub), prec
                )

            def precedence_mix() -> E:
                """Unparenthesized predicates joined by AND/OR/NOT: `a = b AND NOT c OR d`."""
                parts = [
                    part
                    for part in (compare, is_null, like, between, in_list, negation, compare)
                    if part.__name__ not in self.exclude
                ] or [compare]
                chosen = [draw(_sample(parts))() for _ in range(draw(_ints(2, 3)))]
                text = chosen[0].text
                for part in chosen[1:]:
                    glue = draw(_sample(("AND", "OR", "AND NOT", "OR NOT")))
                    text = f"{text} {glue} {part.text}"
                return E(text, Prec.OR)

            options += [(10, compare), (3, is_null), (1, is_truth), (2, distinct)]
            options += [(2, between), (2, in_list), (3, like), (2, regex), (2, negation)]
            options += [(6, junction), (1, precedence_mix)]
            return self._choose(draw, options)

        return build()

    # -- dates and times ------------------------------------------------------------------

    def _time_gens(self) -> tuple[Gen, ...]:
        times: tuple[Gen, ...] = ("date", "ts", "tstz")
        return tuple(g for g in times if self._cols(g)) or times

    def _interval_literal(self, draw: st.DrawFn) -> E:
        text = draw(_sample(INTERVAL_STRINGS[:-1]))
        form = draw(_sample(range(6)))
        if form == 0:
            return self._cast(draw, E(sql_string(text), Prec.ATOM), "interval")
        if form == 1 and not self.off("interval_unit"):
            unit = draw(_sample(("day", "hour", "month", "year")))
            return E(f"interval '{draw(_ints(0, 40))}' {unit}", Prec.UNARY)
        return E(f"{draw(_sample(('interval', 'INTERVAL')))} {sql_string(text)}", Prec.ATOM)

    def _typed_time_literal(self, draw: st.DrawFn, gen: Gen) -> E:
        pool = DATE_STRINGS if gen == "date" else TIME_STRINGS
        text = sql_string(draw(_sample(pool)))
        type_name = {"date": "date", "ts": "timestamp", "tstz": "timestamptz"}[gen]
        form = draw(_sample(range(3)))
        if form == 0:
            return E(f"{type_name} {text}", Prec.ATOM)
        return self._cast(draw, E(text, Prec.ATOM), type_name)

    def _time(self, gen: Gen, depth: int) -> st.SearchStrategy[E]:
        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = []
            column = self._column(draw, gen)
            if column is not None:
                options.append((6, lambda: column))
            literal = self._column_literal(draw, gen)
            if literal is not None:
                options.append((2, lambda: literal))
            options.append((3, lambda: self._typed_time_literal(draw, gen)))
            now = {
                "date": ("current_date", "CURRENT_DATE"),
                "ts": ("localtimestamp", "LOCALTIMESTAMP"),
                "tstz": ("now()", "current_timestamp", "CURRENT_TIMESTAMP", "NOW()"),
            }[gen]
            options.append((1, lambda: E(draw(_sample(now)), Prec.ATOM)))
            if depth == 0:
                return self._choose(draw, options)
            sub = depth - 1

            def shift() -> E:
                op = draw(_sample(("+", "-")))
                if gen == "date":
                    days = E(draw(_sample(("1", "7", "30", "365"))), Prec.ATOM)
                    return self._binary(draw, self._sub(draw, "date", sub), op, days, Prec.ADD)
                base = self._sub(draw, gen, sub)
                return self._binary(draw, base, op, self._sub(draw, "interval", sub), Prec.ADD)

            def convert() -> E:
                sources: dict[Gen, tuple[Gen, ...]] = {
                    "date": ("ts", "tstz"),
                    "ts": ("date", "tstz"),
                    "tstz": ("date", "ts"),
                }
                source: Gen = draw(_sample(sources[gen]))
                target = {"date": "date", "ts": "timestamp", "tstz": "timestamptz"}[gen]
                return self._cast(draw, self._sub(draw, source, sub), target)

            def at_time_zone() -> E:
                source: Gen = "tstz" if gen == "ts" else "ts"
                x = self._wrap(draw, self._sub(draw, source, sub), Prec.AT)
                zone = draw(_sample(("'UTC'", "'utc'", "'Europe/Paris'", "'+02'")))
                return E(f"{x} AT TIME ZONE {zone}", Prec.AT)

            def truncate() -> E:
                source = self._sub(draw, gen, sub)
                units = COARSE_UNITS if _NOW.search(source.text) else DATE_TRUNC_UNITS
                unit = E(sql_string(draw(_sample(units))), Prec.ATOM)
                return self._call("date_trunc", unit, source)

            def date_plus() -> E:
                return self._binary(
                    draw,
                    self._sub(draw, "date", sub),
                    "+",
                    self._sub(draw, "interval", sub),
                    Prec.ADD,
                )

            def variadic() -> E:
                name = draw(_sample(("coalesce", "greatest", "least", "nullif")))
                return self._call(name, self._sub(draw, gen, sub), self._sub(draw, gen, sub))

            options += [(4, shift), (2, convert), (1, variadic)]
            if gen != "date":
                options += [(2, truncate), (1, at_time_zone)]
            if gen == "ts":
                options.append((1, date_plus))
            return self._choose(draw, options)

        return build()

    def _date(self, depth: int) -> st.SearchStrategy[E]:
        return self._time("date", depth)

    def _ts(self, depth: int) -> st.SearchStrategy[E]:
        return self._time("ts", depth)

    def _tstz(self, depth: int) -> st.SearchStrategy[E]:
        return self._time("tstz", depth)

    def _interval(self, depth: int) -> st.SearchStrategy[E]:
        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = []
            column = self._column(draw, "interval")
            if column is not None:
                options.append((4, lambda: column))
            options.append((3, lambda: self._interval_literal(draw)))
            if depth == 0 and column is not None:
                return self._choose(draw, options)
            sub = max(depth - 1, 0)

            def difference() -> E:
                gen: Gen = draw(
                    _sample(tuple(g for g in self._time_gens() if g != "date") or ("ts",))
                )
                return self._binary(
                    draw, self._sub(draw, gen, sub), "-", self._sub(draw, gen, sub), Prec.ADD
                )

            def scale() -> E:
                op = draw(_sample(("*", "/")))
                factor = E(draw(_sample(("2", "0.5", "3", "1.5"))), Prec.ATOM)
                return self._binary(draw, self._sub(draw, "interval", sub), op, factor, Prec.MUL)

            def combine() -> E:
                op = draw(_sample(("+", "-")))
                return self._binary(
                    draw,
                    self._sub(draw, "interval", sub),
                    op,
                    self._sub(draw, "interval", sub),
                    Prec.ADD,
                )

            def negate() -> E:
                return self._negate(draw, self._sub(draw, "interval", sub))

            if depth > 0:
                options += [(3, difference), (1, scale), (1, combine), (1, negate)]
            return self._choose(draw, options)

        return build()

    # -- uuids ----------------------------------------------------------------------------

    def _uuid(self, depth: int) -> st.SearchStrategy[E]:
        @st.composite
        def build(draw: st.DrawFn) -> E:
            options: list[Option] = []
            column = self._column(draw, "uuid")
            if column is not None:
                options.append((5, lambda: column))
            literal = self._column_literal(draw, "uuid")
            if literal is not None:
                options.append((2, lambda: literal))

            def typed() -> E:
                text = sql_string(draw(_sample(UUID_STRINGS)))
                return self._cast(draw, E(text, Prec.ATOM), "uuid")

            options.append((2, typed))
            if depth > 0:

                def variadic() -> E:
                    name = draw(_sample(("coalesce", "nullif", "greatest", "least")))
                    return self._call(
                        name, self._sub(draw, "uuid", depth - 1), self._sub(draw, "uuid", 0)
                    )

                options.append((1, variadic))
            return self._choose(draw, options)

        return build()


_ATOMIC_LITERAL = re.compile(
    r"'(?:[^']|'')*'|[A-Za-z]+ '(?:[^']|'')*'|[0-9.]+(?:[eE][-+]?[0-9]+)?|[A-Za-z_]+(?:\(\))?"
)


def _literal_prec(text: str) -> int:
    """The precedence of a column's sample literal: atomic if it is one plain, typed or
    numeric literal (or a bare keyword/`now()`), unary if negative, otherwise treated as
    the loosest expression so it always gets parentheses."""
    if text.startswith("-"):
        return Prec.UNARY
    return Prec.ATOM if _ATOMIC_LITERAL.fullmatch(text) else Prec.OR


def literal_list(values: Sequence[str]) -> tuple[str, ...]:
    """String values as SQL string literals, for `Column.literals`."""
    return tuple(sql_string(v) for v in values)
