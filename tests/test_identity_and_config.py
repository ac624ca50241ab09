"""Who a call runs as (tokens are verified, never trusted) and how settings are read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from schemas.config import Settings
from server.app import Rowgate
from server.config import ConfigError, load_settings
from server.identity import IdentityError, principal_from_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
BOB = "00000000-0000-4000-a000-000000000b0b"


def token(**claims: object) -> str:
    # Parametrized tokens are made when the suite is collected, long before they are checked.
    body = {"sub": BOB, "role": "authenticated", "aud": "rowgate", "exp": time.time() + 3600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def settings_with(tok: str, **jwt_settings: object) -> Settings:
    return Settings.model_validate(
        {"token": tok, "jwt": {"secret": SECRET, "audience": "rowgate", **jwt_settings}}
    )


def test_a_valid_token_gives_role_and_claims() -> None:
    principal = principal_from_settings(settings_with(token(org="Acme")))
    assert principal.role == "authenticated" and principal.subject == BOB
    assert principal.claims["org"] == "Acme"


@pytest.mark.parametrize(
    ("bad_token", "reason"),
    [
        (token(aud="another-server"), "(?i)audience"),
        (token(exp=time.time() - 10), "expired"),
        (token(exp=None), "exp"),
        (jwt.encode({"sub": BOB, "role": "authenticated"}, "wrong-key" * 5), "rejected"),
        (jwt.encode({"sub": BOB, "role": "postgres", "aud": "rowgate", "exp": time.time() + 60},
                    "", algorithm="none"), "rejected"),
        ("not.a.jwt", "rejected"),
    ],
)  # fmt: skip
def test_bad_tokens_are_rejected(bad_token: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        principal_from_settings(settings_with(bad_token))


def test_a_token_without_a_key_or_role_is_refused() -> None:
    with pytest.raises(IdentityError, match="no key"):
        principal_from_settings(Settings(token=token()))
    with pytest.raises(IdentityError, match="role"):
        principal_from_settings(settings_with(token(role=None)))
    with pytest.raises(IdentityError, match="no identity"):
        principal_from_settings(Settings())


async def test_token_identity_runs_as_that_user(rg: Rowgate) -> None:
    principal = principal_from_settings(settings_with(token()))
    rows = (await rg.call("select_rows", {"table": "orders", "limit": 5}, principal)).model_dump()
    assert rows["rows"] and all(r["created_by"] for r in rows["rows"])


def test_environment_dotenv_and_config_file_precedence(tmp_path: Path) -> None:
    config = tmp_path / "rowgate.toml"
    config.write_text(
        'schemas = ["public", "sales"]\n[limits]\nmax_limit = 200\ndefault_limit = 20\n'
        '[tables."public.customers"]\nexclude_columns = ["notes"]\n'
    )
    dotenv = tmp_path / ".env"
    dotenv.write_text("ROWGATE_ROLE=from_dotenv\nROWGATE_MAX_LIMIT=300\n")
    settings = load_settings(
        config_file=config,
        dotenv_path=dotenv,
        environ={"ROWGATE_ROLE": "from_env", "ROWGATE_CLAIMS": '{"sub": "x"}'},
    )
    assert settings.role == "from_env" and settings.claims == {"sub": "x"}
    assert settings.limits.max_limit == 300 and settings.limits.default_limit == 20
    assert settings.schemas == ["public", "sales"]
    assert settings.tables["public.customers"].exclude_columns == ["notes"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ROWGATE_CLAIMS": "[1, 2]"}, "ROWGATE_CLAIMS must be a JSON object"),
        ({"ROWGATE_MAX_LIMIT": "0"}, "limits.max_limit"),
        ({"ROWGATE_DEFAULT_LIMIT": "900", "ROWGATE_MAX_LIMIT": "10"}, "default_limit"),
        ({"ROWGATE_ALLOW_PRIVILEGED_ROLE": "maybe"}, "true or false"),
    ],
)
def test_bad_settings_name_what_to_fix(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ, dotenv_path=tmp_path / "none")


async def test_config_narrows_columns_and_operations(login_dsn: str) -> None:
    from server.demo import demo_users

    settings = Settings.model_validate(
        {
            "database_url": login_dsn,
            "tables": {
                "customers": {"exclude_columns": ["email"]},
                "public.orders": {"operations": ["select"], "columns": ["id", "status", "total"]},
                "invoices": {"hidden": True},
            },
        }
    )
    app = await Rowgate.start(settings)
    try:
        alice = demo_users()["alice"].principal
        listing = (await app.call("list_tables", {}, alice)).model_dump()
        names = {t["name"]: t for t in listing["tables"]}
        assert "public.invoices" not in names
        assert names["public.orders"]["operations"] == ["select"]
        described = (await app.call("describe_table", {"table": "customers"}, alice)).model_dump()
        assert "email" not in {c["name"] for c in described["columns"]}
        assert "phone" in {c["name"] for c in described["columns"]}
        rows = (await app.call("select_rows", {"table": "orders", "limit": 2}, alice)).model_dump()
        assert set(rows["rows"][0]) == {"id", "status", "total"}
    finally:
        await app.close()


def test_public_key_tokens_and_no_algorithm_confusion() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    claims = {"sub": BOB, "role": "authenticated", "aud": "rowgate", "exp": time.time() + 60}
    signed = jwt.encode(claims, private, algorithm="RS256")
    ok = principal_from_settings(
        Settings.model_validate(
            {"token": signed, "jwt": {"public_key": public_pem, "audience": "rowgate"}}
        )
    )
    assert ok.subject == BOB
    # The classic attack: sign with HS256 using the public key as the HMAC secret.
    for algorithms in (None, ["HS256"], ["RS256", "HS256"]):
        jwt_settings: dict[str, object] = {"public_key": public_pem, "audience": "rowgate"}
        if algorithms:
            jwt_settings["algorithms"] = algorithms
        hs_token = _hmac_token_with_key(public_pem.encode(), {**claims, "role": "postgres"})
        with pytest.raises(IdentityError):
            principal_from_settings(
                Settings.model_validate({"token": hs_token, "jwt": jwt_settings})
            )


def _hmac_token_with_key(key: bytes, claims: dict[str, object]) -> str:
    """An HS256 token signed with arbitrary key bytes (PyJWT refuses PEM keys for HMAC)."""
    import base64
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{part(signature)}"


def test_nested_names_http_auth_and_scopes_from_every_source(tmp_path: Path) -> None:
    config = tmp_path / "rowgate.toml"
    config.write_text(
        '[http]\nresource_url = "https://data.example.com/mcp"\n'
        '[auth]\nissuer = "https://idp.example.com"\nallowed_roles = ["authenticated", "staff"]\n'
        '[scopes."crm:read"]\ntools = ["select_rows"]\ntables = ["customers"]\n'
    )
    settings = load_settings(
        config_file=config,
        dotenv_path=tmp_path / "none",
        environ={
            "ROWGATE_LIMITS__MAX_LIMIT": "70",
            "ROWGATE_AUTH__CLOCK_SKEW_SECONDS": "5",
            "ROWGATE_ALLOWED_HOSTS": "data.example.com, data.example.com:443",
            "ROWGATE_SUPABASE_CLIENT_IDS": "a,b",
            "ROWGATE_SCHEMAS": "public,sales",
            "ROWGATE_CLAIMS": '{"sub": "x"}',
        },
    )
    assert settings.limits.max_limit == 70 and settings.auth.clock_skew_seconds == 5
    assert settings.http.resource_url == "https://data.example.com/mcp"
    assert settings.http.allowed_hosts == ["data.example.com", "data.example.com:443"]
    assert settings.auth.issuer == "https://idp.example.com"
    assert settings.auth.allowed_roles == ["authenticated", "staff"]
    assert settings.auth.supabase_client_ids == ["a", "b"]
    assert settings.scopes["crm:read"].tables == ["customers"]
    assert "db:read" not in settings.scopes  # a configured matrix replaces the default one
    assert settings.schemas == ["public", "sales"] and settings.claims == {"sub": "x"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ROWGATE_HTTP_PORT": "eighty"}, "ROWGATE_HTTP_PORT must be a number"),
        ({"ROWGATE_HTTP_PORT": "70000"}, "http.port"),
        ({"ROWGATE_AUTH__CLOCK_SKEW_SECONDS": "9999"}, "auth.clock_skew_seconds"),
        ({"ROWGATE_SCOPES": '{"db:read": {"tools": ["drop_table"]}}'}, "scopes.db:read.tools"),
        ({"ROWGATE_AUTH_DISABLED": "perhaps"}, "ROWGATE_AUTH_DISABLED must be true or false"),
    ],
)
def test_bad_http_and_auth_settings_name_what_to_fix(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ, dotenv_path=tmp_path / "none")


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(environ={"ROWGATE_CONFIG": str(tmp_path / "nope.toml")})


def test_stdio_user_scopes_come_from_the_token_or_the_config() -> None:
    plain = Settings(role="authenticated")
    assert principal_from_settings(plain).scopes is None  # not narrowed
    configured = Settings(role="authenticated", local_scopes=["db:read"])
    assert principal_from_settings(configured).scopes == frozenset({"db:read"})
    scoped = settings_with(token(scope="db:read db:write"))
    assert principal_from_settings(scoped).scopes == frozenset({"db:read", "db:write"})
