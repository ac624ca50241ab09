"""A development authorization server for `rowgate demo --transport http`, on loopback only.

It issues a token for each demo user (OAuth client credentials: the client id is the demo
user's name), signed with a key kept beside the embedded database, and publishes RFC 8414
metadata and a JWKS. rowgate verifies these tokens exactly like any issuer's (discovery,
JWKS, audience, scopes): the demo exercises the real resource-server path.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.types import Receive, Scope, Send

from server.demo import DemoUser

ISSUER_PATH = "/dev-auth"
TOKEN_LIFETIME_S = 8 * 3600
MAX_FORM_BYTES = 8192


class DevAuthority:
    def __init__(
        self,
        base_url: str,
        resource_url: str,
        users: dict[str, DemoUser],
        scopes: list[str],
        key_file: Path,
    ) -> None:
        self.issuer = base_url.rstrip("/") + ISSUER_PATH
        self.resource_url = resource_url
        self.users = users
        self.scopes = scopes
        self._key = _load_or_create_key(key_file)
        public = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self._kid = (
            "demo-"
            + jwt.utils.base64url_encode(json.dumps(public, sort_keys=True).encode()).decode()[-12:]
        )
        self._jwks = {"keys": [{**public, "kid": self._kid, "use": "sig", "alg": "ES256"}]}

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    def routes(self) -> dict[str, Any]:
        return {
            "/.well-known/oauth-authorization-server" + ISSUER_PATH: self._metadata,
            "/.well-known/openid-configuration" + ISSUER_PATH: self._metadata,
            ISSUER_PATH + "/jwks.json": self._jwks_route,
            ISSUER_PATH + "/token": self._token_route,
        }

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        demo = self.users[user]
        now = int(time.time())
        claims: dict[str, Any] = {
            **demo.principal.claims,
            "iss": self.issuer,
            "aud": self.resource_url,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": secrets.token_hex(8),
            "client_id": user,
            "scope": " ".join(self.scopes if scopes is None else scopes),
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._kid})

    async def _metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _json(
            send,
            200,
            {
                "issuer": self.issuer,
                "token_endpoint": self.token_endpoint,
                "jwks_uri": self.issuer + "/jwks.json",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": self.scopes,
                "response_types_supported": [],
            },
        )

    async def _jwks_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _json(send, 200, self._jwks)

    async def _token_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _json(send, 405, {"error": "invalid_request", "error_description": "POST"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES or not message.get("more_body"):
                break
        form = {k: v[-1] for k, v in parse_qs(body.decode("latin-1")).items()}
        user = form.get("client_id", "")
        if form.get("grant_type") != "client_credentials":
            await _json(send, 400, {"error": "unsupported_grant_type"})
            return
        if user not in self.users:
            hint = f"client_id is a demo user: {', '.join(self.users)}"
            await _json(send, 401, {"error": "invalid_client", "error_description": hint})
            return
        if form.get("resource", self.resource_url) != self.resource_url:
            await _json(send, 400, {"error": "invalid_target"})
            return
        requested = form.get("scope", "").split() or self.scopes
        scopes = [s for s in requested if s in self.scopes]
        await _json(
            send,
            200,
            {
                "access_token": self.token(user, scopes),
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": " ".join(scopes),
            },
        )


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.is_file():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            return loaded
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


async def _json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
