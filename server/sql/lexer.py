"""The words of a filter, read as Postgres reads them, before anything is parsed.

sqlglot's Postgres tokenizer and parser accept other dialects too (`ifnull`, `==`,
`interval 30 day`, `current_date()`) and normalise them into Postgres nodes, which would
give a meaning to text that Postgres itself rejects. So the tokens are checked first:
anything outside Postgres' own spelling of the filter grammar is refused here, with the
Postgres spelling as a hint. A few Postgres forms that sqlglot would read differently are
rewritten into tokens of the same meaning that it reads exactly:

- `E'...'` strings are decoded here with Postgres' escape rules, `$$...$$` taken verbatim;
  both become plain string tokens.
- `INTERVAL '7 days'` becomes `CAST('7 days' AS INTERVAL)` (the same typed literal: sqlglot
  would split the string into a number and a unit).
- `x IS [NOT] UNKNOWN` becomes `x IS [NOT] DISTINCT FROM CAST(NULL AS BOOLEAN)`, which is
  Postgres' definition of it (sqlglot reads UNKNOWN as NULL, dropping the boolean check).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from server.errors import RowgateError, bad_request

_T = TokenType
TOKENIZER = Postgres().tokenizer()  # one instance: building a tokenizer costs more than using it

# Functions a filter may call, by their Postgres names (checked before sqlglot maps names).
FUNCTIONS = (
    "lower", "upper", "length", "char_length", "trim", "btrim", "abs", "round", "floor",
    "ceil", "ceiling", "coalesce", "nullif", "greatest", "least", "now", "date_trunc",
    "extract",
)  # fmt: skip
KEYWORD_VALUES = ("current_date", "current_timestamp", "localtimestamp")

_HINTS = {
    "ifnull": "coalesce(a, b)", "nvl": "coalesce(a, b)", "isnull": "coalesce(a, b)",
    "len": "length(x)", "ucase": "upper(x)", "lcase": "lower(x)", "substr": "a LIKE pattern",
    "getdate": "now()", "sysdate": "now()", "today": "current_date",
    "date_part": "extract(field FROM x)", "datediff": "subtraction: `a - b`",
    "dateadd": "`x + INTERVAL '1 day'`", "iif": "coalesce/nullif", "if": "coalesce/nullif",
    "concat": "`a || b`", "pow": "`a ^ b`", "power": "`a ^ b`", "mod": "`a % b`",
    "to_date": "`CAST('2024-01-31' AS date)`",
}  # fmt: skip

_SAFE_TOKENS = frozenset({
    _T.VAR, _T.IDENTIFIER, _T.STRING, _T.NUMBER, _T.BYTE_STRING, _T.HEREDOC_STRING,
    _T.EQ, _T.NEQ, _T.GT, _T.GTE, _T.LT, _T.LTE, _T.PLUS, _T.DASH, _T.STAR, _T.SLASH, _T.MOD,
    _T.CARET, _T.DPIPE, _T.AND, _T.OR, _T.NOT, _T.L_PAREN, _T.R_PAREN, _T.COMMA, _T.DOT,
    _T.DCOLON, _T.IS, _T.NULL, _T.TRUE, _T.FALSE, _T.UNKNOWN, _T.NOTNULL, _T.ISNULL, _T.IN,
    _T.BETWEEN,
    _T.LIKE, _T.ILIKE, _T.ESCAPE, _T.DISTINCT, _T.FROM, _T.ALIAS,
    _T.INTERVAL, _T.CURRENT_DATE, _T.CURRENT_TIMESTAMP, _T.LOCALTIMESTAMP, _T.TIME,
})  # fmt: skip
# Data type names are words of their own to sqlglot (INT, TEXT, ...): allowed as words here,
# the parsed tree decides where a type may stand.
_TYPE_TOKENS = frozenset(Postgres.Parser.TYPE_TOKENS)
_STRINGS = frozenset({_T.STRING, _T.BYTE_STRING, _T.HEREDOC_STRING})
_BETWEEN_WORDS = frozenset({"symmetric", "asymmetric"})
# Tokens after which `(` only opens a parenthesised expression, never a call.
_NOT_CALLERS = frozenset({
    _T.IN, _T.AND, _T.OR, _T.NOT, _T.L_PAREN, _T.COMMA, _T.FROM, _T.BETWEEN, _T.IS, _T.LIKE,
    _T.ILIKE, _T.ESCAPE, _T.DISTINCT, _T.ALIAS, _T.NUMBER, _T.EQ, _T.NEQ, _T.GT, _T.GTE, _T.LT,
    _T.LTE, _T.PLUS, _T.DASH, _T.STAR, _T.SLASH, _T.MOD, _T.CARET, _T.DPIPE,
}) | _STRINGS  # fmt: skip
_TYPE_WORDS = frozenset({"with", "without", "time", "zone", "precision", "varying"})
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# After these a `+` or `-` is a sign, not an operator.
_OPERAND_ENDS = frozenset({
    _T.VAR, _T.IDENTIFIER, _T.STRING, _T.NUMBER, _T.R_PAREN, _T.NULL, _T.TRUE, _T.FALSE,
    _T.CURRENT_DATE, _T.CURRENT_TIMESTAMP, _T.LOCALTIMESTAMP, _T.UNKNOWN, _T.NOTNULL, _T.ISNULL,
}) | _TYPE_TOKENS  # fmt: skip


def is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_number(text: str) -> bool:
    """A numeric constant as Postgres' lexer reads one (plain decimal)."""
    return _NUMBER.fullmatch(text) is not None


def lex(text: str, what: str) -> list[Token]:
    """The fragment's tokens, checked against Postgres' spelling and rewritten where noted."""
    if "\x00" in text:
        raise bad_request(f"{what} contains a NUL character")
    if not text.isascii() and not is_valid_unicode(text):
        raise bad_request(f"{what} is not valid Unicode (it contains a lone surrogate)")
    try:
        raw = TOKENIZER.tokenize(text)
    except (TokenError, ParseError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise bad_request(f"could not parse {what}: {first_line}") from None
    return _Gate(raw, text, what).run()


class _Gate:
    def __init__(self, tokens: list[Token], text: str, what: str) -> None:
        self.tokens = tokens
        self.text = text
        self.what = what
        self.out: list[Token] = []

    def refuse(self, message: str) -> RowgateError:
        return bad_request(f"{self.what}: {message}")

    def run(self) -> list[Token]:
        tokens = self.tokens
        i = 0
        while i < len(tokens):
            token = tokens[i]
            kind = token.token_type
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            prev = tokens[i - 1] if i > 0 else None
            if (
                kind not in _SAFE_TOKENS
                and kind not in _TYPE_TOKENS
                and not _in_type_name(prev, token, nxt)
            ):
                raise self.refuse(_unsupported(token))
            self._spelling(token, nxt)
            if nxt is not None and nxt.token_type is _T.L_PAREN:
                self._call(token, prev)
            if kind in _STRINGS:
                if nxt is not None and nxt.token_type in _STRINGS:
                    raise self.refuse(
                        "two string literals in a row; write them as one literal or join them "
                        "with ||"
                    )
                self.out.append(self._string(token))
            elif kind is _T.NUMBER:
                self._number(token, nxt)
                self.out.append(token)
            elif kind is _T.PLUS and (prev is None or prev.token_type not in _OPERAND_ENDS):
                raise self.refuse("unary + is not supported; write the number alone")
            elif kind is _T.INTERVAL and not _after_type_marker(prev):
                i = self._interval(i)
                continue
            elif (
                kind in _TYPE_TOKENS
                and not _after_type_marker(prev)
                and (after := self._typed_literal(i))
            ):
                i = after
                continue
            elif kind is _T.UNKNOWN and prev is not None and prev.token_type in (_T.IS, _T.NOT):
                self._is_unknown(token)
            else:
                self.out.append(token)
            i += 1
        return self.out

    def _spelling(self, token: Token, nxt: Token | None) -> None:
        kind, text = token.token_type, token.text.lower()
        if kind is _T.EQ and text != "=":
            raise self.refuse(f"{token.text!r} is not a Postgres operator; use =")
        if kind in (_T.LIKE, _T.ILIKE) and text not in ("like", "ilike"):
            raise self.refuse(f"write {text!r} as LIKE / ILIKE")
        if kind is _T.NOT and text != "not":
            if nxt is not None and nxt.token_type in (_T.RLIKE, _T.IRLIKE):
                raise self.refuse(_unsupported(nxt))
            raise self.refuse(f"{token.text!r} is not supported here; use NOT")

    def _call(self, token: Token, prev: Token | None) -> None:
        """`name(` is a function call unless a type name takes a modifier (`varchar(5)`)."""
        kind = token.token_type
        if _after_type_marker(prev) and kind in _TYPE_TOKENS:
            return
        if kind in _NOT_CALLERS:
            return
        name = token.text.lower()
        if prev is not None and prev.token_type is _T.BETWEEN and name in _BETWEEN_WORDS:
            return
        if kind is _T.IDENTIFIER:
            raise self.refuse(f"quoted function names are not supported; write {name}(...)")
        if name in KEYWORD_VALUES:
            raise self.refuse(f"{name} takes no parentheses in Postgres; write {name}")
        if name == "cast":
            return
        if name in FUNCTIONS:
            return
        hint = _HINTS.get(name)
        if hint:
            raise self.refuse(f"function {name}() is not Postgres; write {hint}")
        if kind in _TYPE_TOKENS:
            raise self.refuse(f"write type conversions as CAST(x AS {name}) or x::{name}")
        raise self.refuse(
            f"function {name}() is not allowed; allowed functions: {', '.join(FUNCTIONS)}, "
            f"and {', '.join(KEYWORD_VALUES)}"
        )

    def _number(self, token: Token, nxt: Token | None) -> None:
        if not is_number(token.text):
            raise self.refuse(f"{token.text!r} is not a number Postgres reads")
        if nxt is not None and nxt.start == token.end + 1 and nxt.token_type not in (
            _T.R_PAREN, _T.COMMA, _T.DCOLON, _T.EQ, _T.NEQ, _T.GT, _T.GTE, _T.LT, _T.LTE,
            _T.PLUS, _T.DASH, _T.STAR, _T.SLASH, _T.MOD, _T.CARET, _T.DPIPE, _T.NOT,
        ):  # fmt: skip
            raise self.refuse(
                f"trailing junk after the number {token.text!r}; numbers are written in plain "
                "decimal, without underscores"
            )

    def _string(self, token: Token) -> Token:
        if token.token_type is _T.BYTE_STRING:
            raw = self.text[token.start : token.end + 1]
            value = decode_escape_string(raw[2:-1], self.refuse)
        else:
            value = token.text
        return Token(_T.STRING, value, token.line, token.col, token.start, token.end)

    def _interval(self, i: int) -> int:
        """`INTERVAL '7 days'` -> `CAST('7 days' AS INTERVAL)`; returns the next index."""
        tokens = self.tokens
        literal = tokens[i + 1] if i + 1 < len(tokens) else None
        if literal is None or literal.token_type not in _STRINGS:
            raise self.refuse("write intervals as INTERVAL '30 days' (the value in quotes)")
        after = tokens[i + 2] if i + 2 < len(tokens) else None
        if after is not None and (
            after.token_type in (_T.VAR, _T.L_PAREN) or after.token_type in _TYPE_TOKENS
        ):
            raise self.refuse(
                "interval units go inside the quotes: INTERVAL '30 days', not INTERVAL '30' DAY"
            )
        at = tokens[i]
        self.out += [
            _word(_T.VAR, "CAST", at),
            _word(_T.L_PAREN, "(", at),
            self._string(literal),
            _word(_T.ALIAS, "AS", at),
            _word(_T.INTERVAL, "INTERVAL", at),
            _word(_T.R_PAREN, ")", at),
        ]
        return i + 2

    def _typed_literal(self, i: int) -> int:
        """`timestamp '2024-09-03'` -> `CAST('2024-09-03' AS timestamp)`, so a following
        `::date` applies to the typed literal, as in Postgres (sqlglot would apply it to the
        string first). Returns the next index, or 0 when the type is not followed by a string."""
        tokens = self.tokens
        if i > 0 and tokens[i - 1].text.lower() == "at":  # x AT TIME ZONE 'UTC'
            return 0
        j = i + 1
        while j < len(tokens) and (
            tokens[j].token_type in _TYPE_TOKENS
            or (
                tokens[j].token_type in (_T.VAR, _T.TIME, _T.WITH)
                and tokens[j].text.lower() in _TYPE_WORDS
            )
        ):
            j += 1
        if j >= len(tokens) or tokens[j].token_type not in _STRINGS:
            return 0
        at = tokens[i]
        self.out += [_word(_T.VAR, "CAST", at), _word(_T.L_PAREN, "(", at), self._string(tokens[j])]
        self.out += [_word(_T.ALIAS, "AS", at), *tokens[i:j], _word(_T.R_PAREN, ")", at)]
        return j + 1

    def _is_unknown(self, token: Token) -> None:
        negated = self.out[-1].token_type is _T.NOT
        if negated:
            self.out.pop()
        if not self.out or self.out[-1].token_type is not _T.IS:
            raise self.refuse("UNKNOWN is only supported in `x IS [NOT] UNKNOWN`")
        if not negated:
            self.out.append(_word(_T.NOT, "NOT", token))
        self.out += [
            _word(_T.DISTINCT, "DISTINCT", token),
            _word(_T.FROM, "FROM", token),
            _word(_T.VAR, "CAST", token),
            _word(_T.L_PAREN, "(", token),
            _word(_T.NULL, "NULL", token),
            _word(_T.ALIAS, "AS", token),
            _word(_T.BOOLEAN, "BOOLEAN", token),
            _word(_T.R_PAREN, ")", token),
        ]


def _after_type_marker(prev: Token | None) -> bool:
    """After `::` or a CAST's `AS`, a type name is a type, not a typed literal."""
    return prev is not None and prev.token_type in (_T.DCOLON, _T.ALIAS)


def _in_type_name(prev: Token | None, token: Token, nxt: Token | None) -> bool:
    """`WITH` in `timestamp with time zone` (elsewhere it would start a subquery)."""
    return (
        token.token_type is _T.WITH
        and prev is not None
        and prev.token_type in _TYPE_TOKENS
        and nxt is not None
        and nxt.token_type is _T.TIME
    )


def _word(kind: TokenType, text: str, at: Token) -> Token:
    return Token(kind, text, at.line, at.col, at.start, at.end)


def _unsupported(token: Token) -> str:
    kind = token.token_type
    if kind in (_T.PARAMETER, _T.PLACEHOLDER):
        return "placeholders are not allowed; write the value itself"
    if kind is _T.SEMICOLON:
        return "must be a single expression (no ';')"
    if kind in (_T.HEX_STRING, _T.BIT_STRING):
        return "hexadecimal numbers and bit strings are not supported; write numbers in decimal"
    if kind in (_T.UNICODE_STRING, _T.NATIONAL_STRING):
        return "U&'...' and N'...' strings are not supported; write the characters themselves"
    if kind in (_T.SELECT, _T.WITH, _T.VALUES, _T.EXISTS, _T.UNION):
        return "subqueries are not allowed in filters"
    if kind is _T.STAR:
        return "`*` is not allowed in a filter"
    if kind in (_T.RLIKE, _T.IRLIKE):
        return (
            "regular expressions (~, ~*) are not supported: their cost cannot be bounded "
            "before they run; use LIKE or ILIKE"
        )
    return f"unsupported syntax near {token.text!r}"


_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def decode_escape_string(body: str, refuse: Callable[[str], RowgateError]) -> str:
    """The value of an `E'...'` string, by Postgres' rules: \\b \\f \\n \\r \\t, octal \\ooo and
    hex \\xhh bytes, \\uXXXX and \\UXXXXXXXX code points, `''` and any other escaped
    character standing for itself; the bytes must form valid UTF-8 without NUL."""
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch == "'":  # the tokenizer only lets a doubled quote through
            out += b"'"
            i += 2
            continue
        if ch != "\\" or i + 1 >= n:
            out += ch.encode()
            i += 1
            continue
        esc = body[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc].encode()
            i += 2
        elif esc in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            i += 1 + len(digits.group())
        elif esc == "x" and re.match(r"[0-9A-Fa-f]", body[i + 2 : i + 3]):
            digits = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2 :])
            assert digits is not None
            out.append(int(digits.group(), 16))
            i += 2 + len(digits.group())
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            hex_digits = body[i + 2 : i + 2 + width]
            if not re.fullmatch(f"[0-9A-Fa-f]{{{width}}}", hex_digits):
                raise refuse("invalid Unicode escape in E'...': \\u needs 4 and \\U 8 hex digits")
            code = int(hex_digits, 16)
            i += 2 + width
            if 0xD800 <= code <= 0xDBFF:  # a surrogate pair, written as two \u escapes
                low = re.match(r"\\u([Dd][C-Fc-f][0-9A-Fa-f]{2})", body[i:])
                if low is None:
                    raise refuse("invalid Unicode surrogate pair in E'...'")
                code = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(1), 16) - 0xDC00)
                i += 6
            if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise refuse("invalid Unicode escape value in E'...'")
            out += chr(code).encode()
        else:
            out += esc.encode()
            i += 2
    if 0 in out:
        raise refuse("E'...' strings cannot contain a NUL byte")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("E'...' escapes do not form valid UTF-8") from None
