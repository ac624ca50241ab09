"""One structured event per tool call, as a JSON line on stderr. Never row values."""

from __future__ import annotations

import json
import logging
import sys
import time

audit_log = logging.getLogger("rowgate.audit")


def configure(stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit_log.handlers[:] = [handler]
    audit_log.setLevel(logging.INFO)
    audit_log.propagate = False


def _emit(event: str, **fields: object) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    audit_log.info(json.dumps({"time": stamp, "event": event, **fields}, separators=(",", ":")))


def record(
    *,
    principal: str,
    tool: str,
    table: str | None,
    rows: int | None,
    ms: float,
    outcome: str,
    error_code: str | None = None,
) -> None:
    if audit_log.isEnabledFor(logging.INFO):
        _emit("tool_call", principal=principal, tool=tool, table=table, rows=rows,
              ms=round(ms, 2), outcome=outcome, error_code=error_code)  # fmt: skip


def auth_failure(
    *,
    reason: str,
    status: int,
    issuer: str | None,
    client_id: str | None,
    subject: str | None,
    token_id: str | None,
) -> None:
    """A refused credential: what it claimed to be (unverified) and why; never the token."""
    if audit_log.isEnabledFor(logging.INFO):
        _emit("auth_failure", reason=reason, status=status, issuer=issuer, client_id=client_id,
              subject=subject, token_id=token_id)  # fmt: skip
