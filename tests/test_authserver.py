"""The authorization server of the HTTP transport tests is real and says what they assume."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from server.demo import demo_users
from tests.authserver import AuthServer, Resource, TokenError, default_clients, generate_key
from tests.node_tools import require_node_tools

MCP = "http://127.0.0.1:8765/mcp"
OTHER = "http://127.0.0.1:8766/mcp"
OPAQUE = "http://127.0.0.1:8767/mcp"


@pytest.fixture(scope="module")
def server() -> Iterator[AuthServer]:
    require_node_tools()
    auth = AuthServer(
        clients=default_clients(),
        resources={
            MCP: Resource(),
            OTHER: Resource(scope="db:read", alg="ES256"),
            OPAQUE: Resource(format="opaque"),
        },
    )
    auth.start()
    try:
        yield auth
    finally:
        auth.close()


def verify(server: AuthServer, token: str, audience: str) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_dict(server.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256", "ES256"],
        audience=audience,
        issuer=server.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


def test_discovery_metadata(server: AuthServer) -> None:
    meta = server.metadata
    assert meta["issuer"] == server.issuer
    assert meta["token_endpoint"].startswith(server.issuer)
    assert meta["jwks_uri"].startswith(server.issuer)
    assert "client_credentials" in meta["grant_types_supported"]
    assert meta["introspection_endpoint"].startswith(server.issuer)
    # Both discovery documents answer, with the same metadata.
    openid = httpx.get(server.openid_configuration_url).json()
    assert openid == meta
    # Only public keys are published.
    for key in server.jwks()["keys"]:
        assert not {"d", "p", "q"} & key.keys()
    assert {k["kid"] for k in server.jwks()["keys"]} == {k.kid for k in server.private_keys}


def test_jwt_access_token_carries_the_user(server: AuthServer) -> None:
    bob = demo_users()["bob"].principal.claims
    token = server.token("bob-agent", resource=MCP, scope="db:read db:write")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == server.private_keys[0].kid
    claims = verify(server, token, MCP)
    assert claims["sub"] == bob["sub"]
    assert claims["role"] == bob["role"] == "authenticated"
    assert claims["email"] == bob["email"]
    assert claims["org"] == bob["org"]
    assert claims["client_id"] == "bob-agent"
    assert claims["scope"] == "db:read db:write"
    assert claims["aud"] == MCP
    with pytest.raises(jwt.InvalidAudienceError):
        verify(server, token, OTHER)


def test_token_for_another_resource_has_its_audience(server: AuthServer) -> None:
    token = server.token("carol-agent", resource=OTHER, scope="db:read")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = verify(server, token, OTHER)
    assert claims["aud"] == OTHER
    assert claims["role"] == "org_admin"


def test_refusals(server: AuthServer) -> None:
    with pytest.raises(TokenError) as refused:
        server.token("bob-readonly", resource=MCP, scope="db:write")
    assert refused.value.error == "invalid_scope"
    with pytest.raises(TokenError) as unknown:
        server.token("alice-agent", resource="http://127.0.0.1:1/nope", scope="db:read")
    assert unknown.value.error == "invalid_target"


def test_opaque_token_introspects(server: AuthServer) -> None:
    alice = demo_users()["alice"].principal.claims
    token = server.token("alice-support-bot", resource=OPAQUE, scope="db:read")
    assert token.count(".") == 0
    answer = server.introspect(token)
    assert answer["active"] is True
    assert answer["sub"] == alice["sub"]
    assert answer["role"] == "org_admin"
    assert answer["client_id"] == "alice-support-bot"
    assert answer["scope"] == "db:read"
    assert answer["aud"] == OPAQUE
    assert server.introspect("not-a-token") == {"active": False}


def test_forge(server: AuthServer) -> None:
    dave = server.claims_for("dave-agent", resource=MCP)
    assert verify(server, server.forge(dave), MCP)["sub"] == dave["sub"]
    assert verify(server, server.forge(dave, alg="ES256"), MCP)["sub"] == dave["sub"]
    expired = server.claims_for("dave-agent", resource=MCP, exp=1_000_000, iat=999_000)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(server, server.forge(expired), MCP)
    unknown = server.forge(dave, kid="no-such-kid")
    assert jwt.get_unverified_header(unknown)["kid"] == "no-such-kid"
    none = server.forge(dave, alg="none", headers={"kid": None})
    assert none.endswith(".") and "kid" not in jwt.get_unverified_header(none)
    rsa_key = server.key()  # the alg-confusion attack: HMAC keyed with the RSA public key
    confused = server.forge(dave, alg="HS256", key=rsa_key.public_pem, kid=rsa_key.kid)
    assert jwt.get_unverified_header(confused)["alg"] == "HS256"
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(server, confused, MCP)


def test_restart_rotates_keys(server: AuthServer) -> None:
    old = {k.kid for k in server.private_keys}
    issuer, port = server.issuer, server.port
    new_key = generate_key("RS256", kid="rotated-1")
    server.restart(keys=[new_key, generate_key("ES256")])
    assert (server.issuer, server.port) == (issuer, port)
    kids = {k["kid"] for k in server.jwks()["keys"]}
    assert not kids & old
    token = server.token("dave-agent", resource=MCP, scope="db:read")
    assert jwt.get_unverified_header(token)["kid"] == "rotated-1"
    assert verify(server, token, MCP)["role"] == "authenticated"
    with pytest.raises(StopIteration):  # a token signed with a removed key finds no key
        verify(
            server,
            server.forge(server.claims_for("dave-agent", resource=MCP), kid=next(iter(old))),
            MCP,
        )


def test_every_node_package_is_pinned_without_a_lock_file() -> None:
    """The Node test tools' whole tree is pinned in package.json (exact versions, transitive
    ones under overrides), and no lock file records where packages came from."""
    import json
    import re
    from pathlib import Path

    node_dir = Path(__file__).parent / "node"
    package = json.loads((node_dir / "package.json").read_text())
    exact = re.compile(r"^\d+\.\d+\.\d+$")
    assert all(exact.match(v) for v in package["dependencies"].values())
    overrides = package["overrides"]
    assert len(overrides) > 100 and all(exact.match(v) for v in overrides.values())
    assert not (node_dir / "package-lock.json").exists()
    assert "package-lock=false" in (node_dir / ".npmrc").read_text()
    installed = require_node_tools().node_modules
    for name, version in overrides.items():
        if "@~" not in name[1:]:  # one version in the tree: npm installs it at the top
            manifest = installed / name / "package.json"
            assert json.loads(manifest.read_text())["version"] == version, name
