"""The demo: an embedded PostgreSQL with demo business data and RLS, served as a demo user."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from server.identity import Principal
from server.migrate import apply_migrations, apply_rls_policies, resource_dir

DEMO_DATABASE = "rowgate_demo"


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    description: str
    principal: Principal


def demo_users() -> dict[str, DemoUser]:
    raw: dict[str, Any] = json.loads(
        (resource_dir("migrations") / "demo" / "demo_users.json").read_text(encoding="utf-8")
    )
    return {
        name: DemoUser(
            name=name,
            description=entry.get("description", ""),
            principal=Principal(role=entry["role"], claims=entry["claims"]),
        )
        for name, entry in raw.items()
    }


def with_user_and_database(dsn: str, user: str, database: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(
        (parts.scheme, f"{quote(user)}@{host}", "/" + quote(database), parts.query, "")
    )


async def create_database(admin_dsn: str, database: str) -> bool:
    """Create `database` unless it exists; True when it was created."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return False
        await conn.execute(f'CREATE DATABASE "{database}"')
        return True
    finally:
        await conn.close()


async def prepare_database(admin_dsn: str, database: str, *, demo: bool) -> None:
    """Core migrations, and with `demo` the demo schema, data and RLS policies."""
    await create_database(admin_dsn, database)
    conn = await asyncpg.connect(with_user_and_database(admin_dsn, _user(admin_dsn), database))
    try:
        await apply_migrations(conn, "core")
        if demo:
            await apply_migrations(conn, "demo")
            await apply_rls_policies(conn)
    finally:
        await conn.close()


def _user(dsn: str) -> str:
    parts = urlsplit(dsn)
    return parts.username or "postgres"
