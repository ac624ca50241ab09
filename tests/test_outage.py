"""A database that goes away gives a fast, retryable error (never a hang, never a partial
write), and rowgate recovers by itself when it comes back."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from schemas.config import Settings
from server.app import Rowgate
from server.demo import prepare_database, with_user_and_database
from server.embedded import EmbeddedPostgres
from server.errors import RowgateError
from server.identity import Principal

WHO = Principal(role="authenticated", claims={"sub": "00000000-0000-4000-a000-000000000001"})


@pytest.fixture
async def private_server() -> AsyncIterator[EmbeddedPostgres]:
    """A server of this test's own, so it can be stopped without disturbing the others."""
    root = Path(tempfile.mkdtemp(prefix="rg-outage-", dir="/tmp"))
    pg = EmbeddedPostgres(root, port=55441)
    await asyncio.to_thread(pg.start)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.force_stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_outage_is_fast_and_retryable_and_recovers(private_server: EmbeddedPostgres) -> None:
    pg = private_server
    await prepare_database(pg.dsn(), "outage", demo=False)
    owner = await asyncpg.connect(pg.dsn(database="outage"))
    await owner.execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);"
        " ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY everyone ON notes TO authenticated USING (true) WITH CHECK (true);"
        " GRANT SELECT, INSERT ON notes TO authenticated;"
        " INSERT INTO notes VALUES (1, 'before');"
    )
    await owner.close()
    settings = Settings(database_url=with_user_and_database(pg.dsn(), "authenticator", "outage"))
    app = await Rowgate.start(settings)
    try:
        assert (await app.call("select_rows", {"table": "notes"}, WHO)).model_dump()["rows"]

        await asyncio.to_thread(pg.force_stop)
        for tool, arguments in (
            ("select_rows", {"table": "notes"}),
            ("insert_rows", {"table": "notes", "rows": [{"id": 2}], "idempotency_key": "k"}),
        ):
            started = time.monotonic()
            with pytest.raises(RowgateError) as error:
                await app.call(tool, arguments, WHO)
            assert time.monotonic() - started < 10
            assert error.value.code == "database_unavailable" and error.value.retryable

        await asyncio.to_thread(pg.start)
        rows = (await app.call("select_rows", {"table": "notes"}, WHO)).model_dump()["rows"]
        assert rows == [{"id": 1, "body": "before"}]
    finally:
        await app.close()
