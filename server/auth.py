"""Bearer tokens -> Principal, for Streamable HTTP (an OAuth 2.1 resource server).

A token is trusted only if the authorization server we were configured with issued it
for this server: its signature checks against the issuer's JWKS (discovered from the
issuer's metadata, cached, refetched for an unknown `kid` at a bounded rate), its
algorithm is on an explicit allowlist (never `none`, never HMAC where a public key is
expected), and `iss`, `exp`/`nbf` (with a small skew) and `aud` (this server's canonical
resource URI, RFC 8707) hold. Opaque tokens are checked by introspection (RFC 7662).

Supabase Auth cannot bind a token to a resource (its `aud` is always `authenticated`), so
in Supabase mode only tokens of OAuth clients on an allowlist are trusted.

The token itself never leaves this module: not to Postgres, not to a log, not to an error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from schemas.config import AuthSettings
from server import audit
from server.identity import Principal

log = logging.getLogger("rowgate")

FETCH_TIMEOUT_S = 5.0
JWKS_MAX_AGE_S = 15 * 60
VERIFIED_CACHE_SIZE = 4096
SUPABASE_AUDIENCE = "authenticated"


class AuthError(Exception):
    """A request's credentials are missing, invalid or not enough. `status` 401 asks for a
    (new) token, 403 says this token will not do; `error` is the RFC 6750 error code."""

    def __init__(
        self,
        reason: str,
        *,
        status: int = 401,
        error: str = "invalid_token",
        scope: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error = error
        self.scope = scope


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires_at: float
    kid: str | None


class _Keys:
    """The issuer's signing keys by `kid`, fetched without blocking the event loop."""

    def __init__(self, client: httpx.AsyncClient, refresh_seconds: float) -> None:
        self._client = client
        self._refresh_seconds = refresh_seconds
        self._url: str | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def use(self, url: str) -> None:
        self._url = url

    async def get(self, kid: str | None) -> jwt.PyJWK | None:
        stale = time.monotonic() - self._fetched_at > JWKS_MAX_AGE_S
        if kid not in self._keys or stale:
            await self._refresh(force=stale)
        return self._keys.get(kid)

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            # One fetch for many waiters, and at most one per refresh interval: a flood of
            # tokens with made-up kids cannot turn into a flood of requests to the issuer.
            if not force and time.monotonic() - self._fetched_at < self._refresh_seconds:
                return
            if self._url is None:
                raise AuthError("the authorization server's keys are not known yet")
            try:
                response = await self._client.get(self._url)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                self._fetched_at = time.monotonic()  # back off, keep the keys we have
                log.warning("cannot fetch the JWKS from %s: %s", self._url, exc)
                return
            self._keys = keys
            self._fetched_at = time.monotonic()

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)


def _parse_jwks(document: Any) -> dict[str | None, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if "d" in entry or entry.get("kty") == "oct":
            continue  # never a private or symmetric key from a public document
        try:
            keys[entry.get("kid")] = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
    return keys


class TokenVerifier:
    def __init__(
        self,
        settings: AuthSettings,
        resource_url: str,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.resource_url = resource_url
        self.supabase = settings.supabase_url is not None
        if self.supabase:
            assert settings.supabase_url is not None
            self.issuer = settings.supabase_url.rstrip("/") + "/auth/v1"
            if not settings.supabase_client_ids:
                raise ValueError(
                    "Supabase mode needs ROWGATE_SUPABASE_CLIENT_IDS: the OAuth clients "
                    "registered for this server (Supabase tokens are not bound to a resource)"
                )
        elif settings.issuer:
            self.issuer = settings.issuer
        else:
            raise ValueError(
                "HTTP needs an authorization server: set ROWGATE_AUTH_ISSUER (or "
                "ROWGATE_SUPABASE_URL), or ROWGATE_AUTH_DISABLED=true on loopback"
            )
        self.algorithms = [a for a in settings.algorithms if a.lower() != "none"]
        if any(a.upper().startswith("HS") for a in self.algorithms):
            raise ValueError(
                "ROWGATE_AUTH_ALGORITHMS: HS* would let a public key double as an HMAC secret; "
                "only a Supabase project's legacy secret (ROWGATE_SUPABASE_JWT_SECRET) is HMAC"
            )
        self._client = client or httpx.AsyncClient(timeout=FETCH_TIMEOUT_S)
        self._owns_client = client is None
        self._keys = _Keys(self._client, settings.jwks_refresh_seconds)
        self._metadata: dict[str, Any] | None = None
        self._metadata_lock = asyncio.Lock()
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._supabase: Any = None

    @property
    def authorization_servers(self) -> list[str]:
        return [self.issuer]

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def principal(self, token: str) -> Principal:
        """The end user this token stands for, or AuthError (audited, without the token)."""
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None:
            fresh = now <= cached.expires_at + self.settings.clock_skew_seconds
            if fresh and (cached.kid is None or cached.kid in self._keys.kids):
                return cached.principal
            self._verified.pop(token, None)
        try:
            verified = await self._verify(token)
        except AuthError as exc:
            _audit_failure(exc, token)
            raise
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified.principal

    async def _verify(self, token: str) -> _Verified:
        if token.count(".") != 2:
            if "." in token or not self.settings.introspection_client_id:
                raise AuthError("the token is not a JWT and no introspection is configured")
            return await self._introspect(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is malformed") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or not isinstance(kid, str | None):
            raise AuthError("the token header is malformed")
        if self.supabase and alg == "HS256":
            claims = await self._supabase_legacy(token)
        else:
            if alg not in self.algorithms:
                raise AuthError(f"tokens signed with {alg!r} are not accepted")
            await self._discover()
            key = await self._keys.get(kid)
            if key is None:
                raise AuthError("the token's signing key is not one of the issuer's keys")
            if _KEY_TYPES.get(alg[:2]) != key.key_type:
                raise AuthError("the token's algorithm does not match its key")
            claims = self._decode(token, key.key, [alg])
        return _Verified(self._map(claims), float(claims["exp"]), kid)

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
        audience = SUPABASE_AUDIENCE if self.supabase else self.resource_url
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=audience,
                issuer=self.issuer,
                leeway=self.settings.clock_skew_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidAudienceError:
            raise AuthError(f"the token was not issued for this server ({audience})") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token was issued by another authorization server") from None
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is invalid: {exc}") from None
        return claims

    async def _discover(self) -> None:
        if self._metadata is not None:
            return
        async with self._metadata_lock:
            if self._metadata is not None:
                return
            if self.supabase:
                metadata: dict[str, Any] = {"jwks_uri": self.issuer + "/.well-known/jwks.json"}
            elif self.settings.jwks_url:
                metadata = {"jwks_uri": self.settings.jwks_url}
            else:
                metadata = await self._fetch_metadata()
            self._keys.use(str(metadata["jwks_uri"]))
            self._metadata = metadata

    async def _fetch_metadata(self) -> dict[str, Any]:
        for url in metadata_urls(self.issuer):
            try:
                response = await self._client.get(url)
            except httpx.HTTPError as exc:
                log.warning("cannot reach the authorization server at %s: %s", url, exc)
                raise AuthError("the authorization server is unreachable; retry shortly") from None
            if response.status_code != 200:
                continue
            try:
                metadata = response.json()
            except ValueError:
                continue
            if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
                log.warning("%s does not describe issuer %s; ignored", url, self.issuer)
                continue
            if isinstance(metadata.get("jwks_uri"), str):
                return metadata
        raise AuthError("the authorization server publishes no usable metadata (jwks_uri)")

    async def _introspect(self, token: str) -> _Verified:
        settings = self.settings
        if self._metadata is None:
            self._metadata = await self._fetch_metadata()
            self._keys.use(str(self._metadata["jwks_uri"]))
        endpoint = self._metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str):
            raise AuthError("the authorization server offers no token introspection")
        try:
            response = await self._client.post(
                endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(
                    settings.introspection_client_id or "",
                    settings.introspection_client_secret or "",
                ),
            )
            response.raise_for_status()
            claims = response.json()
        except (httpx.HTTPError, ValueError):
            raise AuthError("token introspection failed; retry shortly") from None
        if not isinstance(claims, dict) or claims.get("active") is not True:
            raise AuthError("the token is not active")
        claims.setdefault("iss", self.issuer)  # RFC 7662 makes it optional
        self._check_claims(claims, self.resource_url)
        return _Verified(self._map(claims), float(claims["exp"]), None)

    async def _supabase_legacy(self, token: str) -> dict[str, Any]:
        """An older project's HS256 token: checked with its secret when we have it, else at
        Supabase Auth itself (which knows the secret) through the `supabase` client."""
        settings = self.settings
        if settings.supabase_jwt_secret:
            return self._decode(token, settings.supabase_jwt_secret, ["HS256"])
        if not settings.supabase_key:
            raise AuthError(
                "legacy HS256 tokens need ROWGATE_SUPABASE_JWT_SECRET or ROWGATE_SUPABASE_KEY"
            )
        try:
            client = await self._supabase_client(settings.supabase_key)
            answer = await client.auth.get_user(token)
        except Exception:  # the client raises its own error types for a refused token
            raise AuthError("Supabase Auth did not accept the token") from None
        if answer is None or answer.user is None:
            raise AuthError("Supabase Auth did not accept the token")
        # Supabase vouched for the signature; every other check is still ours.
        claims = jwt.decode(token, options={"verify_signature": False})
        self._check_claims(claims, SUPABASE_AUDIENCE)
        if str(claims.get("sub")) != str(answer.user.id):
            raise AuthError("Supabase Auth answered for another user")
        return claims

    async def _supabase_client(self, key: str) -> Any:
        if self._supabase is None:
            from supabase import acreate_client

            assert self.settings.supabase_url is not None
            self._supabase = await acreate_client(self.settings.supabase_url, key)
        return self._supabase

    def _check_claims(self, claims: Mapping[str, Any], audience: str) -> None:
        """What jwt.decode checks, for claims that arrived another way (introspection, or a
        token Supabase Auth vouched for)."""
        skew = self.settings.clock_skew_seconds
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise AuthError("the token was issued by another authorization server")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences or []
        if audience not in audiences:
            raise AuthError(f"the token was not issued for this server ({audience})")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < now - skew:
            raise AuthError("the token has expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + skew:
            raise AuthError("the token is not valid yet")

    def _map(self, claims: dict[str, Any]) -> Principal:
        settings = self.settings
        client_id = claims.get("client_id", claims.get("azp"))
        client_id = client_id if isinstance(client_id, str) else None
        if self.supabase and client_id not in settings.supabase_client_ids:
            raise AuthError(
                "the token belongs to an OAuth client that is not registered for this server",
                status=403,
                error="access_denied",
            )
        role = _claim(claims, settings.role_claim)
        if not isinstance(role, str) or not role:
            raise AuthError(f"the token has no {settings.role_claim!r} claim naming a role")
        if role not in settings.allowed_roles:
            raise AuthError(
                f"the role {role!r} may not be used through this server", status=403,
                error="access_denied",
            )  # fmt: skip
        scope = claims.get("scope", claims.get("scp"))
        if isinstance(scope, str):
            scopes = frozenset(scope.split())
        elif isinstance(scope, list):
            scopes = frozenset(str(s) for s in scope)
        else:
            scopes = frozenset(settings.scopes_when_absent)
        if self.supabase or "client_id" in claims or client_id is None:
            carried = claims
        else:  # policies read client_id; an `azp`-only issuer gets it filled in
            carried = {**claims, "client_id": client_id}
        carried = {k: v for k, v in carried.items() if k not in ("active", "token_type")}
        return Principal(role=role, claims=carried, scopes=scopes, client_id=client_id)


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 (path inserted after the well-known prefix), then OpenID Connect Discovery
    in both of its spellings."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
    ]


_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _audit_failure(exc: AuthError, token: str) -> None:
    """What the token claims about itself (unverified, so only labels), never the token."""
    claimed: dict[str, Any] = {}
    if token.count(".") == 2:
        try:
            payload = token.split(".")[1]
            claimed = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, UnicodeDecodeError):
            claimed = {}
    if not isinstance(claimed, dict):
        claimed = {}

    def label(key: str) -> str | None:
        value = claimed.get(key)
        return value[:200] if isinstance(value, str) else None

    audit.auth_failure(
        reason=exc.reason,
        status=exc.status,
        issuer=label("iss"),
        client_id=label("client_id") or label("azp"),
        subject=label("sub"),
        token_id=hashlib.sha256(token.encode()).hexdigest()[:12],
    )
