"""Settings from the environment, a `.env` file and an optional TOML config file, read by
pydantic-settings.

Precedence: command-line flags > environment > `.env` > config file > defaults. Every
setting has a nested name (`ROWGATE_LIMITS__MAX_LIMIT`, `ROWGATE_AUTH__ISSUER`) and the
common ones a flat one too (`ROWGATE_MAX_LIMIT`, `ROWGATE_AUTH_ISSUER`, `DATABASE_URL`).
Every problem is reported as one ConfigError naming the variable or key to fix.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from schemas.config import Settings


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _csv(name: str, value: str) -> list[str]:
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


def _text(name: str, value: str) -> str:
    return value


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    return int(number) if number.is_integer() else number


Parser = Callable[[str, str], Any]

# The flat environment names: variable -> (path in Settings, parser).
_FLAT: dict[str, tuple[tuple[str, ...], Parser]] = {
    "DATABASE_URL": (("database_url",), _text),
    "ROWGATE_SCHEMAS": (("schemas",), _csv),
    "ROWGATE_ROLE": (("role",), _text),
    "ROWGATE_CLAIMS": (("claims",), _json_object),
    "ROWGATE_TOKEN": (("token",), _text),
    "ROWGATE_JWT_SECRET": (("jwt", "secret"), _text),
    "ROWGATE_JWT_PUBLIC_KEY": (("jwt", "public_key"), _text),
    "ROWGATE_JWT_ALGORITHMS": (("jwt", "algorithms"), _csv),
    "ROWGATE_JWT_AUDIENCE": (("jwt", "audience"), _text),
    "ROWGATE_JWT_ISSUER": (("jwt", "issuer"), _text),
    "ROWGATE_ALLOW_PRIVILEGED_ROLE": (("allow_privileged_role",), _bool),
    "ROWGATE_DEFAULT_LIMIT": (("limits", "default_limit"), _number),
    "ROWGATE_MAX_LIMIT": (("limits", "max_limit"), _number),
    "ROWGATE_MAX_WRITE_ROWS": (("limits", "max_write_rows"), _number),
    "ROWGATE_STATEMENT_TIMEOUT_MS": (("limits", "statement_timeout_ms"), _number),
    "ROWGATE_CATALOG_TTL_SECONDS": (("catalog_ttl_seconds",), _number),
    "ROWGATE_TRANSACTION_POOLER": (("transaction_pooler",), _bool),
    "ROWGATE_SCOPES": (("scopes",), _json_object),
    "ROWGATE_LOCAL_SCOPES": (("local_scopes",), _csv),
    "ROWGATE_HTTP_HOST": (("http", "host"), _text),
    "ROWGATE_HTTP_PORT": (("http", "port"), _number),
    "ROWGATE_RESOURCE_URL": (("http", "resource_url"), _text),
    "ROWGATE_ALLOWED_HOSTS": (("http", "allowed_hosts"), _csv),
    "ROWGATE_ALLOWED_ORIGINS": (("http", "allowed_origins"), _csv),
    "ROWGATE_MAX_BODY_BYTES": (("http", "max_body_bytes"), _number),
    "ROWGATE_REQUEST_TIMEOUT_SECONDS": (("http", "request_timeout_seconds"), _number),
    "ROWGATE_AUTH_ISSUER": (("auth", "issuer"), _text),
    "ROWGATE_AUTH_JWKS_URL": (("auth", "jwks_url"), _text),
    "ROWGATE_AUTH_ALGORITHMS": (("auth", "algorithms"), _csv),
    "ROWGATE_AUTH_CLOCK_SKEW_SECONDS": (("auth", "clock_skew_seconds"), _number),
    "ROWGATE_AUTH_ROLE_CLAIM": (("auth", "role_claim"), _text),
    "ROWGATE_AUTH_ALLOWED_ROLES": (("auth", "allowed_roles"), _csv),
    "ROWGATE_AUTH_SCOPES_WHEN_ABSENT": (("auth", "scopes_when_absent"), _csv),
    "ROWGATE_AUTH_INTROSPECTION_CLIENT_ID": (("auth", "introspection_client_id"), _text),
    "ROWGATE_AUTH_INTROSPECTION_CLIENT_SECRET": (("auth", "introspection_client_secret"), _text),
    "ROWGATE_AUTH_DISABLED": (("auth", "disabled"), _bool),
    "ROWGATE_SUPABASE_URL": (("auth", "supabase_url"), _text),
    "ROWGATE_SUPABASE_CLIENT_IDS": (("auth", "supabase_client_ids"), _csv),
    "ROWGATE_SUPABASE_JWT_SECRET": (("auth", "supabase_jwt_secret"), _text),
    "ROWGATE_SUPABASE_KEY": (("auth", "supabase_key"), _text),
}

ENV_VARIABLES = (*_FLAT, "ROWGATE_CONFIG")


class _NestedEnvironment(EnvSettingsSource):
    """`ROWGATE_<FIELD>` and `ROWGATE_<SECTION>__<FIELD>` from the given variables (the
    process environment over `.env`), not from os.environ directly, so tests can pass theirs."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # A flat name (ROWGATE_SCHEMAS=a,b) is parsed by its own rule, not as JSON here.
        return {k.lower(): v for k, v in self._variables.items() if k.upper() not in _FLAT}


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The flat names of `_FLAT`, each parsed the way its documentation says."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, (path, parse) in _FLAT.items():
            if name in self._variables:
                target = data
                for key in path[:-1]:
                    target = target.setdefault(key, {})
                target[path[-1]] = parse(name, self._variables[name])
        return data


def _sources(
    variables: Mapping[str, str], config_file: Path | None
) -> Callable[..., tuple[PydanticBaseSettingsSource, ...]]:
    def customise(
        owner: type[BaseSettings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_builtin: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _NestedEnvironment(settings_cls, variables),
            _FlatEnvironment(settings_cls, variables),
        ]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    return customise


def _check_config_file(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file not found: {path} (set by ROWGATE_CONFIG/--config)"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings; `overrides` (from command-line flags) win over everything."""
    variables: dict[str, str] = {}
    dotenv_file = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    if dotenv_file.is_file():
        variables.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    variables.update(os.environ if environ is None else environ)

    if config_file is None and variables.get("ROWGATE_CONFIG"):
        config_file = Path(variables["ROWGATE_CONFIG"])
    if config_file is not None:
        _check_config_file(config_file)

    class _Loaded(Settings, BaseSettings):
        model_config = SettingsConfigDict(
            extra="forbid",
            env_prefix="ROWGATE_",
            env_nested_delimiter="__",
            case_sensitive=False,
            nested_model_default_partial_update=True,
        )
        settings_customise_sources = classmethod(_sources(variables, config_file))

    init = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        loaded = _Loaded(**init)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
    # A plain Settings: nothing downstream should re-read the environment by accident.
    return Settings.model_validate(loaded.model_dump(exclude_unset=True))
