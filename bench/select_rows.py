"""Per-call latency of select_rows, against the floor under it, in-process, over stdio and
over Streamable HTTP with a bearer token verified on every call.

    python -m bench.select_rows [--calls N] [--http-calls N] [--warmup N] [--rounds N]
                                [--sessions N] [--no-mcp-client] [--profile]

Two workloads (a point lookup by id, a 50-row list), each over these paths; the paths of a
workload are measured interleaved, in rounds, so a noisy neighbour slows all paths alike:

  raw asyncpg     the plain SELECT with bind parameters on an admin connection (no RLS;
                  the list adds the org filter RLS would add, so both return the same rows)
  role tx         on an `authenticator` connection: BEGIN + set_config(role, claims) in one
                  message, the same SELECT (RLS applies), COMMIT: the minimum any per-user
                  server must do
  rowgate in-process   Rowgate.call("select_rows", ...), pool of one connection
  rowgate stdio        a real MCP client driving `python -m server serve` over stdio
  rowgate http         a real `python -m server serve --transport http` process, trusting a
                       local issuer (bench/issuer.py: RFC 8414 metadata + JWKS, ES256); the
                       client writes HTTP/1.1 by hand (bench/http_server.py: the cheapest
                       client, so the latency is mostly the server's), POSTing JSON-RPC
                       tools/call with a bearer token: every call is authenticated (a token
                       seen before is a cache hit in the verifier, as in production)
  rowgate http, new token/call   a different token on every call: the full ES256
                       signature check, every time
  rowgate http, httpx2 client    the same call through httpx2.AsyncClient
  rowgate http, mcp.Client ...   the real MCP Python client over Streamable HTTP, handshake
                       (legacy: 2025-11-25) and stateless (auto: 2026-07-28) modes

raw asyncpg, role tx and rowgate http also run with --sessions (default 8) connections /
client sessions at once: throughput in calls/s, and latency under that load. The server's
CPU per call (all its threads, from /proc) is reported for the stdio and HTTP servers; the
client CPU column is this process' main thread (for in-process, that is rowgate itself).

Uses the embedded PostgreSQL (ROWGATE_EMBEDDED_DIR, else the default data dir), or the
server behind BENCH_DATABASE_URL (an admin DSN), with the demo database as demo user bob.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import asyncpg
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.http_server import (
    JsonRpcClient,
    RawHttpClient,
    ServerProcess,
    child_pids,
    cmdline,
    cpu_seconds,
)
from bench.issuer import DocumentServer, SigningKey, serve_documents
from schemas.config import Settings
from server.app import Rowgate
from server.db import sql_literal
from server.demo import DEMO_DATABASE, demo_users, prepare_database, with_user_and_database
from server.embedded import EmbeddedPostgres
from server.identity import Principal

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "id, org_id, customer_id, created_by, status, total, created_at, note"
LIST_LIMIT = 50
DB_CALLS = 2000
STDIO_CALLS = 1000
HTTP_CALLS = 1000
MCP_CLIENT_CALLS = 300
WARMUP = 200
ROUNDS = 10
SESSIONS = 8
HTTP_SCOPE = "db:read"

# One call of a path: the call's index in, anything out (checked on the first call only).
CallFn = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    arguments: Callable[[int], dict[str, Any]]  # select_rows arguments for call i
    raw_sql: str  # the plain query, admin connection (no RLS)
    raw_args: Callable[[int], tuple[Any, ...]]
    rls_sql: str  # the same query for the role transaction (RLS does the org filter)
    rls_args: Callable[[int], tuple[Any, ...]]
    expected_rows: int


@dataclass(frozen=True, slots=True)
class Measurement:
    workload: str
    path: str
    sessions: int
    calls: int
    median_us: float
    p95_us: float
    per_second: float
    server_cpu_us: float | None  # per call, the server process (stdio, HTTP)
    client_cpu_us: float  # per call, this process' main thread


def _workloads(ids: list[int], org_id: Any) -> list[Workload]:
    def point_id(i: int) -> int:
        return ids[i % len(ids)]

    return [
        Workload(
            name="point lookup",
            arguments=lambda i: {"table": "orders", "where": f"id = {point_id(i)}"},
            raw_sql=f"SELECT {COLUMNS} FROM public.orders WHERE id = $1",
            raw_args=lambda i: (point_id(i),),
            rls_sql=f"SELECT {COLUMNS} FROM public.orders WHERE id = $1",
            rls_args=lambda i: (point_id(i),),
            expected_rows=1,
        ),
        Workload(
            name="50-row list",
            arguments=lambda i: {
                "table": "orders",
                "where": "status = 'open'",
                "order_by": "created_at desc",
                "limit": LIST_LIMIT,
            },
            raw_sql=(
                f"SELECT {COLUMNS} FROM public.orders WHERE status = $1 AND org_id = $2"
                f" ORDER BY created_at DESC, id LIMIT {LIST_LIMIT}"
            ),
            raw_args=lambda i: ("open", org_id),
            rls_sql=(
                f"SELECT {COLUMNS} FROM public.orders WHERE status = $1"
                f" ORDER BY created_at DESC, id LIMIT {LIST_LIMIT}"
            ),
            rls_args=lambda i: ("open",),
            expected_rows=LIST_LIMIT,
        ),
    ]


def _begin_as(principal: Principal) -> str:
    return (
        "BEGIN READ ONLY; SELECT set_config('role', " + sql_literal(principal.role) + ", true),"
        " set_config('request.jwt.claims', " + sql_literal(principal.claims_json) + ", true)"
    )


async def _as_principal(conn: asyncpg.Connection, begin: str, sql: str, *args: Any) -> list[Any]:
    await conn.execute(begin)
    try:
        rows: list[Any] = await conn.fetch(sql, *args)
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return rows


async def _visible(conn: asyncpg.Connection, principal: Principal) -> tuple[list[int], Any]:
    """A shuffled sample of the order ids the principal sees, and their org id."""
    begin = _begin_as(principal)
    rows = await _as_principal(conn, begin, "SELECT id, org_id FROM public.orders ORDER BY id")
    orgs = {r["org_id"] for r in rows}
    if not rows or len(orgs) != 1:
        raise SystemExit(f"expected bob to see orders of exactly one org, got {len(orgs)}")
    ids = [r["id"] for r in rows]
    random.Random(0).shuffle(ids)
    return ids[:5000], orgs.pop()


def _count_rows(result: Any) -> int:
    """Rows in whatever a path returned: records, a Result, a CallToolResult, JSON-RPC."""
    if isinstance(result, list):
        return len(result)
    if isinstance(result, dict):  # a tools/call result as JSON (errors were raised already)
        return int(result["structuredContent"]["row_count"])
    if hasattr(result, "is_error"):
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise SystemExit(f"tool call failed over MCP: {text}")
        return int((result.structured_content or {})["row_count"])
    return int(result.row_count)


@dataclass(frozen=True, slots=True)
class BenchPath:
    """One way to make the call; with several sessions, they share the calls of a round
    (each takes the next index when it is free), so the round measures throughput too."""

    name: str
    sessions: tuple[CallFn, ...]
    calls: int
    server_pid: int | None = None


async def _drive(sessions: tuple[CallFn, ...], indices: range, samples: list[int]) -> None:
    clock = time.perf_counter_ns
    if len(sessions) == 1:
        call = sessions[0]
        for i in indices:
            t0 = clock()
            await call(i)
            samples.append(clock() - t0)
        return
    pending = iter(indices)

    async def worker(call: CallFn) -> None:
        for i in pending:
            t0 = clock()
            await call(i)
            samples.append(clock() - t0)

    await asyncio.gather(*(worker(call) for call in sessions))


async def _measure(
    workload: Workload, paths: list[BenchPath], *, warmup: int, rounds: int
) -> list[Measurement]:
    """Warm every path up, then measure them round-robin in `rounds` chunks."""
    for path in paths:
        for call in path.sessions:
            got = _count_rows(await call(0))
            if got != workload.expected_rows:
                raise SystemExit(
                    f"{workload.name} via {path.name}: {got} rows, not {workload.expected_rows}"
                )
        await _drive(path.sessions, range(1, max(warmup, 2 * len(path.sessions))), [])
    samples: dict[str, list[int]] = {path.name: [] for path in paths}
    elapsed = dict.fromkeys(samples, 0)
    server_cpu = dict.fromkeys(samples, 0.0)
    client_cpu = dict.fromkeys(samples, 0.0)
    for r in range(rounds):
        for path in paths:
            chunk = range(
                warmup + path.calls * r // rounds, warmup + path.calls * (r + 1) // rounds
            )
            cpu0 = cpu_seconds(path.server_pid) if path.server_pid else 0.0
            own0 = time.thread_time()
            started = time.perf_counter_ns()
            await _drive(path.sessions, chunk, samples[path.name])
            elapsed[path.name] += time.perf_counter_ns() - started
            client_cpu[path.name] += time.thread_time() - own0
            if path.server_pid:
                server_cpu[path.name] += cpu_seconds(path.server_pid) - cpu0
    results = []
    for path in paths:
        own = samples[path.name]
        p95 = statistics.quantiles(own, n=20, method="inclusive")[18] if len(own) > 1 else own[0]
        results.append(
            Measurement(
                workload=workload.name,
                path=path.name,
                sessions=len(path.sessions),
                calls=len(own),
                median_us=statistics.median(own) / 1000,
                p95_us=p95 / 1000,
                per_second=len(own) / (elapsed[path.name] / 1e9),
                server_cpu_us=server_cpu[path.name] * 1e6 / len(own) if path.server_pid else None,
                client_cpu_us=client_cpu[path.name] * 1e6 / len(own),
            )
        )
    return results


@contextmanager
def _devnull() -> Iterator[TextIO]:
    with open(os.devnull, "w") as sink:
        yield sink


def _stdio_client(login_dsn: str, principal: Principal, errlog: TextIO) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve"],
        env={
            "DATABASE_URL": login_dsn,
            "ROWGATE_ROLE": principal.role,
            "ROWGATE_CLAIMS": principal.claims_json,
        },
        cwd=str(PROJECT_ROOT),
    )
    return Client(stdio_client(params, errlog=errlog))


def _stdio_server_pid() -> int | None:
    """The `python -m server serve` the stdio client spawned (a child of this process)."""
    for pid in child_pids():
        argv = cmdline(pid)
        if argv[-3:] == ["-m", "server", "serve"]:
            return pid
    return None


@dataclass
class HttpRig:
    """The HTTP side of a run: the issuer, the server process, a token for the user."""

    issuer: DocumentServer
    key: SigningKey
    server: ServerProcess
    who: Principal
    token: str

    def mint(self) -> str:
        return self.key.token(
            issuer=self.issuer.issuer,
            audience=self.server.url,
            claims=self.who.claims,
            scope=HTTP_SCOPE,
        )

    def mcp_client(self, mode: Literal["legacy", "auto"]) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0)
        transport = streamable_http_client(self.server.url, http_client=http)
        return Client(transport, mode=mode, cache=None)


async def _start_http(
    stack: AsyncExitStack, login_dsn: str, who: Principal, *, profiled: str | None = None
) -> HttpRig:
    key = SigningKey()
    issuer = serve_documents(key.jwks)
    stack.callback(issuer.stop)
    env = {
        "DATABASE_URL": login_dsn,
        "ROWGATE_AUTH_ISSUER": issuer.issuer,
        "ROWGATE_AUTH_ALGORITHMS": "ES256",
        "ROWGATE_AUTH_ALLOWED_ROLES": who.role,
    }
    prefix = ("-m", "bench.profiled_server", profiled) if profiled else ("-m", "server")
    server = ServerProcess(env, prefix=prefix)
    await asyncio.to_thread(server.start)
    stack.callback(server.stop)
    rig = HttpRig(issuer, key, server, who, "")
    rig.token = rig.mint()
    return rig


async def run(admin_dsn: str, args: argparse.Namespace) -> list[Measurement]:
    await prepare_database(admin_dsn, DEMO_DATABASE, demo=True)
    admin_demo = with_user_and_database(admin_dsn, _user_of(admin_dsn), DEMO_DATABASE)
    login_dsn = with_user_and_database(admin_dsn, "authenticator", DEMO_DATABASE)
    bob = demo_users()["bob"].principal
    begin = _begin_as(bob)
    db_calls = args.calls or DB_CALLS
    stdio_calls = args.calls or STDIO_CALLS
    http_calls = args.http_calls or args.calls or HTTP_CALLS
    mcp_calls = args.mcp_calls or MCP_CLIENT_CALLS
    n = args.sessions

    results: list[Measurement] = []
    async with AsyncExitStack() as stack:

        async def connect(dsn: str) -> asyncpg.Connection:
            conn = await asyncpg.connect(dsn)
            stack.push_async_callback(conn.close)
            return conn

        raw_conns = [await connect(admin_demo) for _ in range(max(n, 1))]
        role_conns = [await connect(login_dsn) for _ in range(max(n, 1))]
        settings = Settings(database_url=login_dsn, pool_min_size=1, pool_max_size=1)
        rg = await Rowgate.start(settings)
        stack.push_async_callback(rg.close)
        sink = stack.enter_context(_devnull())
        stdio = await stack.enter_async_context(_stdio_client(login_dsn, bob, sink))
        stdio_pid = _stdio_server_pid()
        http = await _start_http(stack, login_dsn, bob)
        print(f"rowgate HTTP server: pid {http.server.pid} at {http.server.url}", file=sys.stderr)
        rpcs = [RawHttpClient(http.server.url, http.token) for _ in range(max(n, 1))]
        for rpc in rpcs:
            stack.push_async_callback(rpc.aclose)
        httpx_client = JsonRpcClient(http.server.url, http.token)
        stack.push_async_callback(httpx_client.aclose)
        mcp_clients: dict[str, Client] = {}
        if not args.no_mcp_client:
            modes: tuple[Literal["legacy", "auto"], ...] = ("legacy", "auto")
            for mode in modes:
                mcp_clients[mode] = await stack.enter_async_context(http.mcp_client(mode))

        ids, org_id = await _visible(role_conns[0], bob)
        workloads = _workloads(ids, org_id)
        for w in workloads:
            # Never seen by the server: each call of "new token/call" pays the full check.
            fresh_tokens = [http.mint() for _ in range(args.warmup + http_calls + 2)]

            def raw(conn: asyncpg.Connection, w: Workload = w) -> CallFn:
                async def call(i: int) -> list[Any]:
                    rows: list[Any] = await conn.fetch(w.raw_sql, *w.raw_args(i))
                    return rows

                return call

            def role_tx(conn: asyncpg.Connection, w: Workload = w) -> CallFn:
                async def call(i: int) -> list[Any]:
                    return await _as_principal(conn, begin, w.rls_sql, *w.rls_args(i))

                return call

            def over_http(rpc: RawHttpClient | JsonRpcClient, w: Workload = w) -> CallFn:
                async def call(i: int) -> dict[str, Any]:
                    return await rpc.call_tool(i, "select_rows", w.arguments(i))

                return call

            def mcp_call(client: Client, w: Workload = w) -> CallFn:
                async def call(i: int) -> Any:
                    return await client.call_tool("select_rows", w.arguments(i))

                return call

            async def in_process(i: int, w: Workload = w) -> Any:
                return await rg.call("select_rows", w.arguments(i), bob)

            async def new_token(
                i: int, w: Workload = w, fresh_tokens: list[str] = fresh_tokens
            ) -> dict[str, Any]:
                token = fresh_tokens[i % len(fresh_tokens)]
                return await rpcs[0].call_tool(i, "select_rows", w.arguments(i), token=token)

            hp = http.server.pid
            paths = [
                BenchPath("raw asyncpg", (raw(raw_conns[0]),), db_calls),
                BenchPath("asyncpg + role tx", (role_tx(role_conns[0]),), db_calls),
                BenchPath("rowgate in-process", (in_process,), db_calls),
                BenchPath("rowgate stdio", (mcp_call(stdio),), stdio_calls, stdio_pid),
                BenchPath("rowgate http", (over_http(rpcs[0]),), http_calls, hp),
                BenchPath("rowgate http, new token/call", (new_token,), http_calls, hp),
                BenchPath(
                    "rowgate http, httpx2 client", (over_http(httpx_client),), http_calls, hp
                ),
            ]
            for label, client in mcp_clients.items():
                name = f"rowgate http, mcp.Client {label}"
                paths.append(BenchPath(name, (mcp_call(client),), mcp_calls, hp))
            if n > 1:
                paths += [
                    BenchPath("raw asyncpg", tuple(raw(c) for c in raw_conns), db_calls),
                    BenchPath("asyncpg + role tx", tuple(role_tx(c) for c in role_conns), db_calls),
                    BenchPath(
                        "rowgate http", tuple(over_http(r) for r in rpcs), http_calls * 2, hp
                    ),
                ]
            paths = [_named(p) for p in paths]
            results += await _measure(w, paths, warmup=args.warmup, rounds=args.rounds)
            if http.issuer.requests == 0:
                raise SystemExit(
                    "rowgate never fetched the issuer's keys: tokens were not verified"
                )

        if args.profile:
            for w in workloads:
                await _profile(rg, bob, w, db_calls)
    if args.profile:
        await _profile_http(login_dsn, bob, workloads, args.warmup, http_calls)
    return results


def _named(path: BenchPath) -> BenchPath:
    """Measurements are keyed by name: a path with several sessions says how many."""
    if len(path.sessions) == 1:
        return path
    return BenchPath(
        f"{path.name} x{len(path.sessions)}", path.sessions, path.calls, path.server_pid
    )


async def _profile(rg: Rowgate, who: Principal, workload: Workload, calls: int) -> None:
    """cProfile (CPU-time clock) of `calls` in-process calls (stderr)."""
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for i in range(calls):
        await rg.call("select_rows", workload.arguments(i), who)
    profiler.disable()
    _print_stats(profiler, f"{calls} x {workload.name}, in-process")


async def _profile_http(
    login_dsn: str, who: Principal, workloads: list[Workload], warmup: int, calls: int
) -> None:
    """cProfile inside a second HTTP server process (bench/profiled_server.py), switched on
    by SIGUSR1 after the warm-up and off by SIGUSR2, around `calls` sequential calls."""
    with tempfile.TemporaryDirectory(prefix="rowgate-bench-prof-") as tmp:
        out = Path(tmp) / "server.prof"
        async with AsyncExitStack() as stack:
            http = await _start_http(stack, login_dsn, who, profiled=str(out))
            rpc = RawHttpClient(http.server.url, http.token)
            stack.push_async_callback(rpc.aclose)
            for w in workloads:
                for i in range(warmup):
                    await rpc.call_tool(i, "select_rows", w.arguments(i))
                out.unlink(missing_ok=True)
                http.server.signal(signal.SIGUSR1)
                await asyncio.sleep(0.2)
                cpu0 = cpu_seconds(http.server.pid)
                t0 = time.perf_counter()
                for i in range(calls):
                    await rpc.call_tool(i, "select_rows", w.arguments(i))
                wall = time.perf_counter() - t0
                cpu = cpu_seconds(http.server.pid) - cpu0
                http.server.signal(signal.SIGUSR2)
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    if out.is_file() and out.stat().st_size > 0:
                        await asyncio.sleep(0.2)
                        break
                title = (
                    f"{calls} x {w.name}, HTTP server process (profiled: "
                    f"{wall * 1e6 / calls:.0f} µs/call wall, {cpu * 1e6 / calls:.0f} µs/call "
                    "server CPU)"
                )
                _print_stats(str(out), title)


def _print_stats(source: cProfile.Profile | str, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(source, stream=out)
    stats.sort_stats("cumulative").print_stats(r"server/|sqlglot|uvicorn|h11|starlette|auth", 25)
    stats.sort_stats("tottime").print_stats(25)
    print(f"--- cProfile: {title} ---", file=sys.stderr)
    print(out.getvalue(), file=sys.stderr)


def _user_of(dsn: str) -> str:
    return urlsplit(dsn).username or "postgres"


def report(results: list[Measurement]) -> str:
    base = {(m.workload, m.path): m for m in results}
    header = (
        f"{'workload':<13} {'path':<33} {'sess':>4} {'calls':>6} {'median µs':>9} "
        f"{'p95 µs':>7} {'calls/s':>7} {'x raw':>6} {'x role tx':>9} {'srv CPU µs':>10} "
        f"{'cli CPU µs':>10}"
    )
    lines = [header, "-" * len(header)]
    workloads = list(dict.fromkeys(m.workload for m in results))
    for workload in workloads:
        for m in (m for m in results if m.workload == workload):
            suffix = f" x{m.sessions}" if m.sessions > 1 else ""
            raw = base[(workload, "raw asyncpg" + suffix)].median_us
            tx = base[(workload, "asyncpg + role tx" + suffix)].median_us
            srv = f"{m.server_cpu_us:.0f}" if m.server_cpu_us is not None else "-"
            lines.append(
                f"{m.workload:<13} {m.path:<33} {m.sessions:>4} {m.calls:>6} "
                f"{m.median_us:>9.0f} {m.p95_us:>7.0f} {m.per_second:>7.0f} "
                f"{m.median_us / raw:>6.2f} {m.median_us / tx:>9.2f} {srv:>10} "
                f"{m.client_cpu_us:>10.0f}"
            )
        lines.append("")
    lines.append(
        "x raw / x role tx: median over the same-concurrency baseline. srv CPU: the stdio or "
        "HTTP server process per call; cli CPU: this process' main thread per call."
    )
    for workload in workloads:

        def get(path: str, workload: str = workload) -> Measurement | None:
            return base.get((workload, path))

        floor, inproc = get("asyncpg + role tx"), get("rowgate in-process")
        assert floor is not None and inproc is not None
        parts = [f"rowgate {inproc.median_us - floor.median_us:.0f} µs over the role tx"]
        stdio, http, fresh = (
            get("rowgate stdio"),
            get("rowgate http"),
            get("rowgate http, new token/call"),
        )
        if stdio is not None:
            parts.append(f"stdio +{stdio.median_us - inproc.median_us:.0f} µs")
        if http is not None:
            parts.append(f"HTTP +{http.median_us - inproc.median_us:.0f} µs over in-process")
        if http is not None and fresh is not None:
            assert http.server_cpu_us is not None and fresh.server_cpu_us is not None
            parts.append(
                f"a new token +{fresh.median_us - http.median_us:.0f} µs "
                f"(+{fresh.server_cpu_us - http.server_cpu_us:.0f} µs server CPU)"
            )
        lines.append(f"{workload}: " + ", ".join(parts))
        conc = [m for m in results if m.workload == workload and m.sessions > 1]
        if conc:
            by = {m.path.rsplit(" x", 1)[0]: m for m in conc}
            hx, rx, tx8 = by.get("rowgate http"), by.get("raw asyncpg"), by.get("asyncpg + role tx")
            if hx is not None and rx is not None and tx8 is not None:
                ceiling = ""
                if hx.server_cpu_us:
                    ceiling = (
                        f"; 1 core / server CPU per call = {1e6 / hx.server_cpu_us:.0f} calls/s"
                    )
                lines.append(
                    f"{workload} x{hx.sessions}: rowgate http {hx.per_second:.0f} calls/s = "
                    f"{hx.per_second / rx.per_second:.2f} of raw asyncpg ({rx.per_second:.0f}), "
                    f"{hx.per_second / tx8.per_second:.2f} of the role tx "
                    f"({tx8.per_second:.0f}){ceiling}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.select_rows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help=f"measured calls per path (default {DB_CALLS}, {STDIO_CALLS} over stdio)",
    )
    parser.add_argument(
        "--http-calls",
        type=int,
        default=None,
        help=f"measured calls per HTTP path (default --calls, else {HTTP_CALLS}; twice that "
        "with --sessions)",
    )
    parser.add_argument(
        "--mcp-calls",
        type=int,
        default=None,
        help=f"measured calls per mcp.Client HTTP path (default {MCP_CLIENT_CALLS})",
    )
    parser.add_argument("--warmup", type=int, default=WARMUP, help="warm-up calls per path")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="measure the paths interleaved in N chunks"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=SESSIONS,
        help=f"concurrent connections / HTTP sessions for the throughput paths (default "
        f"{SESSIONS}; 1 = none)",
    )
    parser.add_argument(
        "--no-mcp-client", action="store_true", help="skip the mcp.Client HTTP paths"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the in-process path and the HTTP server process (to stderr)",
    )
    args = parser.parse_args(argv)
    counts = (args.calls, args.http_calls, args.mcp_calls)
    if any(c is not None and c < 1 for c in counts) or args.warmup < 1 or args.rounds < 1:
        parser.error("--calls, --http-calls, --mcp-calls, --warmup and --rounds must be >= 1")
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    logging.getLogger("rowgate.audit").setLevel(logging.WARNING)

    admin_dsn = os.environ.get("BENCH_DATABASE_URL")
    if admin_dsn:
        results = asyncio.run(run(admin_dsn, args))
    else:
        root = os.environ.get("ROWGATE_EMBEDDED_DIR")
        pg = EmbeddedPostgres(Path(root) if root else None)
        pg.start()
        try:
            results = asyncio.run(run(pg.dsn(), args))
        finally:
            pg.stop()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
