"""A real OAuth 2.1 authorization server for tests: oidc-provider on 127.0.0.1.

rowgate's HTTP transport is an OAuth resource server; its tests get their access tokens the
way a deployment does, from a certified authorization server (tests/node/authserver.mjs) over
HTTP, and verify them against its published JWKS. For the attacks a real server would never
sign, `forge` makes tokens with the server's own private keys (or any other key).

    server = AuthServer(clients=default_clients(), resources={R: Resource()}).start()
    token = server.token("alice-agent", resource=R, scope="db:read")
    ...
    server.stop()

Keys are generated here (RS256 and ES256, each with a kid) and handed to the server in its
config file; `restart(keys=...)` brings it back on the same port with another key set.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from server.demo import demo_users
from tests.node_tools import node_tools

ALL_SCOPES = "db:read db:write db:delete"
INTROSPECTION_CLIENT_ID = "rowgate-rs"
START_TIMEOUT = 30.0

SigningAlg = Literal["RS256", "ES256"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    """One signing key of the server: the key object, its private JWK and public forms."""

    kid: str
    alg: SigningAlg
    private_key: PrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        """The private JWK (as the authorization server is configured with it)."""
        key = self.private_key
        text = (
            RSAAlgorithm.to_jwk(key)
            if isinstance(key, rsa.RSAPrivateKey)
            else ECAlgorithm.to_jwk(key)
        )
        jwk: dict[str, Any] = json.loads(text)
        jwk.pop("key_ops", None)  # pyjwt writes ["sign"]; the public JWK must not say that
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    @property
    def public_jwk(self) -> dict[str, Any]:
        private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
        return {k: v for k, v in self.jwk.items() if k not in private}

    @property
    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> bytes:
        """The SubjectPublicKeyInfo PEM (what an HS256-with-the-public-key attack signs with)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_key(alg: SigningAlg = "RS256", *, kid: str | None = None) -> SigningKey:
    key: PrivateKey
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(kid=kid or f"{alg.lower()}-{secrets.token_hex(4)}", alg=alg, private_key=key)


@dataclass(frozen=True)
class Client:
    """An OAuth client (client_credentials). `user`: the claims of the user it acts for, which
    its tokens carry (sub, role, email, org); None for a client that acts for nobody."""

    client_id: str
    scope: str = ALL_SCOPES
    user: Mapping[str, Any] | None = None
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def config(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scope,
            "user": dict(self.user) if self.user is not None else None,
        }


@dataclass(frozen=True)
class Resource:
    """A resource server (RFC 8707 resource indicator) the server issues tokens for."""

    scope: str = ALL_SCOPES
    format: Literal["jwt", "opaque"] = "jwt"
    ttl: int = 300
    alg: SigningAlg | None = None  # None: the first key's alg
    kid: str | None = None  # None: the first key of that alg

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scope": self.scope, "format": self.format, "ttl": self.ttl}
        if self.alg is not None:
            out["alg"] = self.alg
        if self.kid is not None:
            out["kid"] = self.kid
        return out


# Not a demo database user: a token that claims the service role, which rowgate must refuse.
EVE = {
    "sub": "00000000-0000-4000-a000-000000000e0e",
    "role": "service_role",
    "email": "eve@acme.example",
    "org": "Acme",
}


def default_clients() -> list[Client]:
    """Clients for the demo users (migrations/demo/demo_users.json), as agents acting for them:
    alice-agent, bob-agent, carol-agent, dave-agent (all scopes); alice-support-bot (a second
    client of alice's); bob-readonly (db:read only); eve-agent (role service_role)."""
    users = {name: dict(user.principal.claims) for name, user in demo_users().items()}
    clients = [Client(f"{name}-agent", user=claims) for name, claims in users.items()]
    clients += [
        Client("alice-support-bot", user=users["alice"]),
        Client("bob-readonly", scope="db:read", user=users["bob"]),
        Client("eve-agent", user=EVE),
    ]
    return clients


class AuthServerError(RuntimeError):
    pass


class TokenError(AuthServerError):
    """The token endpoint refused: status and the OAuth error body."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"token endpoint answered {status}: {dict(body)}")
        self.status = status
        self.body = dict(body)
        self.error = str(body.get("error", ""))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


class AuthServer:
    """oidc-provider as a subprocess; see the module docstring."""

    def __init__(
        self,
        *,
        clients: Iterable[Client] | None = None,
        resources: Mapping[str, Resource],
        keys: Sequence[SigningKey] | None = None,
        introspection_clients: Iterable[Client] | None = None,
        issuer_path: str = "",
        port: int = 0,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.clients = {c.client_id: c for c in (default_clients() if clients is None else clients)}
        self.resources = dict(resources)
        self.private_keys: list[SigningKey] = (
            list(keys) if keys is not None else [generate_key("RS256"), generate_key("ES256")]
        )
        self.introspection_clients = list(
            introspection_clients
            if introspection_clients is not None
            else [Client(INTROSPECTION_CLIENT_ID, scope="")]
        )
        self.issuer_path = issuer_path.rstrip("/")
        self.port = port
        self.start_timeout = start_timeout
        self.issuer = ""
        self.metadata: dict[str, Any] = {}
        self.start_seconds = 0.0
        self._dir = Path(tempfile.mkdtemp(prefix="rowgate-authserver-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._http = httpx.Client(timeout=10.0)
        # Leave nothing behind even if a test forgets stop().
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self._dir / "authserver.json"

    @property
    def log_path(self) -> Path:
        """The server's stderr."""
        return self._dir / "authserver.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "issuer_path": self.issuer_path,
            "keys": {"keys": [k.jwk for k in self.private_keys]},
            "clients": [c.config() for c in self.clients.values()],
            "resources": {uri: r.config() for uri, r in self.resources.items()},
            "introspection_clients": [
                {"client_id": c.client_id, "client_secret": c.client_secret}
                for c in self.introspection_clients
            ],
        }

    def start(self) -> Self:
        if self.running:
            raise AuthServerError("already running")
        tools = node_tools()
        self.config_path.write_text(json.dumps(self._config()))
        started = time.monotonic()
        deadline = started + self.start_timeout
        while True:
            try:
                ready = self._spawn(
                    tools.command("authserver.mjs", str(self.config_path)), deadline
                )
                break
            except AuthServerError:
                # A fixed port (restart) can still be held for a moment by the old process.
                if self.port == 0 or time.monotonic() + 0.2 >= deadline:
                    raise
                time.sleep(0.2)
        self.issuer = str(ready["issuer"])
        self.port = int(ready["port"])
        self.metadata = self.discovery()
        self.start_seconds = time.monotonic() - started
        return self

    def _spawn(self, argv: list[str], deadline: float) -> dict[str, Any]:
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,  # the server exits when this closes (we die)
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.config_path.parent,
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _stop_process, proc)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._reap()
                raise AuthServerError(
                    f"authorization server not ready in {self.start_timeout}s:\n{self.log_tail()}"
                )
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._reap()
                    raise AuthServerError(
                        f"authorization server exited before it was ready:\n{self.log_tail()}"
                    )
                buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        try:
            ready: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            self._reap()
            raise AuthServerError(f"unexpected first line from the server: {line!r}") from exc
        return ready

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once
            self._finalizer = None
        self._proc = None

    def stop(self) -> None:
        self._reap()

    def close(self) -> None:
        """stop(), and release the HTTP client and the config directory."""
        self.stop()
        self._http.close()
        self._cleanup()

    def restart(self, *, keys: Sequence[SigningKey] | None = None) -> Self:
        """Stop and start again on the same port (same issuer), with `keys` if given. Tokens
        issued before are forgotten (the server keeps them in memory)."""
        if not self.port:
            raise AuthServerError("restart() needs a server that was started")
        self.stop()
        if keys is not None:
            self.private_keys = list(keys)
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- endpoints -----------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        """RFC 8414 metadata URL (the issuer's path inserted after the well-known name)."""
        return f"{self.origin}/.well-known/oauth-authorization-server{self.issuer_path}"

    @property
    def openid_configuration_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return str(self.metadata["jwks_uri"])

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    @property
    def introspection_credentials(self) -> tuple[str, str]:
        """(client_id, client_secret) with which a resource server may introspect tokens."""
        client = self.introspection_clients[0]
        return client.client_id, client.client_secret

    def discovery(self) -> dict[str, Any]:
        response = self._http.get(self.discovery_url)
        response.raise_for_status()
        metadata: dict[str, Any] = response.json()
        return metadata

    def jwks(self) -> dict[str, Any]:
        response = self._http.get(self.jwks_uri)
        response.raise_for_status()
        keys: dict[str, Any] = response.json()
        return keys

    # -- tokens --------------------------------------------------------------------------------

    def token_response(
        self, client_id: str, *, resource: str | None, scope: str | None = None
    ) -> httpx.Response:
        """The raw answer of a client_credentials request (for tests of refusals)."""
        client = self.clients[client_id]
        data = {
            "grant_type": "client_credentials",
            "scope": client.scope if scope is None else scope,
        }
        if resource is not None:
            data["resource"] = resource
        return self._http.post(
            self.token_endpoint, data=data, auth=(client.client_id, client.client_secret)
        )

    def token(self, client_id: str, *, resource: str | None, scope: str | None = None) -> str:
        """An access token from the token endpoint (client_credentials, RFC 8707 resource).
        `scope` defaults to all of the client's scopes. Raises TokenError when refused."""
        response = self.token_response(client_id, resource=resource, scope=scope)
        body: dict[str, Any] = response.json()
        if response.status_code != 200 or "access_token" not in body:
            raise TokenError(response.status_code, body)
        return str(body["access_token"])

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, authenticated as the resource server."""
        response = self._http.post(
            self.introspection_endpoint,
            data={"token": token},
            auth=self.introspection_credentials,
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def claims_for(self, client_id: str, *, resource: str, **overrides: Any) -> dict[str, Any]:
        """The claims the server would put in a JWT for this client and resource, now; with
        `overrides` (a value of None removes that claim). A starting point for `forge`."""
        client = self.clients[client_id]
        now = int(time.time())
        claims: dict[str, Any] = {
            **(dict(client.user) if client.user is not None else {"sub": client_id}),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + self.resources[resource].ttl if resource in self.resources else now + 300,
            "scope": client.scope,
            "client_id": client_id,
            "iss": self.issuer,
            "aud": resource,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def key(self, kid: str | None = None, *, alg: str | None = None) -> SigningKey:
        """One of the server's keys: by kid, else the first of that alg, else the first."""
        for k in self.private_keys:
            if (kid is None or k.kid == kid) and (alg is None or k.alg == alg):
                return k
        raise KeyError(f"no server key with kid={kid!r} alg={alg!r}")

    def forge(
        self,
        claims: Mapping[str, Any],
        *,
        kid: str | None = None,
        alg: str = "RS256",
        key: Any = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWS over exactly `claims`, made here, not by the server.

        - key None, alg RS*/PS*/ES*: signed with the server's own key of that family (the one
          with `kid` if that is one of the server's kids); the header's kid is that key's
          unless `kid` says otherwise (e.g. an unknown kid over a valid signature).
        - key given: signed with it (a cryptography private key, a SigningKey, or bytes/str
          for HS*: e.g. HS256 keyed with `server.key().public_pem`, the alg-confusion attack).
        - alg "none": no signature.
        Header: {"alg", "typ": "at+jwt", "kid"} updated with `headers` (None removes one).
        """
        family = alg[:2]
        signer: Any = key.private_key if isinstance(key, SigningKey) else key
        header_kid = kid if kid is not None else (key.kid if isinstance(key, SigningKey) else None)
        if alg != "none" and signer is None:
            if family == "HS":
                raise ValueError("forge with an HS alg needs key=")
            wanted = "RS256" if family in ("RS", "PS") else "ES256"
            known = {k.kid for k in self.private_keys}
            own = self.key(kid if kid in known else None, alg=wanted)
            signer = own.private_key
            if header_kid is None:
                header_kid = own.kid
        header: dict[str, Any] = {"alg": alg, "typ": "at+jwt"}
        if header_kid is not None:
            header["kid"] = header_kid
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
        )
        if alg == "none":
            return signing_input + "."
        if family == "HS" and isinstance(signer, str):
            signer = signer.encode()
        # pyjwt's algorithm objects sign without prepare_key, so an HMAC key may be a PEM.
        signature = jwt.get_algorithm_by_name(alg).sign(signing_input.encode(), signer)
        return signing_input + "." + _b64(signature)
