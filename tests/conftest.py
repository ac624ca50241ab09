"""Every test talks to a real PostgreSQL: the embedded one by default (started once per
session), or the server in TEST_DATABASE_URL (an admin DSN). Each session gets its own
fresh database with rowgate's migrations, the demo schema, data and RLS policies."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from schemas.config import Settings
from server.app import Rowgate
from server.demo import DemoUser, demo_users, prepare_database, with_user_and_database
from server.embedded import EmbeddedPostgres
from server.identity import Principal

# Shared across sessions so initdb runs once per machine, not per test run.
EMBEDDED_ROOT = Path(
    os.environ.get("ROWGATE_TEST_EMBEDDED_DIR", f"/tmp/rowgate-test-{os.getuid()}")
)


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    pg = EmbeddedPostgres(EMBEDDED_ROOT)
    pg.start()
    try:
        yield pg.dsn()
    finally:
        pg.stop()


@pytest.fixture(scope="session")
async def database(admin_dsn: str) -> AsyncIterator[str]:
    name = f"rowgate_test_{uuid.uuid4().hex[:10]}"
    await prepare_database(admin_dsn, name, demo=True)
    yield name
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def login_dsn(admin_dsn: str, database: str) -> str:
    return with_user_and_database(admin_dsn, "authenticator", database)


@pytest.fixture(scope="session")
def db_admin_dsn(admin_dsn: str, database: str) -> str:
    return with_user_and_database(admin_dsn, urlsplit(admin_dsn).username or "postgres", database)


@pytest.fixture(scope="session")
def settings(login_dsn: str) -> Settings:
    return Settings(database_url=login_dsn, pool_min_size=1, pool_max_size=4)


@pytest.fixture(scope="session")
async def rg(settings: Settings) -> AsyncIterator[Rowgate]:
    logging.getLogger("rowgate.audit").setLevel(logging.WARNING)
    app = await Rowgate.start(settings)
    yield app
    await app.close()


@pytest.fixture(scope="session")
async def admin(db_admin_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database, to check what really is stored."""
    conn = await asyncpg.connect(db_admin_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def users() -> dict[str, DemoUser]:
    return demo_users()


@pytest.fixture(scope="session")
def alice(users: dict[str, DemoUser]) -> Principal:
    return users["alice"].principal


@pytest.fixture(scope="session")
def bob(users: dict[str, DemoUser]) -> Principal:
    return users["bob"].principal


@pytest.fixture(scope="session")
def carol(users: dict[str, DemoUser]) -> Principal:
    return users["carol"].principal


@pytest.fixture(scope="session")
def dave(users: dict[str, DemoUser]) -> Principal:
    return users["dave"].principal
