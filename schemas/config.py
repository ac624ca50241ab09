"""The shape of rowgate's settings: environment, `.env` and the optional TOML config file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from schemas.tools import Operation


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TableConfig(_Strict):
    """Narrows (never widens) what Postgres already allows on one table."""

    columns: list[str] | None = Field(
        default=None, description="Only these columns are ever exposed (default: all)."
    )
    exclude_columns: list[str] = Field(default_factory=list)
    operations: list[Operation] | None = Field(
        default=None, description="Allowed tools on this table (default: all)."
    )
    description: str | None = None
    hidden: bool = False


class Limits(_Strict):
    default_limit: int = Field(default=50, ge=1)
    max_limit: int = Field(default=500, ge=1)
    max_write_rows: int = Field(default=100, ge=1)
    statement_timeout_ms: int = Field(default=5000, ge=1)
    lock_timeout_ms: int = Field(default=2000, ge=1)
    idempotency_ttl_seconds: int = Field(default=86400, ge=60)

    @model_validator(mode="after")
    def _default_within_max(self) -> Limits:
        if self.default_limit > self.max_limit:
            raise ValueError("default_limit must not exceed max_limit")
        return self


class JwtSettings(_Strict):
    secret: str | None = Field(default=None, description="HMAC key (HS256/384/512).")
    public_key: str | None = Field(default=None, description="PEM public key (RS*/ES*/EdDSA).")
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    audience: str | None = None
    issuer: str | None = None
    role_claim: str = "role"


ToolName = Literal[
    "list_tables", "describe_table", "select_rows", "insert_rows", "update_rows", "delete_rows"
]
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"
)  # fmt: skip


class ScopeGrant(_Strict):
    """What holding one OAuth scope allows: these tools, on these tables (default: all)."""

    tools: list[ToolName]
    tables: list[str] | None = Field(
        default=None, description="Only these tables (qualified or bare names); default all."
    )


def default_scopes() -> dict[str, ScopeGrant]:
    return {
        "db:read": ScopeGrant(tools=["list_tables", "describe_table", "select_rows"]),
        "db:write": ScopeGrant(tools=["insert_rows", "update_rows"]),
        "db:delete": ScopeGrant(tools=["delete_rows"]),
    }


class AuthSettings(_Strict):
    """Streamable HTTP as an OAuth 2.1 resource server: which tokens are trusted."""

    issuer: str | None = Field(
        default=None, description="Authorization server issuer; JWKS discovered from its metadata."
    )
    jwks_url: str | None = Field(default=None, description="Skip discovery: the issuer's JWKS.")
    algorithms: list[str] = Field(default_factory=lambda: list(ASYMMETRIC_ALGORITHMS))
    clock_skew_seconds: int = Field(default=30, ge=0, le=300)
    role_claim: str = Field(default="role", description="Claim (dotted path) naming the role.")
    allowed_roles: list[str] = Field(default_factory=lambda: ["authenticated"])
    scopes_when_absent: list[str] = Field(
        default_factory=list,
        description="Scopes for a token that carries none (Supabase tokens have no scope).",
    )
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = None
    jwks_refresh_seconds: float = Field(
        default=30, ge=0, description="Least time between two JWKS fetches for an unknown kid."
    )
    disabled: bool = Field(
        default=False, description="No auth (loopback only): calls run as ROWGATE_ROLE/CLAIMS."
    )
    supabase_url: str | None = Field(
        default=None, description="Supabase project URL: trust its Auth server (see README)."
    )
    supabase_client_ids: list[str] = Field(
        default_factory=list, description="OAuth clients registered for this MCP server."
    )
    supabase_jwt_secret: str | None = Field(
        default=None, description="Legacy HS256 JWT secret of an older Supabase project."
    )
    supabase_key: str | None = Field(
        default=None, description="Anon key: verify legacy tokens at Supabase when no secret."
    )


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    resource_url: str | None = Field(
        default=None,
        description="Canonical URL of the /mcp endpoint as clients reach it; tokens' aud.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host headers accepted (default: the bound host:port)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser Origins accepted (default: none)."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    request_timeout_seconds: float = Field(default=30, gt=0)
    shutdown_grace_seconds: float = Field(default=10, ge=0)


class Settings(_Strict):
    database_url: str | None = None
    schemas: list[str] = Field(default_factory=lambda: ["public"])
    role: str | None = Field(default=None, description="Postgres role of the local user.")
    claims: dict[str, JsonValue] = Field(default_factory=dict)
    token: str | None = Field(default=None, description="A user JWT; sets role and claims.")
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    allow_privileged_role: bool = Field(
        default=False, description="Permit acting as a superuser or BYPASSRLS role."
    )
    catalog_ttl_seconds: float = Field(
        default=60, ge=0, description="How long tables, columns and grants are cached."
    )
    transaction_pooler: bool = Field(
        default=False,
        description="The database URL goes through a transaction-mode pooler (PgBouncer, "
        "Supavisor on port 6543): no prepared statement outlives a transaction.",
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    limits: Limits = Field(default_factory=Limits)
    tables: dict[str, TableConfig] = Field(default_factory=dict)
    http: HttpSettings = Field(default_factory=HttpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    scopes: dict[str, ScopeGrant] = Field(
        default_factory=default_scopes, description="OAuth scope -> the tools it allows."
    )
    local_scopes: list[str] | None = Field(
        default=None,
        description="Scopes of the stdio user when its token names none (default: all).",
    )
