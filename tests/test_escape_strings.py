"""E'...' strings are read by rowgate (the value then travels as a parameter), so where
such a literal ends and what it means must be Postgres' own reading: compared with what
Postgres reads for thousands of generated literals."""

from __future__ import annotations

import os
import re

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot.tokenizer_core import TokenType

from server.errors import RowgateError
from server.sql.lexer import lex

EXAMPLES = int(os.environ.get("ROWGATE_FILTER_EXAMPLES", "1500"))

_ESCAPES = [
    "\\n",
    "\\t",
    "\\b",
    "\\f",
    "\\r",
    "\\\\",
    "\\'",
    "''",
    "\\x",
    "\\x4",
    "\\x41",
    "\\xZ",
    "\\7",
    "\\101",
    "\\1011",
    "\\377",
    "\\303\\251",
    "\\303",
    "\\u00e9",
    "\\u00E9x",
    "\\U0001F600",
    "\\ud83d\\ude00",
    "\\ud83d",
    "\\u12",
    "\\uZZZZ",
    "\\q",
    "\\%",
    "\\_",
    "\\0",
    "\\000",
    "\\u0000",
    "\\",
    "é",
    "日本",
    "%",
    "_",
    "$",
    "$q",
    "$$",
]
_PIECES = st.one_of(
    st.sampled_from(_ESCAPES),
    st.text(
        alphabet=st.characters(blacklist_characters="\\'\x00", blacklist_categories=["Cs"]),
        max_size=4,
    ),
)
BODIES = st.lists(_PIECES, max_size=6).map("".join).filter(lambda b: not b.endswith("\\"))


# Postgres (15 and 18) never returns from lexing a high surrogate escape followed by a
# non-ASCII character: the backend spins in PARSE, deaf to cancel and statement_timeout.
# rowgate never sends these to Postgres; it refuses them, which is asserted instead.
_HANGS_POSTGRES = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u)[^\x00-\x7f]")


def _rowgate_reading(text: str) -> str | None:
    """The value rowgate reads for a lone string literal, or None if it refuses it."""
    try:
        tokens = lex(text, "where")
    except RowgateError:
        return None
    if len(tokens) != 1 or tokens[0].token_type is not TokenType.STRING:
        return None
    return tokens[0].text


def _generated_bodies() -> list[str]:
    bodies: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(BODIES)
    def collect(body: str) -> None:
        bodies.append(body)

    collect()
    return bodies


@pytest.mark.parametrize(("opening", "closing"), [("E'", "'"), ("'", "'"), ("$q$", "$q$")])
async def test_string_literals_read_as_postgres_reads_them(
    admin: asyncpg.Connection, opening: str, closing: str
) -> None:
    disagreements = []
    for body in _generated_bodies():
        literal = f"{opening}{body}{closing}"
        ours = _rowgate_reading(literal)
        if opening == "E'" and _HANGS_POSTGRES.search(body):
            assert ours is None, body
            continue
        try:
            async with admin.transaction():
                theirs: str | None = await admin.fetchval(f"SELECT ({literal})")
        except asyncpg.PostgresError:
            theirs = None
        if ours != theirs:
            disagreements.append(f"{literal}: rowgate {ours!r}, Postgres {theirs!r}")
    assert not disagreements, "\n".join(disagreements[:20])
