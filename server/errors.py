"""Every failure a caller can see, and the mapping from Postgres errors to them.

Postgres error DETAIL lines are never passed on: they can quote whole rows,
hidden columns included ("Failing row contains ...").
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

DATABASE_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class RowgateError(Exception):
    """A failure the caller can act on. `code` is stable; `message` says what to change."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def bad_request(message: str) -> RowgateError:
    return RowgateError("invalid_request", message)


_NOTHING_CHANGED = " Nothing was changed."


def from_postgres(exc: Exception, *, writing: bool, visible: Collection[str] = ()) -> RowgateError:
    """A clear, non-leaking error for a failed statement (the transaction is rolled back).
    `visible`: the columns the caller may see; other column names are not repeated."""
    tail = _NOTHING_CHANGED if writing else ""
    if not isinstance(exc, asyncpg.PostgresError):
        if isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError):
            return RowgateError(
                "database_unavailable",
                "The database did not answer in time (unreachable or busy); retry shortly." + tail,
                retryable=True,
            )
        return RowgateError("internal_error", "Internal error while running the call." + tail)

    state = exc.sqlstate or ""
    message = str(getattr(exc, "message", "") or exc)
    table = getattr(exc, "table_name", None)
    constraint = getattr(exc, "constraint_name", None)
    on_table = f" on {table}" if table else ""

    if state == "42501":
        if "row-level security" in message:
            return RowgateError(
                "rls_denied",
                f"Row-level security refused this write{on_table}: the row is outside what "
                "you may write (for example another organization's, or not yours)." + tail,
            )
        return RowgateError(
            "permission_denied",
            f"Postgres denied this operation for your role: {message}." + tail,
        )
    if state == "23502":
        column = getattr(exc, "column_name", None)
        which = (
            f"column {column!r} needs a value; provide one"
            if column in visible
            else "a column you cannot see needs a value and has no default; ask the DBA"
        )
        return RowgateError(
            "not_null_violation", f"A required value is missing{on_table}: {which}." + tail
        )
    if state == "23505":
        return RowgateError(
            "unique_violation",
            f"A row with the same unique value already exists (constraint {constraint})." + tail,
        )
    if state == "23503":
        return RowgateError(
            "foreign_key_violation",
            f"A referenced row does not exist or is still referenced (constraint {constraint})."
            + tail,
        )
    if state == "23514":
        return RowgateError(
            "check_violation",
            f"A value breaks the check constraint {constraint}{on_table}." + tail,
        )
    if state.startswith("23"):
        return RowgateError("constraint_violation", f"{message}." + tail)
    if state == "57014":
        return RowgateError(
            "timeout",
            "The statement took too long and was cancelled; narrow `where` or lower `limit`."
            + tail,
            retryable=True,
        )
    if state == "55P03":
        return RowgateError(
            "lock_timeout",
            "The rows are locked by another transaction (or a call with this idempotency key "
            "is still running); retry shortly." + tail,
            retryable=True,
        )
    if state in {"40001", "40P01"}:
        return RowgateError(
            "conflict", "A concurrent transaction conflicted; retry." + tail, retryable=True
        )
    if state == "RG001":
        return RowgateError(
            "idempotency_key_reused",
            "This idempotency key was already used for a different request; use a new key "
            "for a new write." + tail,
        )
    if state.startswith("22"):
        return RowgateError("invalid_value", f"Invalid value: {message}." + tail)
    if state in {"42883", "42804", "42P18"}:
        return RowgateError(
            "type_mismatch",
            f"Types do not match: {message}. Compare values of the column's type "
            "(see describe_table) or CAST them." + tail,
        )
    if state.startswith("08") or state in {"57P01", "57P02", "57P03", "53300"}:
        return RowgateError(
            "database_unavailable",
            "The database is unavailable; retry shortly." + tail,
            retryable=True,
        )
    return RowgateError(
        "database_error", f"The database refused the call ({state}): {message}." + tail
    )
