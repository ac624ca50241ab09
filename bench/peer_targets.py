"""rowgate over Streamable HTTP for the shared peer harness, with a bearer token verified
on every call:

    ../shared/bench/rowgate/setup.sh .      # installs this checkout into venv-rowgate
    ../shared/bench/run.sh --targets-file bench/peer_targets.py --only 'rowgate/*'

Parity with the harness' `rowgate/stdio` target (harness/targets.py, imported from there, not
copied): the same database URL, schema, role `bench_reader`, claims
{"sub": "bench-user", "scope": "all"} and select_rows arguments. On HTTP the role and claims
come from the token instead of ROWGATE_ROLE/ROWGATE_CLAIMS.

How the token is obtained: when the harness loads this file it
  1. starts a tiny authorization server in a daemon thread of the harness process
     (bench/issuer.py, standard library only: RFC 8414 metadata + JWKS on 127.0.0.1), so the
     server's process tree holds only rowgate (its CPU and RSS are what the harness reports);
  2. picks the port rowgate will listen on, so the token's audience is rowgate's own
     resource URL (http://127.0.0.1:PORT/mcp, no ROWGATE_RESOURCE_URL override);
  3. mints an ES256 token for that audience with `venv-rowgate/bin/python -m bench.issuer`
     (the harness venv has no PyJWT) from $BENCH_ROOT/rowgate-http/es256.pem, made on first
     use, and publishes the matching JWKS;
  4. exports ROWGATE_BENCH_TOKEN and ROWGATE_BENCH_HTTP_PORT, which the harness fills into
     the target's header and command.
rowgate discovers the JWKS from the issuer's metadata and checks signature, issuer,
audience and expiry; the token's `role` must be in ROWGATE_AUTH_ALLOWED_ROLES. A token seen
before is a cache hit in rowgate's verifier on later calls, as for any client that reuses
its token. The token's `scope` claim is "all" (the RLS policy of bench_reader reads it), so
the scope matrix maps the OAuth scope `all` to the read tools (ROWGATE_SCOPES).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from model import Target  # type: ignore[import-not-found]
from targets import ROWGATE_ENV, rowgate_args  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
ROOT = Path(os.environ["BENCH_ROOT"])  # set by the harness (bench.py) before loading us
ROWGATE_BIN = "{root}/venv-rowgate/bin/rowgate"
TOKEN_LIFETIME_S = 6 * 3600
READ_TOOLS = ["list_tables", "describe_table", "select_rows"]


def _issuer_module() -> Any:
    """bench/issuer.py by path: `bench` on the harness' sys.path is the harness' bench.py."""
    spec = importlib.util.spec_from_file_location("rowgate_bench_issuer", HERE / "issuer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prepare() -> dict[str, str]:
    """Start the issuer, mint the token, export it; the server's environment."""
    python = ROOT / "venv-rowgate" / "bin" / "python"
    claims = json.loads(ROWGATE_ENV["ROWGATE_CLAIMS"])
    role = ROWGATE_ENV["ROWGATE_ROLE"]
    port = _free_port()
    os.environ["ROWGATE_BENCH_HTTP_PORT"] = str(port)
    issuer = _issuer_module().DocumentServer("127.0.0.1", 0)
    if python.exists():  # else the targets are skipped (requires=) and need no token
        minted = subprocess.run(
            [
                str(python), "-m", "bench.issuer", "token",
                "--key-file", str(ROOT / "rowgate-http" / "es256.pem"),
                "--issuer", issuer.issuer,
                "--audience", f"http://127.0.0.1:{port}/mcp",
                "--role", role,
                "--claims", json.dumps(claims),
                "--scope", str(claims.get("scope", "all")),
                "--lifetime", str(TOKEN_LIFETIME_S),
            ],
            cwd=CHECKOUT,  # this checkout's bench/issuer.py, whatever venv-rowgate holds
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        out = json.loads(minted.stdout)
        issuer.publish(out["jwks"])
        issuer.start()
        os.environ["ROWGATE_BENCH_TOKEN"] = out["token"]
    else:
        os.environ.setdefault("ROWGATE_BENCH_TOKEN", "")
    return {
        "DATABASE_URL": ROWGATE_ENV["DATABASE_URL"],
        "ROWGATE_SCHEMAS": ROWGATE_ENV["ROWGATE_SCHEMAS"],
        "ROWGATE_AUTH_ISSUER": issuer.issuer,
        "ROWGATE_AUTH_ALGORITHMS": "ES256",
        "ROWGATE_AUTH_ALLOWED_ROLES": role,
        "ROWGATE_SCOPES": json.dumps({str(claims.get("scope", "all")): {"tools": READ_TOOLS}}),
    }


HTTP_ENV = _prepare()
COMMAND = [ROWGATE_BIN, "serve", "--transport", "http"]
COMMAND += ["--host", "127.0.0.1", "--port", "{ROWGATE_BENCH_HTTP_PORT}"]
URL = "http://127.0.0.1:{ROWGATE_BENCH_HTTP_PORT}/mcp"
HEADERS = {"Authorization": "Bearer {ROWGATE_BENCH_TOKEN}"}
GROUP = "rowgate (checkout installed by rowgate/setup.sh)"

TARGETS: list[Any] = [
    Target(
        name="rowgate/http",
        group=GROUP,
        transport="http",
        command=COMMAND,
        url=URL,
        env=HTTP_ENV,
        headers=HEADERS,
        tool="select_rows",
        args=rowgate_args,
        mcp_mode="auto",
        requires=[ROWGATE_BIN],
        notes="Streamable HTTP, ES256 bearer token checked per call; role + claims from the "
        "token, RLS enforced; mode auto = stateless 2026-07-28 requests (the SDK's path)",
    ),
    Target(
        name="rowgate/http-legacy",
        group=GROUP,
        transport="http",
        command=COMMAND,
        url=URL,
        env=HTTP_ENV,
        headers=HEADERS,
        tool="select_rows",
        args=rowgate_args,
        mcp_mode="legacy",
        requires=[ROWGATE_BIN],
        notes="same, initialize handshake (2025-11-25): tools/call on rowgate's direct path",
    ),
]
