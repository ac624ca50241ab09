"""Differential tests: rowgate's `where` selects exactly the rows Postgres selects for the
same filter text, as the same role and claims.

Filters come from `tests/filter_grammar.py` (Hypothesis strategies over the documented
grammar). For each filter, rowgate answers through `Rowgate.call` and Postgres answers the
verbatim text on the superuser connection after `SET LOCAL ROLE` and the caller's claims,
in a transaction that is rolled back: `SELECT id ... WHERE <filter>` for select_rows, and
the same `UPDATE`/`DELETE ... WHERE <filter> RETURNING id` for the dry-run writes (so
errors the write itself raises, e.g. a foreign key, are Postgres' answer too). They agree
when they return the same ids, or when both fail (a write over the cap must fail with
too_many_rows). A filter Postgres accepts but rowgate refuses is a disagreement unless the
refusal is listed in DOCUMENTED_REFUSALS.

Filters are generated deterministically (a fixed seed, no example database) and all
evaluated before the test fails, so one run reports every disagreement, grouped by kind,
shortest filters first.

More examples: ROWGATE_FILTER_EXAMPLES=20000 spreads ~20000 filters over the tests in the
default proportions; ROWGATE_FILTER_EXAMPLES=5x multiplies every test's default.
ROWGATE_FILTER_SEED=<int> explores different filters.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from schemas.config import Settings
from server.app import Rowgate
from server.errors import RowgateError
from server.identity import Principal
from tests.filter_grammar import Column, FilterGrammar, literal_list
from tests.oracle import Answer, postgres_answer

# Regexes (re.search on RowgateError.message) of refusals that are documented behaviour:
# a filter Postgres accepts but rowgate refuses with such a message is not a disagreement.
DOCUMENTED_REFUSALS: list[str] = [
    # README "Filters": Postgres syntax outside rowgate's grammar, refused by design.
    r"regular expressions \(~, ~\*\) are not supported",
    r"interval units go inside the quotes",
]
# Grammar parts not to generate at all (see FilterGrammar's `exclude`), e.g. "regex" once
# regular expressions are a documented refusal, so they stop taking whole filters down.
GRAMMAR_EXCLUDE: frozenset[str] = frozenset({"regex", "interval_unit"})

# Generated filters per test (Hypothesis examples; ~2/3 are distinct): ~4500 distinct
# filters in all, about a minute on 2 cores, 40% of it spent generating.
DEFAULT_EXAMPLES = {
    "probe_select": 4000,
    "probe_update": 800,
    "probe_delete": 800,
    "orders_select": 800,
    "orders_update": 200,
    "orders_delete": 300,
}
# Alice sees ~16k orders, and most generated filters keep almost all or almost none of
# them, so comparing the first page says little. Most generated filters are therefore
# narrowed to a sample spread over the whole table so that every selected row is
# compared: ~310 of alice's rows for reads (under the page size), ~75 for updates (under
# the write cap) and ~50 without invoices for deletes (invoiced orders cannot be
# deleted). Every n-th filter runs as generated, which also covers the write cap.
ORDERS_READ_SAMPLE = "id % 50 = 7"
ORDERS_UPDATE_SAMPLE = "id % 200 = 7"
ORDERS_DELETE_SAMPLE = "id % 40 = 7 AND status IN ('draft', 'open', 'cancelled')"
ORDERS_READ_RAW_EVERY = 4
ORDERS_WRITE_RAW_EVERY = 10  # a write over thousands of rows takes ~0.5 s on each side
MAX_SHOWN_PER_SHAPE = 2  # filters shown per error message shape
MAX_SHOWN_PER_KIND = 10  # ... and per kind of disagreement
# Kinds of disagreement reported first; refusals follow, most frequent first.
KIND_ORDER = (
    "different rows",
    "rowgate wrote more rows than the cap",
    "rowgate answered where Postgres failed",
)
PROBE_TABLE = "probe.items"
ORDERS_TABLE = "public.orders"


def examples(name: str) -> int:
    default = DEFAULT_EXAMPLES[name]
    raw = os.environ.get("ROWGATE_FILTER_EXAMPLES", "").strip().lower()
    if not raw:
        return default
    if raw.endswith("x"):
        return max(1, round(default * float(raw[:-1])))
    return max(1, round(int(raw) * default / sum(DEFAULT_EXAMPLES.values())))


def base_seed() -> int:
    return int(os.environ.get("ROWGATE_FILTER_SEED", "20240903"))


def narrowed(filters: Sequence[str], sample: str, raw_every: int) -> list[str]:
    return [
        text if n % raw_every == 0 else f"{sample} AND ({text})" for n, text in enumerate(filters)
    ]


def generate_filters(grammar: FilterGrammar, count: int, salt: str) -> list[str]:
    """`count` Hypothesis examples of filter text, deterministic for a given seed; the
    de-duplicated list in generation order (Hypothesis repeats itself now and then)."""
    found: list[str] = []
    digest = hashlib.sha256(f"{base_seed()}:{salt}".encode()).digest()

    @seed(int.from_bytes(digest[:8], "big"))
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(grammar.filters())
    def collect(text: str) -> None:
        found.append(text)

    collect()
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------
# The probe table: every column type the grammar covers, edge values and NULLs everywhere
# ---------------------------------------------------------------------------------------

PROBE_DDL = """
DROP SCHEMA IF EXISTS probe CASCADE;
CREATE SCHEMA probe;
CREATE TABLE probe.items (
  id   int PRIMARY KEY,
  i2   smallint,
  i4   int,
  i8   bigint,
  qty  int,
  num  numeric,
  num2 numeric(12,2),
  f4   real,
  f8   double precision,
  b    boolean,
  t    text,
  vc   varchar(20),
  ch   char(3),
  d    date,
  ts   timestamp,
  tstz timestamptz,
  iv   interval,
  u    uuid
);
COMMENT ON TABLE probe.items IS 'Edge values for the differential filter tests.';
GRANT USAGE ON SCHEMA probe TO authenticated;
GRANT SELECT, UPDATE, DELETE ON probe.items TO authenticated;
ALTER TABLE probe.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_all_but_13 ON probe.items FOR ALL TO authenticated USING (id <> 13);
"""
PROBE_ROWS = 40
HIDDEN_ID = 13

_TEXTS = (
    "", "a", "A", "abc", "ABC", "O'Brien", "'", "back\\slash", "\\", "100%", "a_b", "%_",
    "é", "café", "CAFÉ", "日本", "日本語", "😀", " padded ", "line\nbreak", "0111", "111",
    "NULL", "paid", "ab", "ab ", "it's", "tab\there",
)  # fmt: skip
_SQL_TEXTS = (*literal_list(_TEXTS), None)

# SQL literal text per column (None = NULL); row i takes value (i + 5k) mod len for the
# k-th column, so every value appears and columns do not move in lockstep.
PROBE_VALUES: dict[str, tuple[str | None, ...]] = {
    "i2": ("0", "1", "-1", "7", "111", "32767", "-32768", "42", None, "100"),
    "i4": ("0", "1", "-1", "72", "111", "2147483647", "-2147483648", "100", None, "7", "13"),
    "i8": ("0", "111", "2147483648", "9223372036854775807", "-9223372036854775808", "-1",
           None, "42"),
    "qty": ("0", "1", "2", "5", "7", "72", "100", "111", "-3", None, "13", "50", "3"),
    "num": ("0", "96.22", "1611.59", "-0.5", "100.5", "111", "0.001", "1e20", "'NaN'", None,
            "699.74", "2.5", "-2.5", "100"),
    "num2": ("0", "96.22", "1611.59", "-0.50", "100.50", "111", None, "699.74", "2.50",
             "-2.50", "1234567.89", "100"),
    "f4": ("0", "'-0'", "1.5", "96.22", "'NaN'", "'Infinity'", None, "0.1", "2.5", "111"),
    "f8": ("0", "96.22", "1e30", "-1e-30", "'NaN'", "'-Infinity'", None, "0.1", "2.5", "111",
           "1611.59"),
    "b": ("true", "false", None),
    "t": _SQL_TEXTS,
    "vc": tuple(reversed(_SQL_TEXTS)),
    "ch": ("'ab'", "'abc'", "'x'", "''", None, "'é'", "'%_'", "'AB'", "'日本'"),
    "d": ("'2024-09-03'", "'2024-01-01'", "'1970-01-01'", "'2000-02-29'", None,
          "'2024-09-02'", "'2024-10-03'", "'2026-11-01'", "'2024-08-04'"),
    "ts": ("'2024-09-03 10:00:00'", "'2024-09-03 11:00:13.3999'",
           "'2024-09-03 09:59:59.999999'", "'1970-01-01 00:00:00'", "'infinity'", None,
           "'2024-08-04 10:00:00'", "'2024-10-03 10:00:00'", "'2024-09-03 00:00:00'",
           "'2026-11-20 12:00:00'", "'2024-09-03 11:00:00'"),
    "tstz": ("'2024-09-03 10:00:00+00'", "'2024-09-03 11:00:00+01'",
             "'2024-09-03 11:00:00+00'", "'1970-01-01 00:00:00+00'", "'-infinity'", None,
             "'2024-08-04 10:00:00+00'", "'2024-10-03 10:00:00.5+00'",
             "'2026-11-20 12:00:00+00'"),
    "iv": ("'30 days'", "'1 month'", "'720 hours'", "'29 days 23:59:59'", "'1 day'",
           "'-1 day'", "'0'", None, "'1 year'", "'00:00:00.000001'", "'31 days'"),
    "u": ("'a0000000-0000-4000-8000-000000000001'", "'00000000-0000-0000-0000-000000000000'",
          "'ffffffff-ffff-ffff-ffff-ffffffffffff'", None,
          "'b0000000-0000-4000-8000-000000000002'"),
}  # fmt: skip


def probe_insert() -> str:
    names = list(PROBE_VALUES)
    rows = []
    for i in range(1, PROBE_ROWS + 1):
        values = [str(i)]
        for k, name in enumerate(names):
            pool = PROBE_VALUES[name]
            value = pool[(i + 5 * k) % len(pool)]
            values.append("NULL" if value is None else value)
        rows.append(f"({', '.join(values)})")
    return f"INSERT INTO {PROBE_TABLE} (id, {', '.join(names)}) VALUES\n" + ",\n".join(rows)


_INT_TARGETS = ("int", "integer", "int4", "bigint", "int8", "smallint")
_TEXT_TARGETS = ("text", "varchar", "varchar(5)", "char(3)")

PROBE_COLUMNS = (
    Column("id", "int", casts=(*_INT_TARGETS, "numeric", "text", "float8"),
           literals=("1", "13", "20", "40", "0")),
    Column("i2", "int", casts=("int", "integer", "bigint", "numeric", "text", "float8", "real"),
           literals=("32767", "-32768", "111", "0"), arithmetic=False),
    Column("i4", "int", casts=("bigint", "int8", "numeric", "text", "float8", "boolean"),
           literals=("2147483647", "-2147483648", "72", "111"), arithmetic=False),
    Column("i8", "int", casts=("numeric", "decimal", "text", "float8"),
           literals=("9223372036854775807", "2147483648", "111"), arithmetic=False),
    Column("qty", "int",
           casts=(*_INT_TARGETS, "numeric(10,2)", "boolean", "real", "text", "varchar(5)"),
           literals=("0", "7", "72", "111", "-3"), weight=3),
    Column("num", "dec", casts=("text", "float8", "numeric", "double precision"),
           literals=("96.22", "1611.59", "100.5", "1e20", "'NaN'", "-0.5"), weight=2),
    Column("num2", "dec",
           casts=("int", "integer", "int4", "bigint", "numeric(10,2)", "real", "float8",
                  "text", "numeric"),
           literals=("96.22", "1611.59", "2.5", "-2.50", "'100.5'"), weight=2),
    Column("f4", "float", casts=("float8", "double precision", "text", "numeric"),
           literals=("96.22", "'NaN'", "'Infinity'", "1.5")),
    Column("f8", "float", casts=("text", "float8", "numeric"),
           literals=("96.22", "1e30", "'-Infinity'", "0.1")),
    Column("b", "bool", casts=("text", "int", "integer", "varchar")),
    Column("t", "text", casts=_TEXT_TARGETS,
           literals=literal_list(("O'Brien", "back\\slash", "100%", "café", "日本", "")),
           weight=3),
    Column("vc", "text", casts=_TEXT_TARGETS, literals=literal_list(("a_b", "😀", "ab"))),
    Column("ch", "text", casts=("text", "varchar", "char(3)"),
           literals=literal_list(("ab", "ab ", "abc", "AB"))),
    Column("d", "date", casts=("timestamp", "timestamptz", "text", "date"),
           literals=("'2024-09-03'", "date '2024-01-01'", "'2000-02-29'")),
    Column("ts", "ts", casts=("date", "timestamptz", "text"),
           literals=("'2024-09-03 10:00:00'", "'2024-09-03 11:00:13.3999'", "'infinity'")),
    Column("tstz", "tstz", casts=("date", "timestamp", "text"),
           literals=("'2024-09-03 10:00:00+00'", "'2024-09-03 11:00:00+01'",
                     "timestamptz '2024-10-03 10:00:00.5+00'")),
    Column("iv", "interval", casts=("text", "interval"),
           literals=("'30 days'", "'1 month'", "interval '720 hours'")),
    Column("u", "uuid", casts=("text", "varchar"),
           literals=("'a0000000-0000-4000-8000-000000000001'",
                     "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'")),
)  # fmt: skip

ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"
ORDERS_COLUMNS = (
    Column("id", "int", casts=(*_INT_TARGETS, "numeric", "text", "float8"),
           literals=("1", "100", "15000", "29999", "30000"), weight=2),
    Column("customer_id", "int", casts=("int", "bigint", "numeric", "text"),
           literals=("1", "2", "40", "80")),
    Column("org_id", "uuid", casts=("text", "varchar"),
           literals=(f"'{ACME}'", f"'{GLOBEX}'", f"'{ACME.upper()}'")),
    Column("created_by", "uuid", casts=("text",),
           literals=("'00000000-0000-4000-a000-000000000b0b'",
                     "'00000000-0000-4000-a000-00000000a11c'")),
    Column("status", "text", casts=_TEXT_TARGETS,
           literals=literal_list(("draft", "open", "paid", "shipped", "cancelled", "Paid")),
           weight=2),
    Column("total", "dec",
           casts=("int", "bigint", "numeric", "float8", "text", "real", "numeric(10,2)"),
           literals=("100", "96.22", "1611.59", "2500", "'100.5'"), weight=2),
    Column("created_at", "tstz", casts=("date", "timestamp", "text"),
           literals=("'2025-06-01'", "timestamptz '2026-01-01 00:00:00+00'", "'2024-11-16'"),
           weight=2),
    Column("note", "text", casts=_TEXT_TARGETS,
           literals=literal_list(("Rush delivery requested.", "Call before delivery.", "")),
           weight=2),
    Column("internal_margin", "dec", casts=("int", "numeric", "float8", "text"),
           literals=("8", "20.5", "39.99")),
)  # fmt: skip

# Hand-written filters from the grammar's edge cases, checked before the generated ones.
PROBE_CURATED = (
    "id = 1", "TRUE", "FALSE", "NULL", "id = 13", "qty = 111", "'0111' = 111", "qty = '0111'",
    "qty = 0111", "qty = ' 111 '", "i4 = '0x6F'", "num > '100.5'", "96.22 > 699.74",
    "'a' = 'a'", "72 % 7 = 2", "num2 = 96.22", "f8 = 96.22", "f4 = 96.22", "num = 'NaN'",
    "num > 1e2", "num > 1E2", "num2 > .5", "num2 > 5.", "num2 < 1.5e-3",
    "i4 = 2147483647", "i4 = 2147483648", "i8 = 9223372036854775807",
    "i8 > 9223372036854775808", "i4 = -2147483648", "-2147483648 = i4", "i4 + 1 > 0",
    "t = 'O''Brien'", "t = 'back\\slash'", "t = E'back\\\\slash'", "t = '\\'", "t = ''''",
    "t LIKE '%\\%%'", "t LIKE '100!%' ESCAPE '!'", "t LIKE '%!_%' ESCAPE '!'",
    "t LIKE '%\\\\%'", "t = E'line\\nbreak'", "t = $$it's$$", "t = 'é'", "t ILIKE 'CAFÉ'",
    "t ~ '日本'", "t = '😀'", "t = E'\\u00e9'", "t = E'caf\\u00e9'", "t = E'\\x41'",
    "t = E'\\101'", "ch = 'ab'", "ch = 'ab '", "ch::text = 'ab'", "ch LIKE 'ab'",
    "length(ch) = 2", "b", "NOT b", "b IS UNKNOWN", "b IS NOT TRUE", "b = 'yes'",
    "t IS NOT NULL", "t NOTNULL", "t ISNULL", "d = '2024-09-03'", "d > current_date - 7",
    "ts > '2024-09-03 11:00:00+01'", "ts = '2024-09-03 11:00:13.3999999'",
    "tstz = '2024-09-03 11:00:00+01'", "tstz > now() - interval '30 days'",
    "ts - ts > '30 days'", "ts - timestamp '2024-08-04 10:00:00' > '30 days'",
    "ts > 'today'", "d = 'epoch'", "ts = 'infinity'", "ts > 'epoch'", "d = '2024-W40-7'",
    "iv = '1 month'", "iv = '30 days'", "iv > interval '29 days'", "iv = interval '1' month",
    "u = 'A0000000-0000-4000-8000-000000000001'",
    "u = '{a0000000-0000-4000-8000-000000000001}'",
    "u = 'urn:uuid:a0000000-0000-4000-8000-000000000001'",
    "u = 'a0000000000040008000000000000001'", "qty + qty * 2 = 3", "qty - qty % 7 = 0",
    "-2 ^ 2 = 4", "2 ^ 3 ^ 2 = 64", "qty / 2 = 3", "qty / 2.0 = 3.5", "- -5 = 5",
    "-(5) = -5", "2.5::int = 3", "2.5::float8::int = 2", "-2147483648::int < 0",
    "qty = 1 AND NOT b", "NOT qty = 1", "qty = 1 OR qty = 2 AND b",
    "qty BETWEEN 1 AND 100", "qty NOT BETWEEN SYMMETRIC 100 AND 1",
    "qty BETWEEN 1 AND 100 AND b", "qty IN (1, 2, NULL)", "qty NOT IN (1, 2, NULL)",
    "qty NOT IN (1, 2)", "t || 1e2 = 'a100'", "'x' || 1e2 = 'x100'", "round(num2) = 96",
    "round(num2, 1) = 96.2", "extract(dow FROM d) = 2", "extract(epoch FROM tstz) > 0",
    "date_trunc('day', ts) = '2024-09-03'", "tstz AT TIME ZONE 'UTC' = ts",
    "CAST(qty AS text) = '111'", "qty::varchar(5) = '111'", "coalesce(t, 'x') = 'x'",
    "nullif(qty, 0) IS NULL", "greatest(qty, 100) = 100", "least(num2, 0) < 0",
    "abs(num2) = 2.5", "floor(num2) = 2", "ceil(num2) = 3", "ceiling(num2) = -2",
    "char_length(t) = 0", "btrim(t) = 'padded'", "trim(t) = ''", "lower(t) = 'café'",
    "upper(t) = 'CAFÉ'", "u IS DISTINCT FROM NULL", "qty IS NOT DISTINCT FROM NULL",
    "date '2024-01-01' < d", "timestamp '2024-09-03 10:00:00' = ts", "localtimestamp > ts",
    "current_timestamp > tstz", "'abc'::int = 1", "9223372036854775808 > i8",
    "2147483648 > i4", "0111 = '0111'", "items.qty = 7", '"qty" = 7', "QTY = 7",
    "num::numeric(10,2) = 96.22", "qty::decimal = 7", "f8::real > 0", "qty::float = 7",
    "qty::double precision = 7", "CAST('7 days' AS interval) < iv", "'t'::boolean = b",
)  # fmt: skip
ORDERS_CURATED = (
    "id = 1", "note IS NOT NULL", "note IS NULL", "status = 'paid'",
    "status IN ('open', 'draft')", "total > '100.5'", "total = 96.22",
    "created_at > now() - interval '30 days'", "created_at > 'today'",
    "created_at < '2025-01-01'", "org_id = 'A0000000-0000-4000-8000-000000000001'",
    "internal_margin IS NULL AND status <> 'draft'", "note LIKE '%delivery%'",
    "note ILIKE 'rush%'", "total BETWEEN 100 AND 200", "id % 1000 = 0", "customer_id = 1",
    "extract(year FROM created_at) = 2025", "date_trunc('month', created_at) = '2025-06-01'",
    "created_by = '00000000-0000-4000-a000-000000000b0b'", "note NOTNULL AND total < 50",
    "coalesce(note, '') = ''", "length(note) > 25", "total::int = 100",
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Answers and verdicts
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A table, who queries it, through which app, and (for updates) what to set."""

    app: Rowgate
    table: str
    who: Principal
    set_column: str
    set_sql: str
    set_value: str


@dataclass(frozen=True, slots=True)
class Case:
    text: str
    rowgate: Answer
    postgres: Answer


async def rowgate_answer(target: Target, tool: str, arguments: dict[str, Any]) -> Answer:
    try:
        result = await target.app.call(tool, arguments, target.who)
    except RowgateError as exc:
        return Answer(code=exc.code, message=exc.message)
    rows = result.model_dump(mode="json")["rows"]
    return Answer(ids=tuple(row["id"] for row in rows))


def documented(message: str | None) -> bool:
    return message is not None and any(re.search(p, message) for p in DOCUMENTED_REFUSALS)


def verdict(case: Case, *, write: bool, cap: int) -> str | None:
    """None when rowgate and Postgres agree; otherwise the kind of disagreement."""
    mine, theirs = case.rowgate, case.postgres
    if theirs.ids is None:
        return None if mine.ids is None else "rowgate answered where Postgres failed"
    if mine.ids is None:
        if write and mine.code == "too_many_rows" and len(theirs.ids) > cap:
            return None
        if documented(mine.message):
            return None
        return f"rowgate failed ({mine.code}) where Postgres answered"
    if write:
        if len(theirs.ids) > cap:
            return "rowgate wrote more rows than the cap"
        return None if sorted(mine.ids) == sorted(theirs.ids) else "different rows"
    return None if mine.ids == theirs.ids else "different rows"


def difference(case: Case) -> str:
    mine, theirs = case.rowgate.ids, case.postgres.ids
    if mine is None or theirs is None:
        return ""
    only_mine = sorted(set(mine) - set(theirs))
    only_theirs = sorted(set(theirs) - set(mine))
    if not only_mine and not only_theirs:
        return "\n        same ids, different order"
    return f"\n        only rowgate: {only_mine[:12]}\n        only Postgres: {only_theirs[:12]}"


def report(title: str, cases: Sequence[Case], *, write: bool, cap: int, seconds: float) -> str:
    """A summary of every case, then each kind of disagreement split by error message
    shape, with its shortest filters first."""
    by_kind: dict[str, dict[str, list[Case]]] = defaultdict(lambda: defaultdict(list))
    stats: Counter[str] = Counter()
    for case in cases:
        kind = verdict(case, write=write, cap=cap)
        if kind is not None:
            failed = case.rowgate if case.rowgate.ids is None else case.postgres
            shape = f"{failed.code}: {_shape(failed.message or '')}" if failed.ids is None else ""
            by_kind[kind][shape].append(case)
        elif case.postgres.ids is None:
            stats["both failed"] += 1
        elif case.rowgate.ids is None:
            stats["refused as documented or over the cap"] += 1
        else:
            stats["same rows"] += 1
    total = sum(len(g) for shapes in by_kind.values() for g in shapes.values())
    lines = [
        f"{title}: {len(cases)} filters in {seconds:.1f}s, {total} disagreements; "
        + ", ".join(f"{n} {k}" for k, n in sorted(stats.items())),
        f"(ROWGATE_FILTER_SEED={base_seed()}; shortest filters of each kind shown)",
    ]

    def order(item: tuple[str, dict[str, list[Case]]]) -> tuple[int, int]:
        kind, shapes = item
        rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        return rank, -sum(map(len, shapes.values()))

    for kind, shapes in sorted(by_kind.items(), key=order):
        lines.append(f"\n== {kind}: {sum(map(len, shapes.values()))}")
        shown = 0
        for shape, group in sorted(shapes.items(), key=lambda kv: -len(kv[1])):
            if shape:
                lines.append(f"  -- {len(group)} x {shape}")
            limit = MAX_SHOWN_PER_SHAPE if shape else MAX_SHOWN_PER_KIND
            for case in sorted(group, key=lambda c: (len(c.text), c.text))[:limit]:
                if shown < MAX_SHOWN_PER_KIND:
                    shown += 1
                    lines.append(f"    where {case.text}")
                    lines.append(f"      rowgate:  {case.rowgate.show()}")
                    lines.append(f"      Postgres: {case.postgres.show()}{difference(case)}")
    return "\n".join(lines)


def _shape(message: str) -> str:
    """A refusal message with its quoted parts elided, so similar refusals group."""
    shape = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "…", message)
    shape = re.sub(r"\$\d+", "$n", shape.removesuffix(" Nothing was changed."))
    return shape[:140]


# ---------------------------------------------------------------------------------------
# Running a batch
# ---------------------------------------------------------------------------------------


async def check_selects(admin: asyncpg.Connection, target: Target, filters: Sequence[str]) -> None:
    started = time.perf_counter()
    cases = []
    for text in filters:
        arguments = {
            "table": target.table,
            "where": text,
            "columns": ["id"],
            "order_by": "id",
            "limit": 500,
        }
        sql = f"SELECT id FROM {target.table} WHERE {text}\nORDER BY id LIMIT 500"
        mine, theirs = await asyncio.gather(
            rowgate_answer(target, "select_rows", arguments),
            postgres_answer(admin, target.who, sql),
        )
        cases.append(Case(text, mine, theirs))
    finish(f"select_rows on {target.table}", cases, write=False, target=target, started=started)


async def check_writes(
    admin: asyncpg.Connection, target: Target, tool: str, filters: Sequence[str]
) -> None:
    """Dry-run writes against the same statement in Postgres (rolled back): RETURNING id
    gives the rows the write affects, and any error the write itself raises (constraints,
    foreign keys) is Postgres' answer too. One after the other: concurrent writes to the
    same rows would wait on each other's locks."""
    started = time.perf_counter()
    cases = []
    for n, text in enumerate(filters):
        key = f"oracle-{hashlib.sha256(text.encode()).hexdigest()[:16]}-{n}"
        arguments: dict[str, Any] = {
            "table": target.table,
            "where": text,
            "idempotency_key": key,
            "dry_run": True,
        }
        if tool == "update_rows":
            arguments["set"] = {target.set_column: target.set_value}
            sql = (
                f"UPDATE {target.table} SET {target.set_column} = {target.set_sql}"
                f" WHERE {text}\nRETURNING id"
            )
        else:
            sql = f"DELETE FROM {target.table} WHERE {text}\nRETURNING id"
        theirs = await postgres_answer(admin, target.who, sql)
        mine = await rowgate_answer(target, tool, arguments)
        cases.append(Case(text, mine, theirs))
    finish(f"{tool} (dry run) on {target.table}", cases, write=True, target=target, started=started)


def finish(title: str, cases: list[Case], *, write: bool, target: Target, started: float) -> None:
    cap = target.app.settings.limits.max_write_rows
    text = report(title, cases, write=write, cap=cap, seconds=time.perf_counter() - started)
    failed = any(verdict(c, write=write, cap=cap) is not None for c in cases)
    assert not failed, text
    print("\n" + text)


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def probe_app(admin: asyncpg.Connection, login_dsn: str) -> AsyncIterator[Rowgate]:
    """probe.items with its data, and a rowgate app whose catalog includes it."""
    await admin.execute(PROBE_DDL)
    await admin.execute(probe_insert())
    logging.getLogger("rowgate.audit").setLevel(logging.WARNING)
    app = await Rowgate.start(
        Settings(database_url=login_dsn, schemas=["probe"], pool_min_size=1, pool_max_size=2)
    )
    try:
        yield app
    finally:
        await app.close()
        await admin.execute("DROP SCHEMA IF EXISTS probe CASCADE")


@pytest.fixture
def probe(probe_app: Rowgate, bob: Principal) -> Target:
    return Target(probe_app, PROBE_TABLE, bob, "vc", "'dry'", "dry")


@pytest.fixture
def orders(rg: Rowgate, alice: Principal) -> Target:
    return Target(rg, ORDERS_TABLE, alice, "note", "'dry run'", "dry run")


def probe_grammar() -> FilterGrammar:
    return FilterGrammar(PROBE_COLUMNS, table="items", max_depth=3, exclude=GRAMMAR_EXCLUDE)


def orders_grammar() -> FilterGrammar:
    return FilterGrammar(ORDERS_COLUMNS, table="orders", max_depth=3, exclude=GRAMMAR_EXCLUDE)


# ---------------------------------------------------------------------------------------
# The harness itself
# ---------------------------------------------------------------------------------------


async def test_oracle_runs_as_the_role_and_agrees_on_a_trivial_filter(
    admin: asyncpg.Connection, probe: Target, orders: Target
) -> None:
    everything = await postgres_answer(admin, probe.who, "SELECT id FROM probe.items ORDER BY id")
    assert everything.ids == tuple(i for i in range(1, PROBE_ROWS + 1) if i != HIDDEN_ID)
    broken = await postgres_answer(admin, probe.who, "SELECT id FROM probe.items WHERE 1/0 = 1")
    assert broken.code == "22012"
    assert await admin.fetchval("SELECT current_user") == await admin.fetchval(
        "SELECT session_user"
    ), "the oracle's role must not outlive its transaction"
    assert not admin.is_in_transaction()
    for target in (probe, orders):
        first = await postgres_answer(
            admin, target.who, f"SELECT id FROM {target.table} ORDER BY id LIMIT 1"
        )
        assert first.ids, f"{target.who.role} sees no rows of {target.table}"
        text = f"id = {first.ids[0]}"
        sql = f"SELECT id FROM {target.table} WHERE {text}\nORDER BY id LIMIT 500"
        arguments = {"table": target.table, "where": text, "columns": ["id"], "limit": 500}
        case = Case(
            text,
            await rowgate_answer(target, "select_rows", arguments),
            await postgres_answer(admin, target.who, sql),
        )
        assert case.postgres.ids == first.ids
        assert verdict(case, write=False, cap=100) is None, case


def test_verdicts() -> None:
    rows, other = Answer(ids=(1, 2)), Answer(ids=(2, 1))
    failed = Answer(code="22012", message="division by zero")
    refused = Answer(code="invalid_request", message="function foo() is not allowed")
    capped = Answer(code="too_many_rows", message="would change 150 rows")
    many = Answer(ids=tuple(range(150)))
    assert verdict(Case("x", rows, rows), write=False, cap=100) is None
    assert verdict(Case("x", failed, failed), write=False, cap=100) is None
    assert verdict(Case("x", other, rows), write=False, cap=100) == "different rows"
    assert verdict(Case("x", other, rows), write=True, cap=100) is None
    assert verdict(Case("x", rows, failed), write=False, cap=100) is not None
    assert verdict(Case("x", refused, rows), write=False, cap=100) is not None
    assert verdict(Case("x", capped, many), write=True, cap=100) is None
    assert verdict(Case("x", capped, rows), write=True, cap=100) is not None
    assert verdict(Case("x", many, many), write=True, cap=100) is not None


def test_filters_are_deterministic() -> None:
    first = generate_filters(probe_grammar(), 30, "determinism")
    assert first == generate_filters(probe_grammar(), 30, "determinism")


# ---------------------------------------------------------------------------------------
# The differential tests
# ---------------------------------------------------------------------------------------


async def test_select_matches_postgres_on_probe(admin: asyncpg.Connection, probe: Target) -> None:
    filters = generate_filters(probe_grammar(), examples("probe_select"), "probe_select")
    await check_selects(admin, probe, list(dict.fromkeys([*PROBE_CURATED, *filters])))


async def test_update_dry_run_matches_postgres_on_probe(
    admin: asyncpg.Connection, probe: Target
) -> None:
    filters = generate_filters(probe_grammar(), examples("probe_update"), "probe_update")
    await check_writes(admin, probe, "update_rows", filters)


async def test_delete_dry_run_matches_postgres_on_probe(
    admin: asyncpg.Connection, probe: Target
) -> None:
    filters = generate_filters(probe_grammar(), examples("probe_delete"), "probe_delete")
    await check_writes(admin, probe, "delete_rows", filters)


async def test_select_matches_postgres_on_orders(admin: asyncpg.Connection, orders: Target) -> None:
    filters = generate_filters(orders_grammar(), examples("orders_select"), "orders_select")
    filters = narrowed(filters, ORDERS_READ_SAMPLE, ORDERS_READ_RAW_EVERY)
    await check_selects(admin, orders, list(dict.fromkeys([*ORDERS_CURATED, *filters])))


async def test_update_dry_run_matches_postgres_on_orders(
    admin: asyncpg.Connection, orders: Target
) -> None:
    filters = generate_filters(orders_grammar(), examples("orders_update"), "orders_update")
    filters = narrowed(filters, ORDERS_UPDATE_SAMPLE, ORDERS_WRITE_RAW_EVERY)
    await check_writes(admin, orders, "update_rows", filters)


async def test_delete_dry_run_matches_postgres_on_orders(
    admin: asyncpg.Connection, orders: Target
) -> None:
    filters = generate_filters(orders_grammar(), examples("orders_delete"), "orders_delete")
    filters = narrowed(filters, ORDERS_DELETE_SAMPLE, ORDERS_WRITE_RAW_EVERY)
    await check_writes(admin, orders, "delete_rows", filters)
