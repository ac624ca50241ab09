"""Who a call runs as: the Principal, from local settings (stdio) or a verified user JWT."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from schemas.config import ASYMMETRIC_ALGORITHMS, JwtSettings, Settings


class IdentityError(Exception):
    """The caller's identity is missing or not trustworthy; the message says why."""


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    claims: Mapping[str, Any]
    # None: not narrowed by the scope matrix (the local user); else the token's scopes.
    scopes: frozenset[str] | None = None
    client_id: str | None = None
    claims_json: str = field(init=False)

    def __post_init__(self) -> None:
        # Serialized once: it is sent with every call. ASCII-only keeps the SQL literal simple.
        object.__setattr__(
            self, "claims_json", json.dumps(dict(self.claims), ensure_ascii=True, sort_keys=True)
        )

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub")
        return None if sub is None else str(sub)

    @property
    def label(self) -> str:
        return f"{self.role}:{self.subject or ''}"


def verify_token(token: str, settings: JwtSettings) -> dict[str, Any]:
    """The claims of a user JWT whose signature, expiry, audience and issuer check out."""
    key = settings.public_key or settings.secret
    if not key:
        raise IdentityError(
            "ROWGATE_TOKEN is set but no key to verify it: set ROWGATE_JWT_SECRET (HS*) "
            "or ROWGATE_JWT_PUBLIC_KEY (RS*/ES*/EdDSA)"
        )
    algorithms = settings.algorithms
    if settings.public_key:
        # Never let a public key double as an HMAC secret (algorithm confusion).
        if "algorithms" not in settings.model_fields_set:
            algorithms = list(ASYMMETRIC_ALGORITHMS)
        if any(a.upper().startswith("HS") or a.lower() == "none" for a in algorithms):
            raise IdentityError("ROWGATE_JWT_ALGORITHMS: HS*/none cannot be used with a public key")
    options = {"require": ["exp"], "verify_aud": settings.audience is not None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.audience,
            issuer=settings.issuer,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.PyJWTError as exc:
        raise IdentityError(f"ROWGATE_TOKEN was rejected: {exc}") from None
    return claims


def principal_from_settings(settings: Settings) -> Principal:
    """The local user's identity for stdio: a verified token, or an explicit role + claims."""
    if settings.token:
        claims = verify_token(settings.token, settings.jwt)
        role = claims.get(settings.jwt.role_claim)
        if not isinstance(role, str) or not role:
            raise IdentityError(
                f"the token has no '{settings.jwt.role_claim}' claim naming the Postgres role"
            )
        return Principal(role=role, claims=claims, scopes=_local_scopes(settings, claims))
    if not settings.role:
        raise IdentityError(
            "no identity: set ROWGATE_ROLE (and ROWGATE_CLAIMS) or ROWGATE_TOKEN; rowgate never "
            "falls back to the connection's own role"
        )
    return Principal(
        role=settings.role, claims=settings.claims, scopes=_local_scopes(settings, None)
    )


def _local_scopes(settings: Settings, claims: dict[str, Any] | None) -> frozenset[str] | None:
    """The stdio user's scopes: its token's, else the configured ones, else not narrowed."""
    scope = (claims or {}).get("scope", (claims or {}).get("scp"))
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(str(s) for s in scope)
    return None if settings.local_scopes is None else frozenset(settings.local_scopes)
