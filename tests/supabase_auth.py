"""A stand-in for hosted Supabase Auth, on loopback: the hosted service cannot run here.

It serves what rowgate's Supabase mode uses, in Supabase's shapes: the project's JWKS at
`/auth/v1/.well-known/jwks.json` (asymmetric ES256 signing keys) and `GET /auth/v1/user`,
which supabase-py's `auth.get_user(token)` calls to have a legacy HS256 token checked by
the server that knows the project's secret. Tokens look like Supabase Auth's OAuth 2.1
access tokens: `iss` `<url>/auth/v1`, `aud` `authenticated`, `role`, `sub`, `client_id`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec


class SupabaseAuth:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = secrets.token_hex(6)
        self.legacy_secret = secrets.token_urlsafe(32)
        self.anon_key = jwt.encode({"role": "anon", "iss": "supabase"}, self.legacy_secret)
        self.user_lookups = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.url + "/auth/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def claims(
        self, user: dict[str, Any], client_id: str | None, **overrides: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "authenticated",
            "sub": user["sub"],
            "role": user["role"],
            "email": user.get("email"),
            "iat": now,
            "exp": now + 3600,
            "session_id": secrets.token_hex(8),
            "client_id": client_id,
            **overrides,
        }
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, user: dict[str, Any], client_id: str | None, **overrides: Any) -> str:
        """An access token signed with the project's asymmetric key (current Supabase)."""
        return jwt.encode(
            self.claims(user, client_id, **overrides), self.key, "ES256", headers={"kid": self.kid}
        )

    def legacy_token(
        self, user: dict[str, Any], client_id: str | None, secret: str | None = None
    ) -> str:
        """An older project's token, HS256 with the project's JWT secret."""
        return jwt.encode(self.claims(user, client_id), secret or self.legacy_secret, "HS256")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        auth = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/auth/v1/.well-known/jwks.json":
                    public = jwt.algorithms.ECAlgorithm.to_jwk(auth.key.public_key(), as_dict=True)
                    self._send(200, {"keys": [{**public, "kid": auth.kid, "alg": "ES256"}]})
                elif self.path == "/auth/v1/user":
                    self._user()
                else:
                    self._send(404, {"msg": "not found"})

            def _user(self) -> None:
                auth.user_lookups += 1
                if self.headers.get("apikey") != auth.anon_key:
                    self._send(401, {"msg": "Invalid API key"})
                    return
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                try:
                    claims = jwt.decode(
                        token, auth.legacy_secret, ["HS256"], audience="authenticated"
                    )
                except jwt.PyJWTError as exc:
                    self._send(403, {"code": 403, "error_code": "bad_jwt", "msg": str(exc)})
                    return
                self._send(
                    200,
                    {
                        "id": claims["sub"],
                        "aud": "authenticated",
                        "role": claims.get("role"),
                        "email": claims.get("email"),
                        "app_metadata": {"provider": "email"},
                        "user_metadata": {},
                        "created_at": "2024-09-02T09:05:00Z",
                    },
                )

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
