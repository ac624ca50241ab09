"""`rowgate`: serve, demo, migrate, call, db. Nothing here writes to stdout while MCP is
served over stdio; messages for people go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import asyncpg

from schemas.config import Settings
from server import audit
from server.app import Rowgate
from server.config import ConfigError, load_settings
from server.demo import DEMO_DATABASE, DemoUser, demo_users, prepare_database
from server.embedded import EmbeddedPostgres, EmbeddedPostgresError
from server.errors import RowgateError
from server.identity import IdentityError, Principal, principal_from_settings
from server.table_format import render_result

log = logging.getLogger("rowgate")


def _version() -> str:
    try:
        return version("rowgate")
    except PackageNotFoundError:
        return "0.0.0"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _output(text: str) -> None:
    """A one-shot command's answer (`call`, `db url`); never used while serving MCP."""
    sys.stdout.write(text + "\n")


def _embedded() -> EmbeddedPostgres:
    root = os.environ.get("ROWGATE_EMBEDDED_DIR")
    return EmbeddedPostgres(Path(root) if root else None)


def _demo_user(name: str) -> DemoUser:
    users = demo_users()
    if name not in users:
        raise ConfigError(f"no demo user {name!r}; demo users: {', '.join(users)}")
    return users[name]


class _Target:
    """Where a command's calls go: settings, the principal, and the embedded server if any."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.embedded: EmbeddedPostgres | None = None
        self.demo_user: DemoUser | None = getattr(args, "user", None) and _demo_user(args.user)
        overrides: dict[str, Any] = {}
        http = {
            key: value
            for key, value in (
                ("host", getattr(args, "host", None)),
                ("port", getattr(args, "port", None)),
            )
            if value is not None
        }
        if http:
            overrides["http"] = http
        if self.demo_user is not None:
            self.embedded = _embedded()
            overrides["database_url"] = self.embedded.dsn("authenticator", DEMO_DATABASE)
        self.settings: Settings = load_settings(
            config_file=getattr(args, "config", None), overrides=overrides
        )

    def context(self) -> AbstractContextManager[Any]:
        return self.embedded if self.embedded is not None else nullcontext()

    async def prepare(self) -> None:
        if self.embedded is not None:
            await prepare_database(self.embedded.dsn(), DEMO_DATABASE, demo=True)

    def principal(self) -> Principal:
        if self.demo_user is not None:
            return self.demo_user.principal
        return principal_from_settings(self.settings)


async def _open(target: _Target) -> tuple[Rowgate, Principal]:
    await target.prepare()
    principal = target.principal()
    rg = await Rowgate.start(target.settings)
    try:
        await rg.policy.tables(principal)  # refuses a missing or privileged role up front
    except BaseException:
        await rg.close()
        raise
    return rg, principal


async def _serve(target: _Target) -> None:
    from server.protocol import serve_stdio

    rg, principal = await _open(target)
    _exit_on_signals(target)
    try:
        if sys.stdin.isatty():
            _banner(target, principal)
        await serve_stdio(rg, principal, version=_version())
    finally:
        await rg.close()


async def _serve_http(target: _Target) -> None:
    import uvicorn

    from server.auth import TokenVerifier
    from server.http import HttpApp, HttpConfigError, is_loopback, resource_url_for

    settings = target.settings
    http = settings.http
    await target.prepare()
    rg = await Rowgate.start(settings)
    try:
        extra_routes = None
        local_principal = None
        verifier = None
        if settings.auth.disabled and not is_loopback(http.host):
            raise HttpConfigError(
                "ROWGATE_AUTH_DISABLED serves every caller as one user: it only binds loopback "
                f"(127.0.0.1, ::1), not {http.host}"
            )
        resource_url = resource_url_for(http, http.port)
        if target.demo_user is not None:
            if not is_loopback(http.host):
                raise HttpConfigError(
                    "the demo's development authorization server is loopback-only"
                )
            authority = _dev_authority(target, resource_url)
            extra_routes = authority.routes()
            auth = settings.auth.model_copy(
                update={
                    "issuer": authority.issuer,
                    "allowed_roles": sorted({u.principal.role for u in demo_users().values()}),
                }
            )
            verifier = TokenVerifier(auth, resource_url)
            _http_banner(target, resource_url, authority)
        elif settings.auth.disabled:
            local_principal = target.principal()
            await rg.policy.tables(local_principal)
            _say(
                f"rowgate: HTTP WITHOUT AUTH on {resource_url}: "
                f"every caller is {local_principal.label}"
            )
        else:
            try:
                verifier = TokenVerifier(settings.auth, resource_url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            _say(f"rowgate {_version()}: serving MCP at {resource_url} (issuer {verifier.issuer})")
        app = HttpApp(
            rg,
            http,
            port=http.port,
            verifier=verifier,
            local_principal=local_principal,
            version=_version(),
            extra_routes=extra_routes,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=http.host,
                port=http.port,
                lifespan="on",
                http="httptools",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=int(http.shutdown_grace_seconds) or None,
                timeout_keep_alive=15,
            )
        )
        await server.serve()
    except HttpConfigError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        await rg.close()


def _dev_authority(target: _Target, resource_url: str) -> Any:
    from server.devauth import DevAuthority

    assert target.embedded is not None
    base = resource_url.rsplit("/mcp", 1)[0]
    return DevAuthority(
        base,
        resource_url,
        demo_users(),
        list(target.settings.scopes),
        target.embedded.data_root / "dev-auth-key.pem",
    )


def _http_banner(target: _Target, resource_url: str, authority: Any) -> None:
    user = target.demo_user
    assert user is not None
    token = authority.token(user.name)
    _say(
        f"rowgate {_version()}: serving the demo database over Streamable HTTP at {resource_url}\n"
        f"Development authorization server (loopback only): {authority.issuer}\n\n"
        f"A token for {user.name} ({user.description}), valid 8 hours:\n{token}\n\n"
        "A token for another demo user (alice, bob, carol, dave):\n"
        "  curl -s -d grant_type=client_credentials -d client_id=bob "
        f"{authority.token_endpoint}\n\n"
        "MCP Inspector:  npx @modelcontextprotocol/inspector --cli "
        f'{resource_url} --transport http --header "Authorization: Bearer $TOKEN" '
        "--method tools/list\n"
        "Claude Code:    claude mcp add --transport http rowgate "
        f'{resource_url} --header "Authorization: Bearer $TOKEN"\n\n'
        "Ctrl-C to stop."
    )


def _exit_on_signals(target: _Target) -> None:
    """Ctrl-C / SIGTERM end the process at once. The SDK reads stdin in a worker thread that
    a cancellation cannot interrupt, so an orderly asyncio shutdown would wait for the next
    input line; the embedded PostgreSQL is released first (stopped if no one else uses it)."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if target.embedded is not None:
            try:
                target.embedded.stop()
            except EmbeddedPostgresError as exc:
                _say(f"rowgate: {exc}")
        sys.stderr.flush()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)


def _banner(target: _Target, principal: Principal) -> None:
    exe = shutil.which("rowgate") or str(Path(sys.argv[0]).resolve())
    user = target.demo_user
    who = f"{user.name} ({user.description}; " if user else "("
    where = (
        f"embedded PostgreSQL, database {DEMO_DATABASE} (socket {target.embedded.socket_dir})"
        if target.embedded
        else "the database in DATABASE_URL"
    )
    args = ["demo", "--user", user.name] if user else ["serve"]
    entry: dict[str, Any] = {"command": exe, "args": args}
    if os.environ.get("ROWGATE_EMBEDDED_DIR") and user:
        entry["env"] = {"ROWGATE_EMBEDDED_DIR": os.environ["ROWGATE_EMBEDDED_DIR"]}
    snippet = json.dumps({"mcpServers": {"rowgate": entry}}, indent=2)
    _say(
        f"rowgate {_version()}: serving MCP over stdio as {who}role {principal.role})\n"
        f"database: {where}\n\n"
        "Connect an MCP client to this command instead of typing here. Claude Desktop "
        "(claude_desktop_config.json):\n"
        f"{snippet}\n\n"
        f"MCP Inspector:  npx @modelcontextprotocol/inspector {shlex.join([exe, *args])}\n"
        f"From a shell:   {shlex.quote(exe)} call select_rows "
        f"{'--user ' + user.name + ' ' if user else ''}table=orders limit=5\n\n"
        "Waiting for MCP messages on stdin (Ctrl-C to stop)."
    )


def _parse_tool_args(pairs: Sequence[str], raw_json: str | None) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if raw_json:
        parsed = json.loads(raw_json)
        if not isinstance(parsed, dict):
            raise ConfigError("--args must be a JSON object")
        arguments.update(parsed)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"tool arguments are key=value, got {pair!r}")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


async def _call(target: _Target, tool: str, arguments: dict[str, Any], as_json: bool) -> int:
    rg, principal = await _open(target)
    try:
        result = await rg.call(tool, arguments, principal)
    except RowgateError as exc:
        _say(f"error [{exc.code}]: {exc.message}")
        return 1
    finally:
        await rg.close()
    data = result.model_dump(mode="json")
    _output(json.dumps(data, indent=2) if as_json else render_result(data))
    return 0


async def _migrate(admin_url: str) -> list[str]:
    from server.migrate import apply_migrations

    conn = await asyncpg.connect(admin_url)
    try:
        return await apply_migrations(conn, "core")
    finally:
        await conn.close()


def _db(action: str) -> int:
    pg = _embedded()
    if action == "start":
        pg.start()
        # Registered users are this process only; keep it running for other processes.
        _say(f"embedded PostgreSQL running; admin DSN: {pg.dsn()}")
        return 0
    if action == "stop":
        pg.force_stop()
        _say("embedded PostgreSQL stopped")
        return 0
    if action == "url":
        _output(pg.dsn("authenticator", DEMO_DATABASE))
        return 0
    _say("running" if pg.is_running() else "stopped")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rowgate",
        description="MCP server: agents read and change Postgres data as the user they act for.",
    )
    parser.add_argument("--version", action="version", version=f"rowgate {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve MCP over stdio or HTTP (settings: env/.env/config)")
    serve.add_argument("--config", type=Path, help="TOML config file (or ROWGATE_CONFIG)")
    _transport_flags(serve)

    demo = sub.add_parser("demo", help="embedded PostgreSQL + demo data, served as a demo user")
    demo.add_argument("--user", default="alice", help="demo user (alice, bob, carol, dave)")
    _transport_flags(demo)

    migrate = sub.add_parser("migrate", help="apply rowgate's own migrations (never demo data)")
    migrate.add_argument(
        "--database-url",
        help="an owner/admin connection (default: ROWGATE_ADMIN_URL, then DATABASE_URL)",
    )

    call = sub.add_parser("call", help="call one tool and print the result")
    call.add_argument("tool")
    call.add_argument("arguments", nargs="*", help="key=value (values parsed as JSON if valid)")
    call.add_argument("--user", help="run against the demo database as this demo user")
    call.add_argument("--config", type=Path)
    call.add_argument("--args", dest="raw_json", help="all arguments as one JSON object")
    call.add_argument("--json", action="store_true", help="print JSON instead of a table")

    db = sub.add_parser("db", help="manage the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    return parser


def _transport_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", help="HTTP: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP: port (default 8080)")


def _configure_logging(verbose: bool, *, audit_on: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="rowgate %(levelname)s: %(message)s",
    )
    audit.configure()
    if not audit_on:
        audit.audit_log.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # key=value tool arguments may come before or after --user/--json.
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command != "call" or any("=" not in e or e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.arguments += extra
    _configure_logging(args.verbose, audit_on=args.command != "call" or args.verbose)
    try:
        if args.command == "db":
            return _db(args.action)
        if args.command == "migrate":
            settings = load_settings()
            url = args.database_url or os.environ.get("ROWGATE_ADMIN_URL") or settings.database_url
            if not url:
                raise ConfigError("give --database-url, ROWGATE_ADMIN_URL or DATABASE_URL")
            applied = asyncio.run(_migrate(url))
            _say(f"applied: {', '.join(applied)}" if applied else "already up to date")
            return 0
        target = _Target(args)
        with target.context():
            if args.command == "call":
                arguments = _parse_tool_args(args.arguments, args.raw_json)
                return asyncio.run(_call(target, args.tool, arguments, args.json))
            if getattr(args, "transport", "stdio") == "http":
                asyncio.run(_serve_http(target))
            else:
                asyncio.run(_serve(target))
            return 0
    except KeyboardInterrupt:
        return 130
    except (ConfigError, IdentityError, EmbeddedPostgresError) as exc:
        _say(f"rowgate: {exc}")
        return 2
    except RowgateError as exc:
        _say(f"rowgate: [{exc.code}] {exc.message}")
        return 2
    except json.JSONDecodeError as exc:
        _say(f"rowgate: --args is not valid JSON: {exc}")
        return 2
    except BrokenPipeError:  # e.g. `rowgate call ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, asyncpg.PostgresError) as exc:
        _say(f"rowgate: database error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
