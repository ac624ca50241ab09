"""Settings from the environment, a `.env` file and an optional TOML config file.

Precedence: environment > `.env` > config file > defaults. Every problem is reported
as one ConfigError naming the variable or key to fix.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError

from schemas.config import Settings


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _json_object(name: str, value: str) -> Any:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f'{name} must be a JSON object, e.g. \'{{"sub": "..."}}\': {exc}'
        ) from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(parsed).__name__}")
    return parsed


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


# Environment variable -> (path in Settings, parser).
_ENV: dict[str, tuple[tuple[str, ...], Any]] = {
    "DATABASE_URL": (("database_url",), str),
    "ROWGATE_SCHEMAS": (("schemas",), _csv),
    "ROWGATE_ROLE": (("role",), str),
    "ROWGATE_CLAIMS": (("claims",), lambda v: _json_object("ROWGATE_CLAIMS", v)),
    "ROWGATE_TOKEN": (("token",), str),
    "ROWGATE_JWT_SECRET": (("jwt", "secret"), str),
    "ROWGATE_JWT_PUBLIC_KEY": (("jwt", "public_key"), str),
    "ROWGATE_JWT_ALGORITHMS": (("jwt", "algorithms"), _csv),
    "ROWGATE_JWT_AUDIENCE": (("jwt", "audience"), str),
    "ROWGATE_JWT_ISSUER": (("jwt", "issuer"), str),
    "ROWGATE_ALLOW_PRIVILEGED_ROLE": (
        ("allow_privileged_role",),
        lambda v: _bool("ROWGATE_ALLOW_PRIVILEGED_ROLE", v),
    ),
    "ROWGATE_DEFAULT_LIMIT": (("limits", "default_limit"), int),
    "ROWGATE_MAX_LIMIT": (("limits", "max_limit"), int),
    "ROWGATE_MAX_WRITE_ROWS": (("limits", "max_write_rows"), int),
    "ROWGATE_STATEMENT_TIMEOUT_MS": (("limits", "statement_timeout_ms"), int),
    "ROWGATE_CATALOG_TTL_SECONDS": (("catalog_ttl_seconds",), float),
    "ROWGATE_TRANSACTION_POOLER": (
        ("transaction_pooler",),
        lambda v: _bool("ROWGATE_TRANSACTION_POOLER", v),
    ),
}

ENV_VARIABLES = (*_ENV, "ROWGATE_CONFIG")


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file not found: {path} (set by ROWGATE_CONFIG/--config)"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings; `overrides` (from command-line flags) win over everything."""
    env: dict[str, str] = {}
    dotenv_file = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    if dotenv_file.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    file_name = config_file or (Path(env["ROWGATE_CONFIG"]) if env.get("ROWGATE_CONFIG") else None)
    data: dict[str, Any] = _read_config_file(file_name) if file_name else {}

    for name, (path, parse) in _ENV.items():
        if name in env:
            try:
                value = parse(env[name])
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from exc
            _set_path(data, path, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
