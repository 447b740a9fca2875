// The OAuth playground's OpenID provider (development only): node `oidc-provider`, the
// certified implementation the test suite also runs (tests/doubles/oidc/server.mjs).
//
// node functions/devtools/oidc_demo.mjs --port P --cert C --key K --redirect-uri URI
//      --client-id ID [--access-token-ttl SECONDS]    (client secret: $OIDC_DEMO_CLIENT_SECRET)
//
// * HTTPS on 127.0.0.1:P, issuer https://127.0.0.1:P/oidc (discovery at
//   /oidc/.well-known/openid-configuration).
// * One confidential client (client_secret_post), PKCE S256 required, grants
//   authorization_code and refresh_token, refresh tokens rotated with reuse detection.
// * Sign-in: the provider's development login form; the demo user is `demo` (any
//   password is accepted: this provider holds nothing worth protecting).
// * Access tokens live --access-token-ttl seconds (default 600), so a refresh happens
//   within minutes of consent.
import fs from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'redirect-uri': { type: 'string' },
    'client-id': { type: 'string' },
    'access-token-ttl': { type: 'string', default: '600' },
  },
});

const port = Number(args.port);
const issuer = `https://127.0.0.1:${port}/oidc`;
const accessTokenTtl = Number(args['access-token-ttl']);

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'],
    client_secret: process.env.OIDC_DEMO_CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    redirect_uris: [args['redirect-uri']],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope: 'openid offline_access profile email',
  }],
  // A fresh key per start: cookies of an earlier run are simply invalid.
  cookies: { keys: [Math.random().toString(36).slice(2) + Date.now().toString(36)] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
  features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: () => accessTokenTtl,
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
      return { sub: id, email: `${id}@demo.invalid`, name: id };
    },
  }),
});
provider.proxy = false;

const callback = provider.callback();
const server = https.createServer(
  { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) },
  (req, res) => {
    if (req.url === '/oidc' || req.url.startsWith('/oidc/') || req.url.startsWith('/oidc?')) {
      // Mounted as express would: oidc-provider derives its mount path from originalUrl.
      req.originalUrl = req.url;
      req.url = req.url.slice('/oidc'.length) || '/';
      callback(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', issuer }));
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
