"""Applies rowgate's ordered SQL: `core` (its own schema, and Supabase-compatible roles and
auth functions only where missing), `demo` (demo schema and data), and the RLS policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

_LOCK = "SELECT pg_advisory_lock(hashtext('rowgate.migrate'))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('rowgate.migrate'))"
_TRACKING = """
CREATE SCHEMA IF NOT EXISTS rowgate;
CREATE TABLE IF NOT EXISTS rowgate.schema_migrations (
  name text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON rowgate.schema_migrations FROM PUBLIC;
"""


def resource_dir(name: str) -> Path:
    """`migrations` or `rls_policies`: bundled in an installed wheel, or the source tree."""
    package = Path(__file__).resolve().parent
    bundled = package / "_bundled" / name
    return bundled if bundled.is_dir() else package.parent / name


async def apply_migrations(conn: asyncpg.Connection, group: str) -> list[str]:
    """Apply the not-yet-applied files of migrations/<group>, each in its own transaction."""
    applied_now: list[str] = []
    await conn.execute(_LOCK)
    try:
        await conn.execute(_TRACKING)
        done: set[Any] = {
            r["name"] for r in await conn.fetch("SELECT name FROM rowgate.schema_migrations")
        }
        for path in sorted((resource_dir("migrations") / group).glob("*.sql")):
            name = f"{group}/{path.name}"
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO rowgate.schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
    finally:
        await conn.execute(_UNLOCK)
    return applied_now


async def apply_rls_policies(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """(Re)apply every policy file; each file is idempotent, all of them in one transaction."""
    files = sorted((directory or resource_dir("rls_policies")).glob("*.sql"))
    async with conn.transaction():
        for path in files:
            await conn.execute(path.read_text(encoding="utf-8"))
    return [p.name for p in files]
