"""The shape of rowgate's settings: environment, `.env` and the optional TOML config file."""

from __future__ import annotations

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
