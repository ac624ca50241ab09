"""MCP over Streamable HTTP: one stateless ASGI app, so any replica answers any request.

Per request: Host/Origin allowlists (DNS rebinding) -> body cap and deadline -> bearer
token -> Principal (server/auth.py) -> scope matrix -> Rowgate.call, the same path as
stdio. Nothing about a client lives in process memory.

The hot methods of handshake-era clients (tools/call, tools/list, ping) are answered
here with plain JSON: the SDK builds a transport, a dispatcher and a session per
stateless request, which costs more than the database call. Everything else (initialize,
notifications, the stateless 2026-07-28 protocol, GET/DELETE) goes to the SDK's own
stateless session manager, with the Principal already attached to the request.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from schemas.config import HttpSettings
from server import audit
from server.app import Rowgate
from server.auth import AuthError, TokenVerifier
from server.errors import RowgateError
from server.identity import Principal
from server.protocol import DIRECT_METHODS, DirectAnswers, InvalidParams, build_server
from server.scopes import ScopeError
from server.tools import TOOLS

log = logging.getLogger("rowgate")

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
PRINCIPAL_KEY = "rowgate.principal"
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

Route = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpConfigError(ValueError):
    """The HTTP settings cannot be served as they are; the message says what to change."""


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


def resource_url_for(settings: HttpSettings, port: int) -> str:
    if settings.resource_url:
        return settings.resource_url.rstrip("/")
    host = settings.host
    if not is_loopback(host):
        raise HttpConfigError(
            "set ROWGATE_RESOURCE_URL to the URL clients use for /mcp (e.g. "
            "https://rowgate.example.com/mcp): tokens must be issued for exactly that URL"
        )
    return f"http://{'[::1]' if host == '::1' else host}:{port}{MCP_PATH}"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> _Answer:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(), tuple(headers))

    async def send(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.body)).encode()),
                    (b"cache-control", b"no-store"),
                    *self.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


def _rpc_error(request_id: Any, code: int, message: str, status: int = 200) -> _Answer:
    return _Answer.json(
        status, {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )


class _TooLarge(Exception):
    pass


class HttpApp:
    """The ASGI app: /mcp, /healthz, /readyz and the protected resource metadata."""

    def __init__(
        self,
        rg: Rowgate,
        settings: HttpSettings,
        *,
        port: int,
        verifier: TokenVerifier | None,
        local_principal: Principal | None = None,
        version: str,
        extra_routes: dict[str, Route] | None = None,
    ) -> None:
        if verifier is None and local_principal is None:
            raise HttpConfigError("HTTP needs a token verifier or, without auth, a local user")
        if verifier is None and not is_loopback(settings.host):
            raise HttpConfigError(f"without auth, HTTP only binds loopback, not {settings.host}")
        self.rg = rg
        self.settings = settings
        self.verifier = verifier
        self.local_principal = local_principal
        self.resource_url = resource_url_for(settings, port)
        self.allowed_hosts = _allowed_hosts(settings, port, self.resource_url)
        self.allowed_origins = frozenset(settings.allowed_origins) | frozenset(
            f"{scheme}://{host}" for host in self.allowed_hosts for scheme in ("http", "https")
        )
        origin = urlsplit(self.resource_url)
        self.metadata_url = f"{origin.scheme}://{origin.netloc}{METADATA_PATH}{origin.path}"
        self._routes: dict[str, Route] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            METADATA_PATH + urlsplit(self.resource_url).path: self._metadata,
            METADATA_PATH: self._metadata,
            **(extra_routes or {}),
        }
        self._sdk = StreamableHTTPSessionManager(
            build_server(rg, _principal_of_request, version=version),
            json_response=True,
            stateless=True,
            max_request_body_size=settings.max_body_bytes,
        )
        self._sdk.app.middleware.clear()  # per-message tracing spans export nowhere here
        self._direct = DirectAnswers(rg)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == MCP_PATH or path == MCP_PATH + "/":
                await self._mcp(scope, receive, send)
                return
            route = self._routes.get(path)
            if route is not None:
                await route(scope, receive, send)
                return
            await _Answer.json(404, {"error": "not_found"}).send(send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        async with self._sdk.run():
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown: uvicorn has drained the calls in flight
        if self.verifier is not None:
            await self.verifier.close()
        await send({"type": "lifespan.shutdown.complete"})

    # --- /mcp -------------------------------------------------------------------------

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        refused = self._check_host_and_origin(headers)
        if refused is not None:
            await refused.send(send)
            return
        try:
            with anyio.fail_after(self.settings.request_timeout_seconds):
                await self._authorized(scope, headers, receive, send)
        except TimeoutError:
            # Only reached before a response started; a started one is the SDK's to end.
            await _Answer.json(
                408, {"error": "request_timeout", "error_description": "the request took too long"}
            ).send(send)

    async def _authorized(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        try:
            who = await self._principal(headers)
        except AuthError as exc:
            await self._challenge(exc).send(send)
            return
        if scope["method"] != "POST":
            # Stateless: no standalone SSE stream to GET and no session to DELETE.
            await _Answer.json(
                405,
                {"error": "method_not_allowed", "error_description": "this server takes POST"},
                [(b"allow", b"POST")],
            ).send(send)
            return
        try:
            body = await self._body(headers, receive)
        except _TooLarge:
            limit = self.settings.max_body_bytes
            await _rpc_error(None, -32600, f"request body over {limit} bytes", 413).send(send)
            return
        message = _parse(body)
        version = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        if isinstance(message, dict) and message.get("method") == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str) and name in TOOLS:
                try:
                    self.rg.permissions.check_tool(who, name)
                except ScopeError as exc:
                    await self._forbidden(exc).send(send)
                    return
        if (
            isinstance(message, dict)
            and message.get("method") in DIRECT_METHODS
            and "id" in message
            and (not version or version in HANDSHAKE_PROTOCOL_VERSIONS)
            and _accepts_json(headers)
        ):
            await (await self._answer(message, who)).send(send)
            return
        scope[PRINCIPAL_KEY] = who
        await self._sdk.handle_request(scope, _replay(body), send)

    async def _principal(self, headers: dict[bytes, bytes]) -> Principal:
        if self.verifier is None:
            assert self.local_principal is not None
            return self.local_principal
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            reason = "a bearer token is required"
            audit.auth_failure(reason=reason, status=401, issuer=None, client_id=None,
                               subject=None, token_id=None)  # fmt: skip
            raise AuthError(reason, error="")
        return await self.verifier.principal(token.strip())

    def _challenge(self, exc: AuthError) -> _Answer:
        params = [f'resource_metadata="{self.metadata_url}"']
        if self.rg.settings.scopes:
            params.append(f'scope="{" ".join(self.rg.settings.scopes)}"')
        if exc.error:
            params.append(f'error="{exc.error}"')
            params.append(f'error_description="{_quoted(exc.reason)}"')
        header = ("Bearer " + ", ".join(params)).encode()
        payload = {"error": exc.error or "unauthorized", "error_description": exc.reason}
        return _Answer.json(exc.status, payload, [(b"www-authenticate", header)])

    def _forbidden(self, exc: ScopeError) -> _Answer:
        scope = " ".join(exc.scopes)
        header = (
            f'Bearer error="insufficient_scope", scope="{scope}", '
            f'resource_metadata="{self.metadata_url}", '
            f'error_description="{_quoted(exc.message)}"'
        ).encode()
        payload = {"error": "insufficient_scope", "error_description": exc.message, "scope": scope}
        return _Answer.json(403, payload, [(b"www-authenticate", header)])

    async def _answer(self, message: dict[str, Any], who: Principal) -> _Answer:
        request_id = message["id"]
        try:
            result = await self._direct.result(message["method"], message.get("params"), who)
        except ScopeError as exc:
            return self._forbidden(exc)
        except InvalidParams as exc:
            return _rpc_error(request_id, -32602, str(exc))
        return _Answer.json(200, {"jsonrpc": "2.0", "id": request_id, "result": result})

    def _check_host_and_origin(self, headers: dict[bytes, bytes]) -> _Answer | None:
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            return _Answer.json(
                421, {"error": "invalid_host", "error_description": "Invalid Host header"}
            )
        origin = (headers.get(b"origin") or b"").decode("latin-1").lower().rstrip("/")
        if origin and "*" not in self.allowed_origins and origin not in self.allowed_origins:
            return _Answer.json(
                403, {"error": "invalid_origin", "error_description": "Invalid Origin header"}
            )
        return None

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    # --- unauthenticated endpoints ------------------------------------------------------

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _Answer.json(200, {"status": "ok"}).send(send)

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = await self.rg.ready()
        await _Answer.json(200 if ready else 503, {"status": "ready" if ready else "unavailable"}
                           ).send(send)  # fmt: skip

    async def _metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 9728: where to get a token for this resource, and which scopes exist."""
        document: dict[str, Any] = {
            "resource": self.resource_url,
            "authorization_servers": self.verifier.authorization_servers if self.verifier else [],
            "scopes_supported": list(self.rg.settings.scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": "rowgate",
        }
        await _Answer.json(200, document, [(b"access-control-allow-origin", b"*")]).send(send)


def _principal_of_request(ctx: ServerRequestContext[Any]) -> Principal:
    request = ctx.request
    scope = getattr(request, "scope", None)
    principal = scope.get(PRINCIPAL_KEY) if isinstance(scope, dict) else None
    if not isinstance(principal, Principal):
        raise RowgateError("identity_error", "no authenticated caller for this request")
    return principal


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _accepts_json(headers: dict[bytes, bytes]) -> bool:
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        return False
    accept = headers.get(b"accept")
    return accept is None or b"application/json" in accept or b"*/*" in accept


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await anyio.sleep(math.inf)  # a replayed request has nothing more to say
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


def _allowed_hosts(settings: HttpSettings, port: int, resource_url: str) -> frozenset[str]:
    if settings.allowed_hosts:
        return frozenset(h.lower() for h in settings.allowed_hosts)
    hosts = {urlsplit(resource_url).netloc.lower()}
    bound = settings.host
    names = ["localhost", "127.0.0.1"] if is_loopback(bound) else [bound]
    for name in names:
        hosts.update({name, f"{name}:{port}"})
    return frozenset(hosts)
