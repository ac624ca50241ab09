// A real OAuth 2.1 authorization server (oidc-provider) on 127.0.0.1 for the test suite.
//
//   node authserver.mjs CONFIG.json
//
// CONFIG.json:
//   {"port": 0 | N, "issuer_path": "" | "/tenant",
//    "keys": {"keys": [<private JWK with kid and alg (RS256 | ES256)>, ...]},
//    "clients": [{"client_id", "client_secret", "scope": "db:read db:write",
//                 "user": {"sub", "role", "email", "org", ...} | null}],
//    "resources": {"<resource URI>": {"scope": "db:read ...", "format": "jwt" | "opaque",
//                                     "ttl": seconds, "alg"?: "ES256", "kid"?: "..."}},
//    "introspection_clients": [{"client_id", "client_secret"}]}
//
// Grants: client_credentials only, with RFC 8707 `resource` and `scope`. The token of a
// client that acts for a user carries that user's claims (sub, role, email, org, ...): in the
// JWT for "jwt" resources, in the RFC 7662 introspection answer for "opaque" ones.
//
// When it listens it prints exactly one line to stdout, {"issuer": ..., "port": ...}; every
// other word goes to stderr. It exits on SIGTERM/SIGINT and when its stdin closes, so a
// parent that dies does not leave it running.

// oidc-provider prints notices with console.info (stdout); stdout carries only the ready line.
for (const level of ['log', 'info', 'debug']) {
  console[level] = (...args) => console.error(...args);
}

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node authserver.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));

const issuerPath = (config.issuer_path ?? '').replace(/\/+$/, '');
if (issuerPath && !issuerPath.startsWith('/')) {
  console.error('issuer_path must be empty or start with "/"');
  process.exit(2);
}
const keys = config.keys?.keys ?? config.keys ?? [];
if (!Array.isArray(keys) || keys.length === 0) {
  console.error('keys: a JWKS with at least one private signing key is required');
  process.exit(2);
}
const defaultAlg = keys[0].alg ?? 'RS256';
const resources = config.resources ?? {};
const clients = config.clients ?? [];
const introspectionClients = config.introspection_clients ?? [];
const introspectors = new Set(introspectionClients.map((c) => c.client_id));
const usersByClient = new Map(clients.map((c) => [c.client_id, c.user ?? null]));

// Every scope a client or resource names is a "static" scope, so oidc-provider refuses
// (invalid_scope) a scope outside the client's `scope` instead of silently dropping it.
const allScopes = new Set(['openid']);
for (const owner of [...clients, ...Object.values(resources)]) {
  for (const s of (owner.scope ?? '').split(' ')) if (s) allScopes.add(s);
}

function serverFor(port) {
  return new Promise((resolve, reject) => {
    const server = http.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

const server = await serverFor(config.port ?? 0);
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}${issuerPath}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    ...clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: c.scope ?? '',
      token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    })),
    // Resource servers: they only authenticate at the introspection endpoint.
    ...introspectionClients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
  ],
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: defaultAlg,
    token_endpoint_auth_method: 'client_secret_basic',
  },
  scopes: [...allScopes],
  claims: { openid: ['sub'] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: false },
    revocation: { enabled: false },
    registration: { enabled: false },
    rpInitiatedLogout: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Only the configured resource servers may introspect, and they may introspect any token.
      allowedPolicy: async (_ctx, client) => introspectors.has(client.clientId),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const rs = resources[resourceIndicator];
        if (!rs) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        const info = {
          scope: rs.scope ?? '',
          accessTokenFormat: rs.format ?? 'jwt',
          accessTokenTTL: rs.ttl ?? 3600,
        };
        if (info.accessTokenFormat === 'jwt') {
          info.jwt = { sign: { alg: rs.alg ?? defaultAlg, ...(rs.kid ? { kid: rs.kid } : {}) } };
        }
        return info;
      },
    },
  },
  // The user a client acts for: its claims go into the token (JWT) or its introspection.
  extraTokenClaims: async (_ctx, token) => {
    const user = usersByClient.get(token.clientId);
    return user ? { ...user } : undefined;
  },
  formats: {
    customizers: {
      // oidc-provider sets a client_credentials JWT's sub to the client id, after the extra
      // claims; the token is about the user the client acts for, so sub is the user's.
      jwt: async (_ctx, token, jwt) => {
        if (token.extra?.sub !== undefined) jwt.payload.sub = token.extra.sub;
      },
    },
  },
  ttl: {
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 3600,
  },
  // The ports are loopback only; tests talk to it over plain HTTP.
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.proxy = false;

provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));
provider.on('introspection.error', (_ctx, err) => console.error('introspection.error', err.message));

const callback = provider.callback();
const wellKnown = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'];

server.on('request', (req, res) => {
  const url = req.url ?? '/';
  const path = url.split('?', 1)[0];
  // RFC 8414 inserts the issuer's path after the well-known name; serve those too.
  if (issuerPath) {
    for (const name of wellKnown) {
      if (path === `${name}${issuerPath}`) {
        req.originalUrl = `${issuerPath}${name}`;
        req.url = name;
        return callback(req, res);
      }
    }
    if (path === issuerPath || path.startsWith(`${issuerPath}/`)) {
      req.originalUrl = url;
      req.url = url.slice(issuerPath.length) || '/';
      return callback(req, res);
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not_found"}');
    return undefined;
  }
  return callback(req, res);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
console.error(`authserver: ${issuer} (${keys.length} key(s), ${clients.length} client(s), ${Object.keys(resources).length} resource(s))`);
