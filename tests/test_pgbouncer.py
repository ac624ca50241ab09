"""Behind a transaction-mode pooler (a real PgBouncer, pool_mode = transaction, ONE server
connection for every client): calls of different users interleave on one server connection
and each sees only its own rows, no role or claim survives a call, failures leave the server
connection clean, and nothing rowgate does depends on a prepared statement or a setting
outliving its transaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

import asyncpg
import pytest

from schemas.config import Limits, Settings
from server.app import Rowgate
from server.db import Database, _ports
from server.errors import RowgateError
from server.identity import Principal

ACME = "a0000000-0000-4000-8000-000000000001"
GLOBEX = "b0000000-0000-4000-8000-000000000002"
NOTE = "pgbouncer-test"
STATE_SQL = (
    "SELECT current_user, current_setting('request.jwt.claims', true) AS claims,"
    " current_setting('statement_timeout') AS statement_timeout,"
    " current_setting('transaction_read_only') AS read_only, pg_backend_pid() AS pid"
)


def pgbouncer_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH often lacks.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def upstream(admin_dsn: str) -> tuple[str, int]:
    """Host (a unix socket directory or an address) and port of the test server."""
    parts = urlsplit(admin_dsn)
    query = parse_qs(parts.query)
    host = query["host"][0] if "host" in query else unquote(parts.hostname or "localhost")
    port = int(query["port"][0]) if "port" in query else parts.port or 5432
    return host, port


@dataclass
class PgBouncer:
    """A pgbouncer of this module's own: transaction mode, one server connection."""

    admin_dsn: str
    database: str
    extra: str = ""  # more [pgbouncer] settings
    root: Path = field(init=False)
    port: int = field(init=False)
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def dsn(self, user: str = "authenticator") -> str:
        return f"postgresql://{quote(user)}@127.0.0.1:{self.port}/{quote(self.database)}"

    def start(self) -> None:
        binary = pgbouncer_binary()
        assert binary is not None
        host, port = upstream(self.admin_dsn)
        self.root = Path(tempfile.mkdtemp(prefix="rowgate-pgb-", dir="/tmp"))
        self.port = free_port()
        (self.root / "users.txt").write_text('"authenticator" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            f"[databases]\n"
            f"{self.database} = host={host} port={port} dbname={self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root}/users.txt\n"
            "pool_mode = transaction\n"
            # Every client shares one server connection: whatever a call leaves behind, the
            # next call of any user finds.
            "default_pool_size = 1\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_db_connections = 1\nmax_client_conn = 200\n"
            f"logfile = {self.root}/pgbouncer.log\n" + self.extra
        )
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:  # pgbouncer refuses root: run as whoever may use the socket
            owner = os.stat(host).st_uid if host.startswith("/") else pwd.getpwnam("nobody").pw_uid
            entry = pwd.getpwuid(owner)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [binary, str(self.root / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as,
        )
        for _ in range(200):
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start listening: {self.log()}")

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pgbouncer(admin_dsn: str, database: str) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer)")
    bouncer = PgBouncer(admin_dsn, database)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


def pooled_settings(dsn: str, *, pooler: bool = True, max_size: int = 4) -> Settings:
    return Settings(
        database_url=dsn,
        transaction_pooler=pooler,
        pool_min_size=1,
        pool_max_size=max_size,
        catalog_ttl_seconds=3600,
    )


@pytest.fixture(scope="module")
async def pooled(pgbouncer: PgBouncer) -> AsyncIterator[Rowgate]:
    app = await Rowgate.start(pooled_settings(pgbouncer.dsn()))
    yield app
    await app.close()


@pytest.fixture(scope="module")
async def raw(pgbouncer: PgBouncer) -> AsyncIterator[asyncpg.Connection]:
    """Another client of the same pgbouncer, so of the same one server connection."""
    conn = await asyncpg.connect(pgbouncer.dsn(), statement_cache_size=0)
    yield conn
    await conn.close()


@pytest.fixture(scope="module", autouse=True)
async def remove_test_orders(admin: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await admin.execute("DELETE FROM public.orders WHERE note LIKE $1", NOTE + "%")


async def rows(app: Rowgate, who: Principal, **arguments: Any) -> list[dict[str, Any]]:
    result = await app.call("select_rows", {"table": "orders", **arguments}, who)
    found: list[dict[str, Any]] = result.model_dump(mode="json")["rows"]
    return found


async def assert_clean(raw: asyncpg.Connection) -> int:
    """The shared server connection is back to the login role's own state."""
    state = await raw.fetchrow(STATE_SQL)
    assert state["current_user"] == "authenticator"
    assert not state["claims"]
    assert state["statement_timeout"] == "0"
    assert state["read_only"] == "off"
    pid: int = state["pid"]
    return pid


async def test_users_interleaved_on_one_server_connection_see_only_their_rows(
    pooled: Rowgate,
    raw: asyncpg.Connection,
    alice: Principal,
    bob: Principal,
    carol: Principal,
    dave: Principal,
) -> None:
    pid = await assert_clean(raw)
    who = [(alice, ACME), (carol, GLOBEX), (bob, ACME), (dave, GLOBEX)] * 5
    for _ in range(10):
        pages = await asyncio.gather(
            *(rows(pooled, p, columns=["id", "org_id"], limit=100) for p, _ in who)
        )
        for (principal, org), page in zip(who, pages, strict=True):
            assert page, principal.label
            assert {r["org_id"] for r in page} == {org}, principal.label
        assert await assert_clean(raw) == pid  # still the one and only server connection


async def test_no_role_or_claim_survives_a_call(
    pooled: Rowgate, raw: asyncpg.Connection, alice: Principal, carol: Principal
) -> None:
    for principal in (alice, carol, alice):
        await rows(pooled, principal, columns=["id"], limit=1)
        await assert_clean(raw)
        await pooled.call("list_tables", {}, principal)
        await assert_clean(raw)


async def test_typed_literals_in_filters_work_on_repeated_calls(
    pooled: Rowgate, raw: asyncpg.Connection, alice: Principal, carol: Principal, admin: Any
) -> None:
    # Quoted literals read as timestamptz / numeric: the parameter types are learned by a
    # prepare (inside a savepoint) and the literals checked by a statement of their own.
    pooled.db.binder.clear()
    where = (
        "created_at > '2000-01-01' AND total > '10' AND status IN ('open', 'paid', 'a\\b')"
        " AND id < 400"
    )
    expected = {
        org: await admin.fetchval(
            "SELECT count(*) FROM public.orders WHERE org_id = $1 AND total > 10"
            " AND status IN ('open', 'paid') AND id < 400",
            org,
        )
        for org in (ACME, GLOBEX)
    }
    assert 0 < expected[ACME] < 500 and 0 < expected[GLOBEX] < 500
    for _ in range(5):
        a, c = await asyncio.gather(
            rows(pooled, alice, where=where, columns=["org_id", "total"], limit=500),
            rows(pooled, carol, where=where, columns=["org_id", "total"], limit=500),
        )
        assert len(a) == expected[ACME] and len(c) == expected[GLOBEX]
        assert {r["org_id"] for r in a} == {ACME} and {r["org_id"] for r in c} == {GLOBEX}
        assert all(float(r["total"]) > 10 for r in a + c)
        await assert_clean(raw)


async def test_writes_with_idempotency_keys(
    pooled: Rowgate, raw: asyncpg.Connection, bob: Principal, dave: Principal, admin: Any
) -> None:
    customers = {
        org: await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", org)
        for org in (ACME, GLOBEX)
    }

    async def insert(who: Principal, org: str, key: str) -> dict[str, Any]:
        row = {"customer_id": customers[org], "status": "draft", "total": 3, "note": NOTE}
        arguments = {"table": "orders", "rows": [row], "returning": ["id", "org_id"]}
        result = await pooled.call("insert_rows", {**arguments, "idempotency_key": key}, who)
        return result.model_dump(mode="json")

    calls = [(bob, ACME, str(uuid.uuid4())), (dave, GLOBEX, str(uuid.uuid4()))] * 2
    first = await asyncio.gather(*(insert(*call) for call in calls))  # each key twice at once
    again = await asyncio.gather(*(insert(*call) for call in calls))
    for i, (_, org, _) in enumerate(calls[:2]):
        pair = (first[i], first[i + 2])
        assert sorted(r["replayed"] for r in pair) == [False, True]  # one write, one replay
        assert pair[0]["rows"] == pair[1]["rows"] and pair[0]["rows"][0]["org_id"] == org
        assert again[i]["replayed"] and again[i]["rows"] == pair[0]["rows"]
    ids = {r["rows"][0]["id"] for r in first + again}
    assert len(ids) == 2
    assert (
        await admin.fetchval("SELECT count(*) FROM public.orders WHERE id = ANY($1)", list(ids))
        == 2
    )
    await assert_clean(raw)


async def test_a_failed_call_leaves_the_server_connection_clean(
    pooled: Rowgate, raw: asyncpg.Connection, bob: Principal, carol: Principal, admin: Any
) -> None:
    acme_customer = await admin.fetchval(
        "SELECT min(id) FROM public.customers WHERE org_id = $1", ACME
    )
    failing: list[tuple[str, dict[str, Any]]] = [
        ("select_rows", {"table": "orders", "where": "total > 'abc'"}),
        ("select_rows", {"table": "orders", "where": "created_at > 'yesterday-ish'"}),
        ("select_rows", {"table": "orders", "where": "id / 0 = 1"}),
        (
            "insert_rows",
            {
                "table": "orders",
                "rows": [{"org_id": GLOBEX, "customer_id": acme_customer, "note": NOTE}],
                "idempotency_key": str(uuid.uuid4()),
            },
        ),
    ]
    for tool, arguments in failing:
        with pytest.raises(RowgateError):
            await pooled.call(tool, arguments, bob)
        await assert_clean(raw)
        page = await rows(pooled, carol, columns=["org_id"], limit=50)
        assert {r["org_id"] for r in page} == {GLOBEX}


async def test_another_clients_session_settings_do_not_reach_a_call(
    pooled: Rowgate, raw: asyncpg.Connection, alice: Principal
) -> None:
    """A client of the same pooler that changes session settings changes them for the one
    server connection: rowgate's calls set what they rely on in their own transaction."""
    claims = {**alice.claims, "note": "it\\'s \\\\ a 'quoted' \\u00e9 claim \\"}
    quoted = Principal(role=alice.role, claims=claims)
    await raw.execute(
        "SET standard_conforming_strings = off; SET TimeZone = 'Pacific/Kiritimati';"
        " SET idle_in_transaction_session_timeout = 0"
    )
    try:

        async def work(conn: asyncpg.Connection) -> Any:
            return await conn.fetchrow(
                "SELECT current_setting('request.jwt.claims') AS claims,"
                " current_setting('standard_conforming_strings') AS scs,"
                " current_setting('TimeZone') AS tz,"
                " current_setting('idle_in_transaction_session_timeout') AS idle,"
                " '2024-01-01'::timestamptz = '2024-01-01 00:00:00+00' AS utc,"
                " length('a\\b') AS backslash"
            )

        seen = await pooled.db.run(quoted, work, read_only=True)
        assert json.loads(seen["claims"]) == claims
        assert (seen["scs"], seen["tz"], seen["idle"]) == ("on", "UTC", "30s")
        assert seen["utc"] and seen["backslash"] == 3
        # The rendered literal of an IN list is read with standard_conforming_strings on.
        assert await rows(pooled, alice, where="note IN ('x\\', 'y')", columns=["id"]) == []
    finally:
        await raw.execute("RESET ALL")


async def test_the_begin_message_reads_back_exactly_whatever_standard_conforming_strings(
    login_dsn: str, alice: Principal
) -> None:
    """A simple-query message is lexed as a whole before its first statement runs: a SET in
    it cannot change how its literals read, so the literals do not depend on the setting."""
    claims = {**alice.claims, "x": "\\' OR true; --", "y": "\\\\", "z": "'"}
    principal = Principal(role=alice.role, claims=claims)
    conn = await asyncpg.connect(login_dsn)
    try:
        for pooler in (False, True):
            db = Database(cast(asyncpg.Pool, None), Limits(), transaction_pooler=pooler)
            for scs in ("off", "on"):
                await conn.execute(f"SET standard_conforming_strings = {scs}")
                await conn.execute(db._begin(principal, read_only=True))
                try:
                    got = await conn.fetchval("SELECT current_setting('request.jwt.claims')")
                    role = await conn.fetchval("SELECT current_user")
                finally:
                    await conn.execute("ROLLBACK")
                assert json.loads(got) == claims and role == alice.role
    finally:
        await conn.close()


async def server_pid(raw: asyncpg.Connection) -> int:
    pid: int = await raw.fetchval("SELECT pg_backend_pid()")
    return pid


async def replace_server_connection(raw: asyncpg.Connection, admin: Any) -> None:
    """Ends pgbouncer's server connection; its next transaction gets a new one."""
    old = await server_pid(raw)
    await admin.execute("SELECT pg_terminate_backend($1, 5000)", old)
    for _ in range(100):
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if await server_pid(raw) != old:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("pgbouncer did not open a new server connection")


async def test_calls_work_when_the_pooler_changes_server_connection(
    pooled: Rowgate, raw: asyncpg.Connection, bob: Principal, admin: Any
) -> None:
    where = "total > '10' AND created_at > '2000-01-01'"
    before = await rows(pooled, bob, where=where, columns=["id"], limit=20)
    await replace_server_connection(raw, admin)
    for _ in range(3):
        assert await rows(pooled, bob, where=where, columns=["id"], limit=20) == before


async def test_without_the_setting_pgbouncer_refuses_the_connection(
    pgbouncer: PgBouncer,
) -> None:
    with pytest.raises(RowgateError, match="ROWGATE_TRANSACTION_POOLER=true"):
        await Rowgate.start(pooled_settings(pgbouncer.dsn(), pooler=False))


async def test_without_the_setting_a_call_fails_once_the_server_connection_changes(
    admin_dsn: str,
    database: str,
    bob: Principal,
    admin: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the setting protects against, with the usual workaround for the refused
    connection in place: asyncpg's cached named statements stay on the server connection
    that prepared them."""
    bouncer = PgBouncer(
        admin_dsn, database, "ignore_startup_parameters = idle_in_transaction_session_timeout\n"
    )
    await asyncio.to_thread(bouncer.start)
    try:
        app = await Rowgate.start(pooled_settings(bouncer.dsn(), pooler=False, max_size=1))
        raw = await asyncpg.connect(bouncer.dsn(), statement_cache_size=0)
        try:
            await rows(app, bob, columns=["id"], limit=1)
            await replace_server_connection(raw, admin)
            with caplog.at_level(logging.WARNING, "rowgate"), pytest.raises(RowgateError):
                await rows(app, bob, columns=["id"], limit=1)
            assert "ROWGATE_TRANSACTION_POOLER=true" in caplog.text
        finally:
            await raw.close()
            await app.close()
    finally:
        await asyncio.to_thread(bouncer.stop)


@dataclass
class RoundTrips:
    """A TCP proxy that counts round trips: each time a client speaks after the server has
    answered (or first), one more."""

    host: str
    port: int
    count: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.host.startswith("/"):
            up_reader, up_writer = await asyncio.open_unix_connection(
                f"{self.host}/.s.PGSQL.{self.port}"
            )
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        turn = ["server"]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, side: str) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if side == "client" and turn[0] == "server":
                        self.count += 1
                    turn[0] = side
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, "client"), pump(up_reader, writer, "server"))


async def round_trips(app: Rowgate, proxy: RoundTrips, call: Any) -> int:
    await call(app)
    await call(app)  # warm: grants, parameter types
    proxy.count = 0
    await call(app)
    return proxy.count


async def test_round_trips_per_call(
    pgbouncer: PgBouncer, admin_dsn: str, database: str, bob: Principal, admin: Any
) -> None:
    customer = await admin.fetchval("SELECT min(id) FROM public.customers WHERE org_id = $1", ACME)
    calls = {
        "read": lambda app: rows(app, bob, columns=["id"], limit=5),
        "read, typed literal": lambda app: rows(app, bob, where="total > '10'", limit=5),
        "insert": lambda app: app.call(
            "insert_rows",
            {
                "table": "orders",
                "rows": [{"customer_id": customer, "note": NOTE}],
                "idempotency_key": str(uuid.uuid4()),
            },
            bob,
        ),
    }
    counts: dict[str, dict[str, int]] = {}
    for mode, (host, port) in {
        "direct": upstream(admin_dsn),
        "pooler": ("127.0.0.1", pgbouncer.port),
    }.items():
        proxy = RoundTrips(host, port)
        dsn = f"postgresql://authenticator@127.0.0.1:{await proxy.start()}/{database}"
        app = await Rowgate.start(pooled_settings(dsn, pooler=mode == "pooler", max_size=1))
        try:
            counts[mode] = {name: await round_trips(app, proxy, c) for name, c in calls.items()}
        finally:
            await app.close()
            await proxy.close()
    # Behind the pooler each statement sent with parameters costs one more round trip:
    # asyncpg describes an unnamed statement, then parses it again with its Bind.
    assert counts == {
        "direct": {"read": 3, "read, typed literal": 4, "insert": 5},
        "pooler": {"read": 4, "read, typed literal": 6, "insert": 8},
    }


def test_ports_named_by_a_dsn() -> None:
    assert _ports("postgresql://u:p@db.example.com:6543/postgres") == {6543}
    assert _ports("postgresql://u@h1:5432,h2:6543/db") == {5432, 6543}
    assert _ports("postgresql://u@/db?host=/run/postgresql&port=6543") == {6543}
    assert _ports("postgresql://u@[::1]:6432/db") == {6432}
    assert 6543 not in _ports("postgresql://u@[::1]/db")


async def test_supavisor_transaction_port_without_the_setting_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there: the warning comes before connecting
    with caplog.at_level(logging.WARNING, "rowgate"), pytest.raises(OSError):
        await Database.connect(
            f"postgresql://authenticator@127.0.0.1:{port}/db?port=6543&host=127.0.0.1",
            Limits(),
            min_size=1,
            max_size=1,
        )
    assert "ROWGATE_TRANSACTION_POOLER" in caplog.text
