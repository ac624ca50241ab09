"""Per-call latency of select_rows, against the floor under it.

    python -m bench.select_rows [--calls N] [--warmup N] [--rounds N] [--profile]

Two workloads (a point lookup by id, a 50-row list), each over four paths, all sequential
(one call in flight); the paths of a workload are measured interleaved, in rounds:

  raw asyncpg     the plain SELECT with bind parameters on one admin connection (no RLS;
                  the list adds the org filter RLS would add, so both return the same rows)
  role tx         on one `authenticator` connection: BEGIN + set_config(role, claims) in one
                  message, the same SELECT (RLS applies), COMMIT: the minimum any per-user
                  server must do
  rowgate         Rowgate.call("select_rows", ...) in-process, pool of one connection
  rowgate stdio   a real MCP client driving `python -m server serve` over stdio

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
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import asyncpg
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

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
WARMUP = 200
ROUNDS = 10

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
    calls: int
    median_us: float
    p95_us: float
    per_second: float


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
    """Rows in whatever a path returned: a list of records, a Result, a CallToolResult."""
    if isinstance(result, list):
        return len(result)
    if hasattr(result, "is_error"):
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise SystemExit(f"tool call failed over stdio: {text}")
        return int((result.structured_content or {})["row_count"])
    return int(result.row_count)


@dataclass(frozen=True, slots=True)
class BenchPath:
    name: str
    call: CallFn
    calls: int


async def _measure(
    workload: Workload, paths: list[BenchPath], *, warmup: int, rounds: int
) -> list[Measurement]:
    """Warm every path up, then measure them round-robin in `rounds` chunks, so a noisy
    neighbour slows all paths alike instead of whichever happened to run at the time."""
    for path in paths:
        got = _count_rows(await path.call(0))
        if got != workload.expected_rows:
            raise SystemExit(
                f"{workload.name} via {path.name}: {got} rows, not {workload.expected_rows}"
            )
        for i in range(1, warmup):
            await path.call(i)
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {path.name: [] for path in paths}
    elapsed = dict.fromkeys(samples, 0)
    for r in range(rounds):
        for path in paths:
            chunk = range(path.calls * r // rounds, path.calls * (r + 1) // rounds)
            own = samples[path.name]
            started = clock()
            for i in chunk:
                t0 = clock()
                await path.call(warmup + i)
                own.append(clock() - t0)
            elapsed[path.name] += clock() - started
    results = []
    for path in paths:
        own = samples[path.name]
        p95 = statistics.quantiles(own, n=20, method="inclusive")[18] if len(own) > 1 else own[0]
        results.append(
            Measurement(
                workload=workload.name,
                path=path.name,
                calls=len(own),
                median_us=statistics.median(own) / 1000,
                p95_us=p95 / 1000,
                per_second=len(own) / (elapsed[path.name] / 1e9),
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


async def run(admin_dsn: str, args: argparse.Namespace) -> list[Measurement]:
    await prepare_database(admin_dsn, DEMO_DATABASE, demo=True)
    admin_demo = with_user_and_database(admin_dsn, _user_of(admin_dsn), DEMO_DATABASE)
    login_dsn = with_user_and_database(admin_dsn, "authenticator", DEMO_DATABASE)
    bob = demo_users()["bob"].principal
    begin = _begin_as(bob)
    db_calls = args.calls or DB_CALLS
    stdio_calls = args.calls or STDIO_CALLS

    results: list[Measurement] = []
    async with AsyncExitStack() as stack:
        raw_conn = await asyncpg.connect(admin_demo)
        stack.push_async_callback(raw_conn.close)
        role_conn = await asyncpg.connect(login_dsn)
        stack.push_async_callback(role_conn.close)
        settings = Settings(database_url=login_dsn, pool_min_size=1, pool_max_size=1)
        rg = await Rowgate.start(settings)
        stack.push_async_callback(rg.close)
        sink = stack.enter_context(_devnull())
        client = await stack.enter_async_context(_stdio_client(login_dsn, bob, sink))

        ids, org_id = await _visible(role_conn, bob)
        workloads = _workloads(ids, org_id)
        for w in workloads:

            async def raw(i: int, w: Workload = w) -> list[Any]:
                rows: list[Any] = await raw_conn.fetch(w.raw_sql, *w.raw_args(i))
                return rows

            async def role_tx(i: int, w: Workload = w) -> list[Any]:
                return await _as_principal(role_conn, begin, w.rls_sql, *w.rls_args(i))

            async def in_process(i: int, w: Workload = w) -> Any:
                return await rg.call("select_rows", w.arguments(i), bob)

            async def over_stdio(i: int, w: Workload = w) -> Any:
                return await client.call_tool("select_rows", w.arguments(i))

            paths = [
                BenchPath("raw asyncpg", raw, db_calls),
                BenchPath("asyncpg + role tx", role_tx, db_calls),
                BenchPath("rowgate in-process", in_process, db_calls),
                BenchPath("rowgate stdio", over_stdio, stdio_calls),
            ]
            results += await _measure(w, paths, warmup=args.warmup, rounds=args.rounds)

        if args.profile:
            for w in workloads:
                await _profile(rg, bob, w, db_calls)
    return results


async def _profile(rg: Rowgate, who: Principal, workload: Workload, calls: int) -> None:
    """cProfile of `calls` in-process calls; top entries under server/ and sqlglot (stderr)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        await rg.call("select_rows", workload.arguments(i), who)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"server/|sqlglot", 15)
    stats.sort_stats("tottime").print_stats(15)
    print(f"--- cProfile: {calls} x {workload.name}, in-process ---", file=sys.stderr)
    print(out.getvalue(), file=sys.stderr)


def _user_of(dsn: str) -> str:
    return urlsplit(dsn).username or "postgres"


def report(results: list[Measurement]) -> str:
    base: dict[tuple[str, str], float] = {(m.workload, m.path): m.median_us for m in results}
    header = (
        f"{'workload':<14} {'path':<20} {'calls':>6} {'median µs':>10} {'p95 µs':>9} "
        f"{'calls/s':>8} {'x raw':>6} {'x role tx':>9}"
    )
    lines = [header, "-" * len(header)]
    for workload in dict.fromkeys(m.workload for m in results):
        rows = [m for m in results if m.workload == workload]
        raw = base[(workload, "raw asyncpg")]
        tx = base[(workload, "asyncpg + role tx")]
        for m in rows:
            lines.append(
                f"{m.workload:<14} {m.path:<20} {m.calls:>6} {m.median_us:>10.0f} "
                f"{m.p95_us:>9.0f} {m.per_second:>8.0f} {m.median_us / raw:>6.2f} "
                f"{m.median_us / tx:>9.2f}"
            )
    lines.append("")
    for workload in dict.fromkeys(m.workload for m in results):
        tx = base[(workload, "asyncpg + role tx")]
        inproc = base[(workload, "rowgate in-process")]
        stdio = base.get((workload, "rowgate stdio"))
        line = f"{workload}: rowgate overhead per call {inproc - tx:.0f} µs (in-process - role tx)"
        if stdio is not None:
            line += f", stdio transport {stdio - inproc:.0f} µs (stdio - in-process)"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.select_rows", description=__doc__)
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help=f"measured calls per path (default {DB_CALLS}, {STDIO_CALLS} over stdio)",
    )
    parser.add_argument("--warmup", type=int, default=WARMUP, help="warm-up calls per path")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="measure the paths interleaved in N chunks"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the in-process path (to stderr)"
    )
    args = parser.parse_args(argv)
    if (args.calls is not None and args.calls < 1) or args.warmup < 1 or args.rounds < 1:
        parser.error("--calls, --warmup and --rounds must be at least 1")

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
