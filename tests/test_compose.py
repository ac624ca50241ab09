"""The compose deployment as a user relies on it: docker-compose.yml, the Dockerfile,
.dockerignore and deploy/.

Docker need not run here (CI has no engine), so the files are parsed and checked, and what
can run without Docker runs for real: the wheel the image installs is built from exactly the
build context .dockerignore lets through; deploy/app-migrate.sh runs after `rowgate migrate`
against PostgreSQL (needs psql); deploy/haproxy.cfg balances two stand-in replicas (needs
haproxy); `docker compose config` checks the file (needs the compose plugin). Each of those
is skipped, saying why, where its tool is missing."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from server.config import ENV_VARIABLES, load_settings
from server.demo import with_user_and_database

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "rowgate.env.example"
TEST_PROFILE_ENV = DEPLOY / "test-profile.env"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
APP_MIGRATE = DEPLOY / "app-migrate.sh"
ROWGATE = str(Path(sys.executable).parent / "rowgate")

REPLICAS = ("rowgate-1", "rowgate-2")
ONE_SHOTS = ("migrate", "app-migrate")
LONG_RUNNING = ("postgres", *REPLICAS, "lb")
HTTP_COMMAND = ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8080"]

# ${NAME:?message}: Compose refuses to start while NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]+\}")
# Every ${NAME...} Compose interpolates ($${...} is a literal dollar for the container).
ANY_VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)")


# --- the files, parsed ------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def service(name: str) -> dict[str, Any]:
    assert name in services(), f"docker-compose.yml has no service {name!r}"
    return services()[name]


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; comments and blank lines skipped (the subset Compose's .env uses here)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, sep, value = stripped.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def is_pinned(image: str) -> bool:
    """A tag that names a release (17.11-bookworm, 3.2.24-alpine) or a digest; never latest."""
    if "@sha256:" in image:
        return True
    name, sep, tag = image.rpartition(":")
    if not sep or not name or "/" in tag or tag == "latest":
        return False
    return re.match(r"\d+\.\d+", tag) is not None


def depends_on(name: str) -> dict[str, str]:
    """{dependency: condition}; the short list form means service_started."""
    raw = service(name).get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {dep: spec.get("condition", "service_started") for dep, spec in raw.items()}


def healthcheck_command(name: str) -> str:
    check = service(name).get("healthcheck")
    assert isinstance(check, dict), f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name}'s healthcheck is disabled"
    test = check.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test!r}"
    return " ".join(str(part) for part in test[1:])


def container_ports(name: str) -> list[int]:
    """The container side of each published port ("host:port:container" or "port")."""
    ports: list[int] = []
    for entry in service(name).get("ports", []):
        assert isinstance(entry, str), f"{name}: use the short port syntax, got {entry!r}"
        ports.append(int(entry.rsplit(":", 1)[-1].split("/")[0]))
    return ports


def writable_volume_sources(name: str) -> set[str]:
    """What a service can write outside its container: volumes and binds not mounted :ro."""
    sources: set[str] = set()
    for entry in service(name).get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            if parts[-1] != "ro" and len(parts) >= 2:
                sources.add(parts[0])
        elif not entry.get("read_only"):
            sources.add(str(entry.get("source")))
    return sources


@functools.cache
def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined; the
    instructions before the first FROM (global ARGs) form stage 0."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def dockerfile_images() -> list[str]:
    """Each stage's base image with the global ARG defaults substituted."""
    args: dict[str, str] = {}
    for keyword, value in dockerfile_stages()[0]:
        if keyword == "ARG" and "=" in value:
            key, _, default = value.partition("=")
            args[key] = default
    images: list[str] = []
    for stage in dockerfile_stages()[1:]:
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), image))
    return images


def final_stage(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_stages()[-1] if kw == keyword]


# --- .dockerignore, matched the way Docker matches it -----------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's patterns: `*` and `?` stop at `/`, `**` crosses directories. (Character
    classes are not used in our .dockerignore, so they are not translated.)"""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@functools.cache
def dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    rules: list[tuple[re.Pattern[str], bool]] = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip().strip("/")))
        rules.append((_pattern_regex(pattern), negated))
    return rules


def excluded_from_context(path: str) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context: the last
    rule matching the path or one of its parent directories decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for regex, negated in dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def build_context_files() -> list[str]:
    files: list[str] = []
    for directory, subdirs, names in os.walk(ROOT):
        rel_dir = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Don't descend into what is excluded and cannot be re-included below it.
        subdirs[:] = [d for d in subdirs if not excluded_from_context(prefix + d)]
        files.extend(prefix + n for n in names if not excluded_from_context(prefix + n))
    return sorted(files)


# --- docker-compose.yml -------------------------------------------------------------------


def test_the_deployment_services_and_the_test_service_exist() -> None:
    assert set(services()) == {*LONG_RUNNING, *ONE_SHOTS, "test-postgres"}


def test_pulled_images_are_pinned_to_a_release() -> None:
    pulled = {name: spec["image"] for name, spec in services().items() if "build" not in spec}
    assert set(pulled) == {"postgres", "app-migrate", "lb", "test-postgres"}
    for name, image in pulled.items():
        assert is_pinned(image), f"{name}: image {image!r} is not pinned to a release"


def test_pinning_check_rejects_moving_tags() -> None:
    for moving in ("postgres", "postgres:latest", "postgres:17", "haproxy:lts-alpine"):
        assert not is_pinned(moving), moving
    assert is_pinned("postgres:17.11-bookworm")
    assert is_pinned("haproxy:3.2.24-alpine")


def test_rowgate_services_are_built_from_the_dockerfile() -> None:
    for name in ("migrate", *REPLICAS):
        build = service(name).get("build")
        assert isinstance(build, dict), f"{name} is not built here"
        context = ROOT / build.get("context", ".")
        assert context.resolve() == ROOT
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    # One image name: the build is shared, not three different images.
    assert len({service(n)["image"] for n in ("migrate", *REPLICAS)}) == 1


def test_replicas_serve_http_on_the_port_the_balancer_uses() -> None:
    for name in REPLICAS:
        assert service(name)["command"] == HTTP_COMMAND
    assert service("migrate")["command"] == ["migrate"]
    port = HTTP_COMMAND[HTTP_COMMAND.index("--port") + 1]
    assert f"EXPOSE {port}" in DOCKERFILE.read_text(encoding="utf-8")
    assert haproxy_servers() == {name: f"{name}:{port}" for name in REPLICAS}


def test_each_long_running_service_has_a_healthcheck() -> None:
    assert "pg_isready" in healthcheck_command("postgres")
    # Over TCP: the image's first-start temporary server listens on the socket only.
    assert "-h 127.0.0.1" in healthcheck_command("postgres")
    for name in REPLICAS:
        assert "http://127.0.0.1:8080/readyz" in healthcheck_command(name)
    assert "/lb-healthz" in healthcheck_command("lb")
    assert re.search(r"^\s*monitor-uri /lb-healthz$", HAPROXY_CFG.read_text(), re.M)
    for name in LONG_RUNNING:
        assert service(name).get("restart") == "unless-stopped", name


def test_startup_order_waits_for_health_and_finished_migrations() -> None:
    assert depends_on("migrate") == {"postgres": "service_healthy"}
    assert depends_on("app-migrate") == {
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    for name in REPLICAS:
        assert depends_on(name) == {
            "postgres": "service_healthy",
            "migrate": "service_completed_successfully",
            "app-migrate": "service_completed_successfully",
        }
    assert depends_on("lb") == dict.fromkeys(REPLICAS, "service_healthy")
    for name in ONE_SHOTS:
        assert service(name).get("restart") == "no", f"{name} must run once, not loop"


def test_only_the_balancer_publishes_a_port() -> None:
    assert container_ports("lb") == [8080]
    assert re.search(r"^\s*bind :8080$", HAPROXY_CFG.read_text(), re.M)
    for name in (*LONG_RUNNING, *ONE_SHOTS):
        if name != "lb":
            assert not service(name).get("ports"), f"{name} must not publish a port"


def test_the_balancer_config_is_mounted_and_balances_both_replicas() -> None:
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in service("lb")["volumes"]
    cfg = HAPROXY_CFG.read_text(encoding="utf-8")
    assert re.search(r"^\s*balance roundrobin$", cfg, re.M)
    assert re.search(r"^\s*option httpchk$", cfg, re.M)
    assert re.search(r"^\s*http-check send meth GET uri /readyz$", cfg, re.M)
    # Streaming responses (SSE) pass through: nothing buffers, idle streams may last.
    assert "http-buffer-request" not in cfg
    assert "compression" not in cfg
    for timeout in ("client", "server"):
        match = re.search(rf"^\s*timeout {timeout} (\d+)([smh])$", cfg, re.M)
        assert match, f"no timeout {timeout}"
        seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]
        assert seconds >= 600, f"timeout {timeout} too short for an SSE stream"


def haproxy_servers() -> dict[str, str]:
    """`server NAME ADDRESS` lines of deploy/haproxy.cfg."""
    cfg = HAPROXY_CFG.read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*server (\S+) (\S+)", cfg, re.M))


def test_required_settings_stop_compose_with_a_message() -> None:
    for name in REPLICAS:
        env = service(name)["environment"]
        for variable in ("ROWGATE_AUTH_ISSUER", "ROWGATE_RESOURCE_URL"):
            assert REQUIRED_VARIABLE.fullmatch(env[variable]), f"{name}: {variable} not required"
        assert "${AUTHENTICATOR_PASSWORD:?" in env["DATABASE_URL"]
        assert env["DATABASE_URL"].startswith("postgresql://authenticator:")
        # Optional settings are passed only when set: an empty value would count as set.
        for variable, value in env.items():
            assert value is None or value.strip(), f"{name}: {variable} may be empty"
    assert REQUIRED_VARIABLE.fullmatch(service("postgres")["environment"]["POSTGRES_PASSWORD"])
    for name in ONE_SHOTS:
        assert "${POSTGRES_PASSWORD:?" in service(name)["environment"]["ROWGATE_ADMIN_URL"]


def test_replicas_share_no_writable_volume_and_write_nothing() -> None:
    for i, first in enumerate(REPLICAS):
        for second in REPLICAS[i + 1 :]:
            shared = writable_volume_sources(first) & writable_volume_sources(second)
            assert not shared, f"{first} and {second} both write to {shared}"
    for name in REPLICAS:
        assert writable_volume_sources(name) == set()
        assert service(name).get("read_only") is True
    assert writable_volume_sources("postgres") == {"pgdata"}
    assert "pgdata" in compose()["volumes"]


def test_writable_volume_check_sees_writable_mounts() -> None:
    services()["probe"] = {"volumes": ["data:/data", "./x:/x:ro", {"source": "y", "target": "/y"}]}
    try:
        assert writable_volume_sources("probe") == {"data", "y"}
    finally:
        del services()["probe"]


def test_the_test_postgres_only_starts_with_the_test_profile() -> None:
    test_pg = service("test-postgres")
    assert test_pg.get("profiles") == ["test"]
    assert test_pg.get("ports") == ["127.0.0.1:54329:5432"]
    assert test_pg["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert test_pg.get("tmpfs") == ["/var/lib/postgresql/data"]
    for name in (*LONG_RUNNING, *ONE_SHOTS):
        assert "profiles" not in service(name), f"{name} must start with a plain `up`"


def test_every_variable_is_documented_and_the_test_profile_can_load_the_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    referenced = set(ANY_VARIABLE.findall(text))
    for name in REPLICAS:
        referenced |= {k for k, v in service(name)["environment"].items() if v is None}
    required = set(REQUIRED_VARIABLE.findall(text))
    assert {"POSTGRES_PASSWORD", "AUTHENTICATOR_PASSWORD"} <= required
    assert {"ROWGATE_AUTH_ISSUER", "ROWGATE_RESOURCE_URL"} <= required

    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    for variable in referenced:
        assert re.search(rf"^#? ?{variable}=", example, re.M), f"{variable} is not documented"
    # Each required variable is an uncommented line whose comment says REQUIRED.
    for variable in required:
        match = re.search(rf"((?:^#.*\n)+){variable}=", example, re.M)
        assert match and "REQUIRED" in match[1], f"{variable} is not marked REQUIRED"
    marked = set(re.findall(r"^# REQUIRED\.(?:.*\n)(?:#.*\n)*(\w+)=", example, re.M))
    assert marked == required

    placeholders = env_file(TEST_PROFILE_ENV)
    missing = {v for v in required if not placeholders.get(v)}
    assert not missing, f"deploy/test-profile.env lacks {missing}"


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, for the forms used here."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2], match[3]
        found = variables.get(name, "")
        if operator == "?" and not found:
            raise LookupError(f"{name}: {argument}")
        return found or (argument if operator == "-" else "")

    return re.sub(r"(?<!\$)\$\{(\w+)(?::([?-])([^}]*))?\}", substitute, value)


def test_the_replica_environment_is_what_rowgate_reads(tmp_path: Path) -> None:
    """Every variable passed to a replica is one rowgate reads, and with the placeholder
    values the replicas' settings load and mean what the compose file intends."""
    placeholders = env_file(TEST_PROFILE_ENV)
    for name in REPLICAS:
        env = service(name)["environment"]
        unknown = set(env) - set(ENV_VARIABLES)
        assert not unknown, f"{name}: rowgate reads no {unknown}"
        values = {k: interpolate(v, placeholders) for k, v in env.items() if v is not None}
        settings = load_settings(environ=values, dotenv_path=tmp_path / "no.env")
        assert settings.http.resource_url == placeholders["ROWGATE_RESOURCE_URL"]
        assert settings.auth.issuer == placeholders["ROWGATE_AUTH_ISSUER"]
        assert settings.auth.allowed_roles == ["authenticated"]
        assert settings.auth.role_claim == "role"
        assert settings.transaction_pooler is False
        password = placeholders["AUTHENTICATOR_PASSWORD"]
        assert settings.database_url == f"postgresql://authenticator:{password}@postgres:5432/app"
    with pytest.raises(LookupError, match="ROWGATE_AUTH_ISSUER"):
        interpolate(service("rowgate-1")["environment"]["ROWGATE_AUTH_ISSUER"], {})


def test_secrets_stay_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert excluded_from_context(".env")
    assert excluded_from_context("deploy/rowgate.env.example")


def test_the_header_says_how_to_deploy_and_how_to_use_the_test_profile() -> None:
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nname:")[0]
    for step in (
        "cp deploy/rowgate.env.example .env",
        "docker compose up -d",
        "--profile test up -d test-postgres",
        "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:54329/postgres",
    ):
        assert step in header, step


# --- Dockerfile and .dockerignore -------------------------------------------------------


def test_base_images_are_pinned_python_slim() -> None:
    images = dockerfile_images()
    assert len(images) >= 2, "build and runtime stages"
    for image in images:
        assert is_pinned(image), image
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


def test_the_image_runs_as_a_fixed_non_root_uid() -> None:
    users = final_stage("USER")
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]} is not a fixed non-root uid"
    # USER comes after everything that needs root.
    keywords = [kw for kw, _ in dockerfile_stages()[-1]]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_the_image_serves_http_and_checks_its_own_health() -> None:
    assert final_stage("ENTRYPOINT") == ['["rowgate"]']
    assert [json.loads(c) for c in final_stage("CMD")] == [HTTP_COMMAND]
    assert final_stage("EXPOSE") == ["8080"]
    (check,) = final_stage("HEALTHCHECK")
    assert "urllib.request" in check and "http://127.0.0.1:8080/healthz" in check


def test_the_image_installs_the_pinned_runtime_dependencies_only() -> None:
    runs = [args for stage in dockerfile_stages()[1:] for kw, args in stage if kw == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip\b.*\binstall\b", r)]
    assert len(installs) == 1
    assert re.search(r"(?:-c|--constraint) constraints\.txt \.(?:\s|$)", installs[0])
    assert "[dev]" not in DOCKERFILE.read_text(encoding="utf-8")
    # The final stage gets the installed venv, and neither a compiler nor package installs.
    final_runs = " ".join(final_stage("RUN"))
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "pip "):
        assert tool not in final_runs, tool
    assert any(c.startswith("--from=") for c in final_stage("COPY"))


def test_the_build_context_holds_what_the_wheel_is_built_from() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = [
        "pyproject.toml",
        "constraints.txt",
        project["project"]["readme"],
        *wheel["packages"],
        *wheel.get("force-include", {}),
    ]
    for path in needed:
        assert not excluded_from_context(path), f".dockerignore leaves out {path}"
    context = build_context_files()
    for package in wheel["packages"]:
        assert any(f.startswith(package + "/") and f.endswith(".py") for f in context), package


def test_the_build_context_leaves_out_local_state() -> None:
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".env",
        "server/.env",
        "server/__pycache__/cli.cpython-312.pyc",
        ".mypy_cache/3.11/x.json",
        "tests/node/node_modules/pkg/index.js",
        "deploy/haproxy.cfg",
        "docker-compose.yml",
    ):
        assert excluded_from_context(path), f".dockerignore lets in {path}"
    assert not excluded_from_context("server/cli.py")
    assert not excluded_from_context("tests/node_tools.py")


def test_the_build_context_makes_a_complete_wheel(tmp_path: Path) -> None:
    """What the Dockerfile's pip install builds, from only the files Docker would send: the
    wheel must carry rowgate's SQL (`rowgate migrate` in the image reads it from there)."""
    context = tmp_path / "context"
    for rel in build_context_files():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("rowgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "rowgate = server.cli:main" in archive.read(entry_points).decode()
    for sql in sorted((ROOT / "migrations" / "core").glob("*.sql")):
        assert f"server/_bundled/migrations/core/{sql.name}" in names


# --- docker compose itself, where its plugin exists -----------------------------------------


def docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here: `docker compose config` not run")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: `docker compose config` not run")
    return [docker, "compose", "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]


def test_docker_compose_accepts_the_file() -> None:
    command = docker_compose()
    env = {k: v for k, v in os.environ.items() if k not in env_file(TEST_PROFILE_ENV)}
    loaded = [*command, "--env-file", str(TEST_PROFILE_ENV)]
    result = subprocess.run([*loaded, "config", "-q"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [*loaded, "--profile", "test", "config", "--services"], capture_output=True, text=True
    )
    assert "test-postgres" in listed.stdout.split()
    default = subprocess.run([*loaded, "config", "--services"], capture_output=True, text=True)
    assert "test-postgres" not in default.stdout.split()
    # Without the required settings Compose refuses, naming what to set.
    refused = subprocess.run(
        [*command, "--env-file", os.devnull, "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode != 0
    assert "deploy/rowgate.env.example" in refused.stderr or "in .env" in refused.stderr


# --- deploy/app-migrate.sh against PostgreSQL -------------------------------------------------


def psql(url: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def deploy_db(admin_dsn: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database after the compose `migrate` step (`rowgate migrate`), as the admin;
    the cluster-wide password of `authenticator` is put back afterwards."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed: deploy/app-migrate.sh not run")
    name = f"rowgate_deploy_{uuid.uuid4().hex[:10]}"
    psql(admin_dsn, f'CREATE DATABASE "{name}"')
    url = with_user_and_database(admin_dsn, _user(admin_dsn), name)
    saved = None
    try:
        migrated = subprocess.run(
            [ROWGATE, "migrate", "--database-url", url],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # no .env of the working tree
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
        saved = psql(url, "SELECT rolpassword FROM pg_authid WHERE rolname = 'authenticator'")
        yield url
    finally:
        if saved is not None:
            restore = "NULL" if not saved else "'" + saved.replace("'", "''") + "'"
            psql(admin_dsn, f"ALTER ROLE authenticator PASSWORD {restore}")
        psql(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _user(dsn: str) -> str:
    return urlsplit(dsn).username or "postgres"


def app_migrate(url: str, directory: Path, password: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ROWGATE_ADMIN_URL": url,
        "AUTHENTICATOR_PASSWORD": password,
        "APP_MIGRATIONS_DIR": str(directory),
    }
    return subprocess.run(
        ["sh", str(APP_MIGRATE)], capture_output=True, text=True, env=env, timeout=120
    )


def password_matches(stored: str, password: str, role: str) -> bool:
    """Whether PostgreSQL's stored verifier (SCRAM-SHA-256 or md5) is for `password`."""
    scram = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", stored)
    if scram:
        salted = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(scram[2]), int(scram[1])
        )
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(scram[3]))
    md5 = "md5" + hashlib.md5((password + role).encode(), usedforsecurity=False).hexdigest()
    return stored == md5


def test_app_migrate_sets_the_password_and_applies_each_file_once(
    deploy_db: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_table.sql").write_text("CREATE TABLE deploy_t (id int);\n")
    (migrations / "0002_rows.sql").write_text("INSERT INTO deploy_t VALUES (1), (2);\n")
    (migrations / "notes.txt").write_text("not SQL: ignored\n")
    password = "p'a:s$s w\"o\\rd"  # quotes, a backslash, a colon, a dollar, a space

    for _ in range(2):  # the second `up` applies nothing again
        run = app_migrate(deploy_db, migrations, password)
        assert run.returncode == 0, run.stderr
    assert psql(deploy_db, "SELECT count(*) FROM deploy_t") == "2"
    applied = psql(
        deploy_db, "SELECT string_agg(name, ',' ORDER BY name) FROM rowgate.app_migrations"
    )
    assert applied == "0001_table.sql,0002_rows.sql"
    stored = psql(deploy_db, "SELECT rolpassword FROM pg_authid WHERE rolname = 'authenticator'")
    assert password_matches(stored, password, "authenticator")
    assert not password_matches(stored, password + "x", "authenticator")

    # A new password in .env takes effect on the next run.
    assert app_migrate(deploy_db, migrations, "rotated").returncode == 0
    stored = psql(deploy_db, "SELECT rolpassword FROM pg_authid WHERE rolname = 'authenticator'")
    assert password_matches(stored, "rotated", "authenticator")


def test_a_failing_migration_is_rolled_back_and_fails_the_step(
    deploy_db: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_ok.sql").write_text("CREATE TABLE deploy_ok (id int);\n")
    (migrations / "0002_bad.sql").write_text("CREATE TABLE deploy_half (id int);\nSELECT 1/0;\n")
    (migrations / "0003_later.sql").write_text("CREATE TABLE deploy_later (id int);\n")

    run = app_migrate(deploy_db, migrations, "pw")
    assert run.returncode != 0
    assert "division by zero" in run.stderr
    tables = psql(
        deploy_db,
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
        "WHERE relname LIKE 'deploy\\_%' AND relkind = 'r'",
    )
    assert tables == "deploy_ok"
    assert psql(deploy_db, "SELECT string_agg(name, ',') FROM rowgate.app_migrations") == (
        "0001_ok.sql"
    )


def test_the_demo_schema_deploys_through_app_migrate(deploy_db: str, tmp_path: Path) -> None:
    """deploy/migrations/README.md's way to try the deployment with the demo data."""
    readme = (DEPLOY / "migrations" / "README.md").read_text(encoding="utf-8")
    assert (
        "cp migrations/demo/0001_schema.sql migrations/demo/0002_seed.sql rls_policies/*.sql "
        "deploy/migrations/" in readme
    )
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    demo = [
        ROOT / "migrations" / "demo" / "0001_schema.sql",
        ROOT / "migrations" / "demo" / "0002_seed.sql",
        *sorted((ROOT / "rls_policies").glob("*.sql")),
    ]
    for path in demo:
        shutil.copy2(path, migrations / path.name)

    run = app_migrate(deploy_db, migrations, "pw")
    assert run.returncode == 0, run.stderr
    assert psql(deploy_db, "SELECT count(*) FROM rowgate.app_migrations") == str(len(demo))
    assert psql(deploy_db, "SELECT count(*) > 0 FROM public.orders") == "t"
    unprotected = psql(
        deploy_db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity",
    )
    assert unprotected == "0"


# --- deploy/haproxy.cfg in front of two stand-in replicas -------------------------------------


class _Replica(BaseHTTPRequestHandler):
    """Answers like a rowgate replica as far as the load balancer can tell."""

    name: ClassVar[str] = ""
    seen: ClassVar[list[dict[str, str]]] = []
    release_stream: ClassVar[threading.Event] = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/readyz":
            self._answer(200, b'{"status":"ready"}')
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            self.release_stream.wait(timeout=10)
            self.wfile.write(b"data: second\n\n")
        else:
            self._answer(404, b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # Repeated headers joined, as a server reading the list would see them.
        headers = {k.lower(): ", ".join(self.headers.get_all(k) or []) for k in self.headers}
        self.seen.append(headers | {"replica": self.name})
        self._answer(200, json.dumps({"replica": self.name}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A health check may read the status line and hang up.
        with contextlib.suppress(ConnectionResetError):
            self.wfile.write(body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/haproxy.cfg no longer has exactly one {old!r}"
    return text.replace(old, new)


class _Balancer:
    def __init__(self, tmp_path: Path) -> None:
        self.seen: list[dict[str, str]] = []
        self.release = threading.Event()
        self.replicas: dict[str, ThreadingHTTPServer] = {}
        cfg = HAPROXY_CFG.read_text(encoding="utf-8")
        for name in REPLICAS:
            server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(name))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.replicas[name] = server
            cfg = _replace_once(cfg, f" {name}:8080", f" 127.0.0.1:{server.server_port}")
        self.port, self.health_port = _free_port(), _free_port()
        cfg = _replace_once(cfg, "bind :8080", f"bind 127.0.0.1:{self.port}")
        cfg = _replace_once(cfg, "bind :8404", f"bind 127.0.0.1:{self.health_port}")
        (tmp_path / "haproxy.cfg").write_text(cfg)
        haproxy = shutil.which("haproxy")
        assert haproxy is not None
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _handler(self, replica: str) -> type[_Replica]:
        seen, release = self.seen, self.release

        class Handler(_Replica):
            name = replica
            ...

        Handler.seen = seen
        Handler.release_stream = release
        return Handler

    def get(self, path: str, port: int | None = None) -> int:
        url = f"http://127.0.0.1:{port or self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def post(self, host: str, headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/mcp",
            data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            headers={"Host": host, "Content-Type": "application/json", **headers},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http://127.0.0.1)
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                if self.get("/lb-healthz", self.health_port) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("haproxy did not become healthy")

    def close(self) -> None:
        self.release.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for server in self.replicas.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[_Balancer]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed: deploy/haproxy.cfg not run")
    lb = _Balancer(tmp_path)
    try:
        lb.wait_ready()
        yield lb
    finally:
        lb.close()


def test_the_balancer_alternates_replicas_and_forwards_the_client_host(
    balancer: _Balancer,
) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.example"}
    answered = [balancer.post("mcp.example.com:8080", spoofed)["replica"] for _ in range(6)]
    assert sorted(answered) == sorted(REPLICAS * 3)
    assert all(a != b for a, b in itertools.pairwise(answered)), answered
    for request in balancer.seen:
        assert request["host"] == "mcp.example.com:8080"
        assert request["x-forwarded-host"] == "mcp.example.com:8080"
        assert request["x-forwarded-proto"] == "http"
        assert request["x-forwarded-for"] == "127.0.0.1"


def test_the_balancer_streams_without_buffering(balancer: _Balancer) -> None:
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n")
        received = b""
        while b"data: first" not in received:  # before the replica has finished answering
            chunk = sock.recv(4096)
            assert chunk, f"stream closed early: {received!r}"
            received += chunk
        balancer.release.set()
        while chunk:
            chunk = sock.recv(4096)
            received += chunk
    assert b"data: second" in received


def test_the_balancer_sends_around_a_replica_that_is_gone(balancer: _Balancer) -> None:
    gone = balancer.replicas["rowgate-2"]
    gone.shutdown()
    gone.server_close()
    answered = {balancer.post("localhost:8080", {})["replica"] for _ in range(4)}
    assert answered == {"rowgate-1"}
    assert balancer.get("/lb-healthz", balancer.health_port) == 200


# --- the stack without Docker: real replicas with the compose environment, behind haproxy.cfg ---


def demo_migrations(directory: Path) -> Path:
    """deploy/migrations/ as deploy/migrations/README.md fills it to try the demo."""
    directory.mkdir()
    for path in (
        ROOT / "migrations" / "demo" / "0001_schema.sql",
        ROOT / "migrations" / "demo" / "0002_seed.sql",
        *sorted((ROOT / "rls_policies").glob("*.sql")),
    ):
        shutil.copy2(path, directory / path.name)
    return directory


def test_the_stack_serves_through_the_balancer(
    deploy_db: str, admin_dsn: str, tmp_path: Path
) -> None:
    """postgres -> `rowgate migrate` (the fixture) -> app-migrate.sh -> two `rowgate serve`
    replicas with the compose file's environment -> deploy/haproxy.cfg. The client reaches
    ROWGATE_RESOURCE_URL's host; an unknown Host is refused through the balancer too."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed: deploy/haproxy.cfg not run")
    from tests.rowgate_http import RowgateHttp

    migrated = app_migrate(deploy_db, demo_migrations(tmp_path / "migrations"), "pw")
    assert migrated.returncode == 0, migrated.stderr

    placeholders = env_file(TEST_PROFILE_ENV)
    # Any issuer will do (no token is verified here); a closed loopback port, never the network.
    placeholders["ROWGATE_AUTH_ISSUER"] = f"http://127.0.0.1:{_free_port()}/issuer"
    env = {
        k: interpolate(v, placeholders)
        for k, v in service("rowgate-1")["environment"].items()
        if v is not None
    }
    # The compose network's `postgres` host is this test's database.
    database = urlsplit(deploy_db).path.lstrip("/")
    env["DATABASE_URL"] = with_user_and_database(admin_dsn, "authenticator", database)

    with RowgateHttp(env) as first, RowgateHttp(env) as second:
        cfg = HAPROXY_CFG.read_text(encoding="utf-8")
        for name, replica in zip(REPLICAS, (first, second), strict=True):
            cfg = _replace_once(cfg, f" {name}:8080", f" 127.0.0.1:{replica.port}")
        port, health_port = _free_port(), _free_port()
        cfg = _replace_once(cfg, "bind :8080", f"bind 127.0.0.1:{port}")
        cfg = _replace_once(cfg, "bind :8404", f"bind 127.0.0.1:{health_port}")
        (tmp_path / "haproxy.cfg").write_text(cfg)
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(f"http://127.0.0.1:{health_port}/lb-healthz")
            resource = placeholders["ROWGATE_RESOURCE_URL"]
            host = urlsplit(resource).netloc
            lb = f"http://127.0.0.1:{port}"

            assert _request(f"{lb}/readyz", host)[0] == 200
            status, headers, body = _request(f"{lb}/.well-known/oauth-protected-resource/mcp", host)
            assert status == 200
            assert json.loads(body)["resource"] == resource
            ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
            status, headers, _ = _request(f"{lb}/mcp", host, ping)
            assert status == 401
            assert f'resource_metadata="{lb_origin(resource)}/.well-known/' in headers.get(
                "www-authenticate", ""
            )
            assert _request(f"{lb}/mcp", "evil.example", ping)[0] == 421
        finally:
            haproxy.terminate()
            haproxy.wait(timeout=10)


def lb_origin(resource: str) -> str:
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}"


def _request(url: str, host: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Host": host, "Accept": "application/json, text/event-stream"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    method = "GET" if body is None else "POST"
    response = httpx.request(method, url, headers=headers, content=body, timeout=10)
    return response.status_code, dict(response.headers), response.content


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if _request(url, "localhost")[0] == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")
