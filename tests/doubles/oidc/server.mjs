// A real OAuth 2.0 / OpenID Connect authorization server for the test suite.
//
// node tests/doubles/oidc/server.mjs --port P --cert cert.pem --key key.pem [--redirect-uri URI]...
//
// * node `oidc-provider` (certified), served over HTTPS (msal refuses plain HTTP) with the
//   issuer https://127.0.0.1:P/oidc (msal needs a path in an OIDC authority).
// * Clients: `gateway` (client_secret_post), `gateway-basic` (client_secret_basic) and
//   `gateway-cert` (private_key_jwt, keys from --cert-client-jwks), all confidential, PKCE S256 required, grants authorization_code, refresh_token and
//   client_credentials. Secrets: `<client id>-secret`.
// * Refresh tokens rotate and reuse is detected (a replayed refresh token revokes the
//   whole grant), as the strict providers do.
// * Admin routes (outside /oidc, test use only):
//     GET  /__stats          token-endpoint requests: {"token": {"<grant type>": {"<status>": n}}}
//     POST /__stats/reset    zero the counters
//     POST /__config         JSON merge of {accessTokenTtl, rotateRefreshToken,
//                            omitRefreshTokenOnRefresh, tokenDelayMs, failTokenRequests,
//                            failStatus, failError, failRetryAfter, failHtml,
//                            rewriteTokenResponse}
//   Provider behaviours oidc-provider itself never shows (it always sends a numeric
//   `expires_in`, never `ext_expires_in`, answers errors in JSON, never 429, and narrows
//   scopes only when the client asks) are produced here, around the real grant:
//   * failTokenRequests N: the next N token requests get `failStatus` (503) with
//     Retry-After `failRetryAfter` ('7'; '' for none) and a JSON body
//     {"error": failError} ('temporarily_unavailable'), or an HTML page if failHtml (as a
//     proxy, WAF or load balancer in front of a provider answers). Not counted as a grant.
//   * rewriteTokenResponse {field: value|null}: merged into every successful token
//     response (null deletes the field): `expires_in` missing / 0 / a string,
//     `ext_expires_in` (Entra ID), a narrower `scope` (an administrator removed a
//     permission, or Google's granular consent), all on real oidc-provider tokens.
//   Revoking a grant uses the standard revocation endpoint (RFC 7009) with its refresh token.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'cert-client-jwks': { type: 'string' },
  },
});

const port = Number(args.port);
const issuer = `https://127.0.0.1:${port}/oidc`;
const redirectUris = args['redirect-uri'].length
  ? args['redirect-uri']
  : ['https://gateway.test/api/oauth/callback'];

const DEFAULTS = {
  accessTokenTtl: 3600,
  rotateRefreshToken: true,
  omitRefreshTokenOnRefresh: false,
  tokenDelayMs: 0,
  failTokenRequests: 0, // answer the next N token requests with failStatus
  failStatus: 503,
  failError: 'temporarily_unavailable',
  failRetryAfter: '7',
  failHtml: false,
  rewriteTokenResponse: null,
  // On-behalf-of (JWT-bearer grant, RFC 7523 as Entra ID uses it): the caller's token is
  // accepted when signed by this RS256 public JWK for this audience.
  oboTrustedJwk: null,
  oboAudience: null,
  oboError: null, // 'interaction_required' | 'consent_required' (Entra) | 'invalid_target' (RFC 8693)
};
let config = { ...DEFAULTS };
let stats = {};

function count(grantType, status) {
  const byStatus = (stats[grantType] ??= {});
  byStatus[status] = (byStatus[status] ?? 0) + 1;
}

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const client = (id, method) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  token_endpoint_auth_method: method,
  redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials', JWT_BEARER, TOKEN_EXCHANGE],
  response_types: ['code'],
  scope: 'openid offline_access profile email api:read',
});

// `gateway-cert` authenticates with a client assertion signed by a certificate's key
// (private_key_jwt, RFC 7523 §2.2; Entra ID's certificate credentials): its public keys
// (several during a rotation) come from --cert-client-jwks.
const clients = [client('gateway', 'client_secret_post'), client('gateway-basic', 'client_secret_basic')];
if (args['cert-client-jwks']) {
  const { client_secret: _unused, ...certClient } = client('gateway-cert', 'private_key_jwt');
  certClient.jwks = JSON.parse(fs.readFileSync(args['cert-client-jwks'], 'utf8'));
  clients.push(certClient);
}

const provider = new Provider(issuer, {
  clients,
  cookies: { keys: ['test-cookie-key-not-a-secret'] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api:read'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
  },
  // Without this, refresh tokens need offline_access + prompt=consent.
  issueRefreshToken: async (ctx, c) => c.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => config.rotateRefreshToken,
  ttl: {
    AccessToken: () => config.accessTokenTtl,
    ClientCredentials: () => config.accessTokenTtl,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 3600,
    Grant: 86400,
    RefreshToken: 86400,
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    async claims() {
      return { sub: id, email: `${id}@example.test`, name: id };
    },
  }),
});
provider.proxy = false;

// The on-behalf-of flow (Entra ID's use of the JWT-bearer grant, RFC 7523 §2.1) through
// oidc-provider's grant-type extension API. Entra's answers for the two user-fixable
// failures (conditional access / MFA, and missing consent) are reproduced by `oboError`.
function oboFail(ctx, body) {
  ctx.status = 400;
  ctx.body = body;
}

function verifyAssertion(assertion) {
  const parts = String(assertion ?? '').split('.');
  if (parts.length !== 3 || !config.oboTrustedJwk) return null;
  const key = crypto.createPublicKey({ key: config.oboTrustedJwk, format: 'jwk' });
  const signed = crypto.verify(
    'RSA-SHA256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    key,
    Buffer.from(parts[2], 'base64url'),
  );
  if (!signed) return null;
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || claims.exp <= now) return null;
  if (config.oboAudience && claims.aud !== config.oboAudience) return null;
  return claims;
}

provider.registerGrantType(JWT_BEARER, async (ctx) => {
  const { assertion, scope, requested_token_use: use } = ctx.oidc.params;
  if (use !== 'on_behalf_of') {
    oboFail(ctx, { error: 'invalid_request', error_description: 'requested_token_use must be on_behalf_of' });
    return;
  }
  if (config.oboError === 'interaction_required') {
    oboFail(ctx, {
      error: 'interaction_required',
      error_description: 'AADSTS50079: Due to a configuration change made by your administrator, you must enroll in multi-factor authentication.',
      suberror: 'basic_action',
      claims: '{"access_token":{"capolids":{"essential":true,"values":["c1"]}}}',
    });
    return;
  }
  if (config.oboError === 'consent_required') {
    oboFail(ctx, {
      error: 'invalid_grant',
      error_description: "AADSTS65001: The user or administrator has not consented to use the application.",
      suberror: 'consent_required',
    });
    return;
  }
  const claims = verifyAssertion(assertion);
  if (!claims) {
    oboFail(ctx, { error: 'invalid_grant', error_description: 'the assertion is not valid' });
    return;
  }
  const accountId = String(claims.oid ?? claims.sub);
  const requested = String(scope ?? '').split(' ').filter((s) => s && s !== 'openid' && s !== 'offline_access' && s !== 'profile');
  const { AccessToken, Grant } = ctx.oidc.provider;
  const grant = new Grant({ accountId, clientId: ctx.oidc.client.clientId });
  grant.addOIDCScope(requested.join(' '));
  const grantId = await grant.save();
  const token = new AccessToken({
    accountId, client: ctx.oidc.client, grantId, scope: requested.join(' '), gty: 'jwt-bearer',
  });
  const value = await token.save();
  ctx.body = {
    access_token: value, token_type: 'Bearer', expires_in: token.expiration,
    ext_expires_in: token.expiration, scope: requested.join(' '),
  };
}, ['assertion', 'scope', 'requested_token_use']);

// OAuth 2.0 Token Exchange (RFC 8693) for the same purpose, as generic providers offer
// it (Keycloak, Okta, Auth0, Ping): the subject token is the caller's JWT (trusted as
// above); errors as RFC 8693 §2.2.2 defines them.
provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const {
    subject_token: subject, subject_token_type: subjectType, scope, requested_token_type: wanted,
  } = ctx.oidc.params;
  const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
  const jwtType = 'urn:ietf:params:oauth:token-type:jwt';
  if (![accessTokenType, jwtType].includes(subjectType) || (wanted && wanted !== accessTokenType)) {
    oboFail(ctx, { error: 'invalid_request', error_description: 'unsupported token type' });
    return;
  }
  if (config.oboError === 'invalid_target') {
    oboFail(ctx, { error: 'invalid_target', error_description: 'the client may not obtain tokens for that audience' });
    return;
  }
  const claims = verifyAssertion(subject);
  if (!claims) {
    oboFail(ctx, { error: 'invalid_grant', error_description: 'the subject token is not valid' });
    return;
  }
  const accountId = String(claims.oid ?? claims.sub);
  const requested = String(scope ?? '').split(' ').filter(Boolean);
  const { AccessToken, Grant } = ctx.oidc.provider;
  const grant = new Grant({ accountId, clientId: ctx.oidc.client.clientId });
  grant.addOIDCScope(requested.join(' '));
  const grantId = await grant.save();
  const token = new AccessToken({
    accountId, client: ctx.oidc.client, grantId, scope: requested.join(' '), gty: 'token-exchange',
  });
  const value = await token.save();
  ctx.body = {
    access_token: value, issued_token_type: accessTokenType, token_type: 'Bearer',
    expires_in: token.expiration, scope: requested.join(' '),
  };
}, ['subject_token', 'subject_token_type', 'requested_token_type', 'scope', 'audience', 'resource', 'actor_token', 'actor_token_type']);

// Count every token-endpoint request by grant type and final status; apply test knobs.
provider.use(async (ctx, next) => {
  const isToken = ctx.method === 'POST' && ctx.path === '/token';
  if (isToken && config.tokenDelayMs > 0) {
    await new Promise((resolve) => { setTimeout(resolve, config.tokenDelayMs); });
  }
  if (isToken && config.failTokenRequests > 0) {
    config.failTokenRequests -= 1;
    count('unknown', config.failStatus);
    ctx.status = config.failStatus;
    if (config.failRetryAfter) ctx.set('Retry-After', String(config.failRetryAfter));
    if (config.failHtml) {
      ctx.type = 'text/html';
      ctx.body = `<html><body><h1>${config.failStatus} Error</h1><p>Request blocked.</p></body></html>`;
    } else {
      ctx.body = { error: config.failError };
    }
    return;
  }
  await next();
  if (isToken) {
    const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
    count(grantType, ctx.status);
    if (
      grantType === 'refresh_token' && ctx.status === 200
      && config.omitRefreshTokenOnRefresh && ctx.body && typeof ctx.body === 'object'
    ) {
      delete ctx.body.refresh_token;
    }
    if (ctx.status === 200 && config.rewriteTokenResponse && ctx.body && typeof ctx.body === 'object') {
      for (const [field, value] of Object.entries(config.rewriteTokenResponse)) {
        if (value === null) delete ctx.body[field];
        else ctx.body[field] = value;
      }
    }
  }
});

const callback = provider.callback();

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve(text ? JSON.parse(text) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

const server = https.createServer(
  { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) },
  async (req, res) => {
    try {
      if (req.url === '/__stats' && req.method === 'GET') {
        sendJson(res, 200, { token: stats, config });
      } else if (req.url === '/__stats/reset' && req.method === 'POST') {
        stats = {};
        sendJson(res, 200, { token: stats });
      } else if (req.url === '/__config' && req.method === 'POST') {
        const body = await readJson(req);
        config = body.reset ? { ...DEFAULTS } : { ...config, ...body };
        sendJson(res, 200, config);
      } else if (req.url === '/oidc' || req.url.startsWith('/oidc/') || req.url.startsWith('/oidc?')) {
        // Mounted as express would: oidc-provider derives its mount path from originalUrl.
        req.originalUrl = req.url;
        req.url = req.url.slice('/oidc'.length) || '/';
        callback(req, res);
      } else {
        sendJson(res, 404, { error: 'not_found' });
      }
    } catch (err) {
      sendJson(res, 500, { error: 'server_error', error_description: String(err) });
    }
  },
);
server.keepAliveTimeout = 5000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider listening on ${issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { server.close(); process.exit(0); });
}
