"""A tiny OAuth authorization server for benchmarks: RFC 8414 metadata and a JWKS over HTTP,
and ES256 access tokens minted from a key file.

rowgate verifies these tokens the way it verifies any issuer's: it discovers the JWKS from
the metadata at `<issuer origin>/.well-known/oauth-authorization-server<issuer path>`,
fetches the key by `kid` and checks signature, `iss`, `aud` and `exp` (server/auth.py).
There is no token endpoint: the benchmark mints its own tokens with the same key.

Serving needs only the standard library, so the shared harness (whose venv has no PyJWT)
can import `serve_documents`; minting imports PyJWT and cryptography when called. The
harness gets its tokens from a subprocess in an environment that has them:

    python -m bench.issuer token --key-file K --issuer URL --audience URL --role R \
        --claims '{"sub": "..."}' --scope "db:read"

prints {"token": ..., "jwks": ..., "metadata": ...} as JSON.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN_LIFETIME_S = 3600
KID = "bench-es256"


def metadata_path(issuer: str) -> str:
    """Where RFC 8414 puts an issuer's metadata: the well-known prefix before its path."""
    return "/.well-known/oauth-authorization-server" + urlsplit(issuer).path.rstrip("/")


def metadata_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": issuer.rstrip("/") + "/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
    }


class DocumentServer:
    """Serves the metadata and the JWKS from a daemon thread; counts the requests, so a
    benchmark can show that tokens were verified against keys it fetched."""

    def __init__(self, host: str, port: int, issuer_path: str = "") -> None:
        self.documents: dict[str, bytes] = {}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = owner.documents.get(self.path.split("?", 1)[0])
                self.send_response(200 if body is not None else 404)
                payload = body if body is not None else b'{"error":"not_found"}'
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        bound_port = self._server.server_address[1]
        self.issuer = f"http://{host}:{bound_port}{issuer_path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bench-issuer", daemon=True
        )

    def publish(self, jwks: Mapping[str, Any]) -> None:
        metadata = metadata_document(self.issuer)
        self.documents = {
            metadata_path(self.issuer): json.dumps(metadata).encode(),
            urlsplit(str(metadata["jwks_uri"])).path: json.dumps(jwks).encode(),
        }

    def start(self) -> DocumentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_documents(jwks: Mapping[str, Any], host: str = "127.0.0.1", port: int = 0,
                    issuer_path: str = "") -> DocumentServer:  # fmt: skip
    server = DocumentServer(host, port, issuer_path)
    server.publish(jwks)
    return server.start()


# --- keys and tokens (PyJWT + cryptography, imported when used) ------------------------------


class SigningKey:
    """An ES256 key: loaded from `path` if it holds one, else made (and saved there)."""

    def __init__(self, path: Path | None = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key: ec.EllipticCurvePrivateKey | None = None
        if path is not None and path.is_file():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(loaded, ec.EllipticCurvePrivateKey):
                key = loaded
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(mode=0o600)
                path.write_bytes(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        self._key = key

    @property
    def jwks(self) -> dict[str, Any]:
        import jwt

        public = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "ES256"}]}

    def token(
        self,
        *,
        issuer: str,
        audience: str,
        claims: Mapping[str, Any],
        scope: str,
        lifetime_s: int = TOKEN_LIFETIME_S,
    ) -> str:
        import jwt

        now = int(time.time())
        payload = {
            **claims,
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": secrets.token_hex(8),
            "scope": scope,
        }
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": KID})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.issuer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print a token, the JWKS and the metadata as JSON")
    token.add_argument("--key-file", type=Path, required=True, help="made if missing")
    token.add_argument("--issuer", required=True)
    token.add_argument("--audience", required=True, help="the resource URL (rowgate's /mcp)")
    token.add_argument("--role", required=True, help="the Postgres role (claim `role`)")
    token.add_argument("--claims", default="{}", help="more claims, a JSON object")
    token.add_argument("--scope", required=True, help="the token's `scope` claim")
    token.add_argument("--lifetime", type=int, default=TOKEN_LIFETIME_S, help="seconds")
    args = parser.parse_args(argv)
    key = SigningKey(args.key_file)
    claims = {**json.loads(args.claims), "role": args.role}
    minted = key.token(
        issuer=args.issuer,
        audience=args.audience,
        claims=claims,
        scope=args.scope,
        lifetime_s=args.lifetime,
    )
    out = {"token": minted, "jwks": key.jwks, "metadata": metadata_document(args.issuer)}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
