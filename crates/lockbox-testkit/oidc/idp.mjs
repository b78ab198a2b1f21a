// A real OpenID Provider (npm `oidc-provider`) on loopback, for Lockbox's
// tests. Started by `lockbox_testkit::oidc::Idp::start`:
//
//     node idp.mjs CONFIG_JSON_PATH
//
// The configuration (JSON):
//
//     {
//       "clients": [
//         {"client_id": "lockbox-contoso", "client_secret": "s3cret",
//          "redirect_uris": ["http://127.0.0.1:1234/sign-in/callback"]},
//         {"client_id": "lockbox-cli", "public": true,
//          "redirect_uris": ["http://127.0.0.1/callback"]}
//       ],
//       "accounts": [
//         {"sub": "a1b2c3", "login": "olivia", "password": "pw-olivia",
//          "email": "olivia@contoso.com", "email_verified": true, "name": "Olivia",
//          "claims": {"preferred_username": "olivia"}}
//       ],
//       "key": "RS256"
//     }
//
// A client may also carry `"metadata": {...}`: client metadata merged last
// (say `{"application_type": "web"}`).
//
// It listens on 127.0.0.1, port 0; the issuer is `http://127.0.0.1:PORT`.
// Once listening it prints ONE line to stdout,
// `{"ready": true, "issuer": "...", "jwks": {"keys": [...]}}`, and runs
// until killed or until its stdin closes. It logs little, to stderr only.
//
// What it does:
// - one signing key, made at start: RS256 (2048-bit RSA) or, with
//   `"key": "EdDSA"`, Ed25519 (alg `EdDSA`); every client's ID tokens are
//   signed with it;
// - scopes `openid email profile`; `email` gives `email` and
//   `email_verified`, `profile` gives `name`; an account's extra `claims`
//   come with `openid` (so in every ID token and userinfo answer);
// - the authorization code flow, PKCE (S256) required for every client;
//   confidential clients authenticate with `client_secret_basic` or
//   `client_secret_post` (either); public clients with `none`, are
//   `native` (loopback redirect URIs match on any port, RFC 8252) and may
//   use the device authorization grant;
// - every ID token has `auth_time`, `amr: ["pwd"]` and
//   `acr: "urn:lockbox:test:pwd"`, from the sign-in; `max_age` and
//   `prompt=login` show the login form again (and move `auth_time`);
// - no consent is ever asked: what a client asks for is granted;
// - pages of its own, with no outside resources: the login form
//   (`GET /interaction/:uid`: `input[name=login]`, `input[name=password]`,
//   `button[type=submit]`; a link `a#cancel` to refuse, which sends the
//   client `error=access_denied`), the device flow's user-code page
//   (`input[name=user_code]`, `button[type=submit]`) and its confirmation
//   page (`button[type=submit]`, then `button[name=abort]`). Each page's
//   `<body>` says what it is in `data-page`: `login`, `device-input`,
//   `device-confirm`, `device-success`, `logout`, `logout-success`, `error`;
// - a control endpoint for tests: `POST /__test/tamper` with JSON
//   `{"mode": "...", "value": "..."}` changes what `/token` answers from
//   then on (the `id_token`, never the `access_token`); 204. Modes: `none`,
//   `nonce` (value), `expired`, `not_yet_valid`, `issuer` (value),
//   `audience` (value), `other_key`, `alg_none`.
//
// Keys and signatures are node:crypto's. `jose` (oidc-provider's JOSE
// library, pinned in package.json too) is what the Rust tests check
// signatures with.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints its notices with console.info, to stdout, which is
// the ready line's alone; known development-only warnings (in-memory
// storage, Node.js 20) are dropped.
const QUIET = [
  /development-only in-memory adapter/,
  /Unsupported runtime/,
];
console.log = console.error;
console.info = console.error;
const warn = console.warn.bind(console);
console.warn = (...args) => {
  if (!QUIET.some((re) => re.test(String(args[0])))) {
    warn(...args);
  }
};

const { default: Provider, interactionPolicy } = await import('oidc-provider');

const ACR = 'urn:lockbox:test:pwd';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

if (process.argv.length !== 3) {
  fail('usage: node idp.mjs CONFIG_JSON_PATH');
}
let config;
try {
  config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (e) {
  fail(`cannot read the configuration: ${e.message}`);
}
const keyType = config.key ?? 'RS256';
if (keyType !== 'RS256' && keyType !== 'EdDSA') {
  fail(`key must be "RS256" or "EdDSA", not ${JSON.stringify(keyType)}`);
}
const accounts = config.accounts ?? [];
const accountsBySub = new Map(accounts.map((a) => [a.sub, a]));
const accountsByLogin = new Map(accounts.map((a) => [a.login, a]));

// ---- keys -----------------------------------------------------------------

function generateKey() {
  return keyType === 'EdDSA'
    ? crypto.generateKeyPairSync('ed25519')
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
}

const kid = `lockbox-test-${crypto.randomBytes(6).toString('hex')}`;
const signing = generateKey();
const privateJwk = {
  ...signing.privateKey.export({ format: 'jwk' }), kid, alg: keyType, use: 'sig',
};
const publicJwk = {
  ...signing.publicKey.export({ format: 'jwk' }), kid, alg: keyType, use: 'sig',
};

/** A compact JWS of `payload` (bytes) under `header`, signed with `privateKey`. */
function sign(header, payload, privateKey) {
  const input = `${b64(JSON.stringify(header))}.${b64(payload)}`;
  const signature = keyType === 'EdDSA'
    ? crypto.sign(null, Buffer.from(input), privateKey)
    : crypto.sign('sha256', Buffer.from(input), privateKey);
  return `${input}.${signature.toString('base64url')}`;
}

function b64(data) {
  return Buffer.from(data).toString('base64url');
}

// ---- pages ----------------------------------------------------------------

function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE = 'body{font-family:sans-serif;max-width:28em;margin:2em auto}'
  + 'label,input,button{display:block;margin:.4em 0}.error{color:#b00020}';

function page(name, title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head>
<body data-page="${name}">
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage(uid, clientId, login, error) {
  return page('login', 'Sign in', `<p>to continue to <strong>${esc(clientId)}</strong></p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label>Login <input type="text" name="login" value="${esc(login)}" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button>
</form>
<p><a id="cancel" href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

// ---- the provider -----------------------------------------------------------

const extraClaims = [...new Set(accounts.flatMap((a) => Object.keys(a.claims ?? {})))];

const clients = (config.clients ?? []).map((c) => {
  const common = {
    client_id: c.client_id,
    redirect_uris: c.redirect_uris,
    response_types: ['code'],
    id_token_signed_response_alg: keyType,
    require_auth_time: true,
  };
  const kind = c.public
    ? {
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['authorization_code', DEVICE_CODE_GRANT],
    }
    : {
      client_secret: c.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      // Lockbox signs the command line in with its own (confidential)
      // client through the device grant.
      grant_types: ['authorization_code', DEVICE_CODE_GRANT],
    };
  return { ...common, ...kind, ...(c.metadata ?? {}) };
});

const policy = interactionPolicy.base();
// Native (public) clients would be asked for consent every time.
policy.get('consent').checks.remove('native_client_prompt');

async function deviceInputSource(ctx, form, out, err) {
  let message = '<p>Enter the code displayed on your device.</p>';
  if (err && (err.userCode || err.name === 'NoCodeError')) {
    message = '<p class="error" role="alert">The code you entered is incorrect. Try again.</p>';
  } else if (err && err.name === 'AbortedError') {
    message = '<p class="error" role="alert">The sign-in was cancelled.</p>';
  } else if (err) {
    message = '<p class="error" role="alert">There was an error processing your request.</p>';
  }
  ctx.body = page('device-input', 'Connect a device', `${message}
${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`);
}

async function deviceConfirmSource(ctx, form, client, deviceInfo, userCode) {
  const name = client.clientName || client.clientId;
  ctx.body = page('device-confirm', 'Confirm the device', `<p><strong>${esc(name)}</strong> shows the code</p>
<p><code id="user-code">${esc(userCode)}</code></p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
}

async function deviceSuccessSource(ctx) {
  ctx.body = page('device-success', 'Device connected', '<p>You can close this page.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('error', 'Error', Object.entries(out)
    .map(([k, v]) => `<p class="error"><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></p>`)
    .join('\n'));
}

async function logoutSource(ctx, form) {
  ctx.body = page('logout', 'Sign out', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('logout-success', 'Signed out', '<p>You are signed out.</p>');
}

async function findAccount(ctx, sub) {
  const account = accountsBySub.get(sub);
  if (!account) {
    return undefined;
  }
  return {
    accountId: sub,
    async claims() {
      return {
        ...(account.claims ?? {}),
        sub,
        email: account.email,
        email_verified: account.email_verified,
        name: account.name,
      };
    },
  };
}

// What a client asks for is granted, without a consent page.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const { Grant } = oidc.provider;
  const accountId = oidc.account?.accountId ?? oidc.session.accountId;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== oidc.client.clientId) {
    grant = new Grant({ accountId, clientId: oidc.client.clientId });
  }
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
// The issuer may name another host for 127.0.0.1 (`localhost`: another
// site than a relying party on 127.0.0.1, as a real IdP is).
const issuerHost = typeof config.host === 'string' && /^[a-z0-9.-]+$/.test(config.host)
  ? config.host
  : '127.0.0.1';
const issuer = `http://${issuerHost}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [privateJwk] },
  findAccount,
  loadExistingGrant,
  acrValues: [ACR],
  responseTypes: ['code'],
  scopes: ['openid', 'email', 'profile'],
  claims: {
    acr: null,
    amr: null,
    auth_time: null,
    iss: null,
    sid: null,
    // acr and amr would otherwise come only when asked for (acr_values, claims).
    openid: ['sub', 'acr', 'amr', ...extraClaims],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Scope claims in the ID token too, not only at userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  interactions: {
    policy,
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: deviceInputSource,
      userCodeConfirmSource: deviceConfirmSource,
      successSource: deviceSuccessSource,
    },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
  },
  renderError,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
  },
});

// ---- the tampering of ID tokens -----------------------------------------------

let tamper = { mode: 'none' };
const MODES = new Set([
  'none', 'nonce', 'expired', 'not_yet_valid', 'issuer', 'audience', 'other_key', 'alg_none',
]);
const WITH_VALUE = new Set(['nonce', 'issuer', 'audience']);

function tampered(idToken) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const now = Math.floor(Date.now() / 1000);
  const resign = (changes) => sign(header, JSON.stringify({ ...claims, ...changes }), signing.privateKey);
  switch (tamper.mode) {
    case 'nonce':
      return resign({ nonce: tamper.value });
    case 'expired':
      return resign({ exp: now - 600, iat: now - 1200 });
    case 'not_yet_valid':
      return resign({ iat: now + 3600, nbf: now + 3600, exp: now + 7200 });
    case 'issuer':
      return resign({ iss: tamper.value });
    case 'audience':
      return resign({ aud: tamper.value });
    case 'other_key':
      return sign(header, Buffer.from(p, 'base64url'), generateKey().privateKey);
    case 'alg_none':
      return `${b64(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${p}.`;
    default:
      return idToken;
  }
}

async function readForm(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 64 * 1024) {
      ctx.throw(413);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (ctx.is('application/json')) {
    return JSON.parse(text || '{}');
  }
  return Object.fromEntries(new URLSearchParams(text));
}

// Before the provider's own routes (and around them, for /token).
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    let body;
    try {
      body = await readForm(ctx);
    } catch {
      ctx.throw(400, 'the body must be JSON');
    }
    if (!MODES.has(body.mode) || (WITH_VALUE.has(body.mode) && typeof body.value !== 'string')) {
      ctx.throw(400, `unknown mode, or no string "value": ${JSON.stringify(body)}`);
    }
    tamper = { mode: body.mode, value: body.value };
    ctx.status = 204;
    return;
  }

  const interaction = /^\/interaction\/([^/]+)(\/login|\/abort)?$/.exec(ctx.path);
  if (interaction) {
    await handleInteraction(ctx, interaction[1], interaction[2]);
    return;
  }

  await next();

  if (
    ctx.path === '/token' && ctx.method === 'POST' && ctx.status === 200
    && tamper.mode !== 'none' && typeof ctx.body?.id_token === 'string'
  ) {
    ctx.body = { ...ctx.body, id_token: tampered(ctx.body.id_token) };
  }
});

async function handleInteraction(ctx, uid, action) {
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (e) {
    ctx.status = 400;
    await renderError(ctx, { error: 'invalid_request', error_description: e.message });
    return;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    await renderError(ctx, { error: 'invalid_request', error_description: 'interaction mismatch' });
    return;
  }
  const finish = async (result, merge) => {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: merge,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  };
  const { prompt, params } = details;

  if (action === '/abort' && ctx.method === 'GET') {
    await finish({ error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
    return;
  }

  if (prompt.name === 'consent' && ctx.method === 'GET' && !action) {
    // Granted as asked (loadExistingGrant grants most of it already).
    const { Grant } = provider;
    const accountId = details.session.accountId;
    let grant = details.grantId ? await Grant.find(details.grantId) : undefined;
    grant ??= new Grant({ accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) {
      grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    }
    if (missing.missingOIDCClaims) {
      grant.addOIDCClaims(missing.missingOIDCClaims);
    }
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await finish({ consent: { grantId } }, true);
    return;
  }

  if (prompt.name !== 'login') {
    ctx.status = 400;
    await renderError(ctx, { error: 'invalid_request', error_description: `unknown prompt ${prompt.name}` });
    return;
  }

  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    ctx.body = loginPage(uid, params.client_id, params.login_hint, undefined);
    return;
  }

  if (ctx.method === 'POST' && action === '/login') {
    const form = await readForm(ctx);
    const account = accountsByLogin.get(form.login ?? '');
    const ok = account !== undefined && typeof form.password === 'string'
      && crypto.timingSafeEqual(
        crypto.hash('sha256', form.password, 'buffer'),
        crypto.hash('sha256', account.password, 'buffer'),
      );
    if (!ok) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, form.login, 'Wrong login or password.');
      return;
    }
    await finish({
      login: {
        accountId: account.sub,
        acr: ACR,
        amr: ['pwd'],
        ts: Math.floor(Date.now() / 1000),
        remember: true,
      },
    }, false);
    return;
  }

  ctx.status = 405;
  await renderError(ctx, { error: 'invalid_request', error_description: 'method not allowed' });
}

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`idp: server error on ${ctx.method} ${ctx.path}: ${err.stack ?? err}\n`);
});

server.on('request', provider.callback());

// The parent closing our stdin (exiting, or dropping the handle) ends us.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));

process.stdout.write(`${JSON.stringify({ ready: true, issuer, jwks: { keys: [publicJwk] } })}\n`);
