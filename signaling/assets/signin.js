// OIDC sign-in for the staff pages (console, archive) and the callback page: the
// authorization-code flow with PKCE (S256) as a public client, in the browser.
//
// The page's configuration (JSON in #page-config, filled in by the server) carries
// `sign_in` = { authorization_endpoint, token_endpoint, client_id, scopes, resource?,
// issuer } when OIDC sign-in is configured, else null. `begin()` keeps a random
// `state`, `nonce` and PKCE verifier in sessionStorage and sends the browser to the
// provider; the callback page calls `complete()`, which checks `state`, redeems the code
// at the token endpoint with the verifier, checks the ID token's `nonce`, `iss` and `aud`
// and keeps the access token (with its expiry) in sessionStorage, where `token()` finds
// it. The ID token's signature is not checked here: it came straight from the token
// endpoint over the connection we opened (OpenID Connect Core 3.1.3.7), and the server
// verifies the access token on every API call anyway. `signOut()` forgets the token and,
// where the provider offers RP-initiated logout, ends its session too.
'use strict';
(() => {
  const TOKEN_KEY = 'gremium-oidc-token';
  const PENDING_KEY = 'gremium-oidc-pending';
  const LOGOUT_KEY = 'gremium-oidc-logout';
  // Treat a token as expired a little early, so no request fails half-way.
  const SKEW_MS = 30 * 1000;

  const readConfig = () => {
    try {
      const el = document.getElementById('page-config');
      return (el && JSON.parse(el.textContent)) || {};
    } catch (_) {
      return {};
    }
  };
  const config = readConfig();
  const client = config.sign_in || null;

  const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const sha256 = (text) => crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  const jwtPayload = (jwt) => {
    const part = String(jwt).split('.')[1] || '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    return JSON.parse(decodeURIComponent(escape(json)));
  };
  const load = (key) => {
    try { return JSON.parse(sessionStorage.getItem(key) || 'null'); } catch (_) { return null; }
  };
  const store = (key, value) => {
    try {
      if (value === null) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, JSON.stringify(value));
    } catch (_) { /* private mode: sign-in lasts this page only */ }
  };

  // A path on our own origin, or null: never an absolute URL, a scheme-relative
  // `//host` or a backslash trick, so the callback cannot be used as an open redirect.
  function safeReturn(path) {
    if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')) return null;
    if (/[\\\u0000-\u001f\u007f]/.test(path)) return null;
    try {
      const url = new URL(path, location.origin);
      if (url.origin !== location.origin) return null;
      return url.pathname + url.search + url.hash;
    } catch (_) {
      return null;
    }
  }

  const redirectUri = () => location.origin + '/auth/callback';

  async function begin(returnTo) {
    if (!client) throw new Error('OIDC sign-in is not configured');
    const pending = {
      state: random(32), nonce: random(32), verifier: random(48),
      return_to: safeReturn(returnTo) || '/archive',
    };
    store(PENDING_KEY, pending);
    const url = new URL(client.authorization_endpoint);
    const p = url.searchParams;
    p.set('response_type', 'code');
    p.set('client_id', client.client_id);
    p.set('redirect_uri', redirectUri());
    p.set('scope', client.scopes);
    p.set('state', pending.state);
    p.set('nonce', pending.nonce);
    p.set('code_challenge', b64url(await sha256(pending.verifier)));
    p.set('code_challenge_method', 'S256');
    if (client.resource) p.set('resource', client.resource);
    location.assign(url.toString());
  }

  // The access token from sign-in, or null when there is none or it has expired (an
  // expired one is dropped, so the page offers sign-in again).
  function token() {
    const t = load(TOKEN_KEY);
    if (!t || typeof t.access_token !== 'string') return null;
    if (typeof t.expires_at === 'number' && Date.now() > t.expires_at - SKEW_MS) {
      store(TOKEN_KEY, null);
      return null;
    }
    return t.access_token;
  }

  // Who signed in (the ID token's subject and name), for the page header.
  function user() {
    const t = load(TOKEN_KEY);
    return t && token() ? { sub: t.sub || '', name: t.name || '' } : null;
  }

  // Forget the sign-in in this tab. With `returnTo` and a provider that supports
  // RP-initiated logout, returns the URL that ends the provider's session too (so the
  // next "Sign in" asks for the password again, e.g. on a shared computer) and comes
  // back to /auth/callback, which returns to `returnTo`; else null.
  function signOut(returnTo) {
    const t = load(TOKEN_KEY);
    store(TOKEN_KEY, null);
    store(PENDING_KEY, null);
    if (!returnTo || !client || !client.end_session_endpoint) return null;
    const logout = { state: random(32), return_to: safeReturn(returnTo) || '/archive' };
    store(LOGOUT_KEY, logout);
    const url = new URL(client.end_session_endpoint);
    url.searchParams.set('client_id', client.client_id);
    url.searchParams.set('post_logout_redirect_uri', redirectUri());
    url.searchParams.set('state', logout.state);
    if (t && typeof t.id_token === 'string') url.searchParams.set('id_token_hint', t.id_token);
    return url.toString();
  }

  // The callback: { ok: true, returnTo } or { ok: false, reason, returnTo, detail }.
  // reason: 'not_configured', 'no_pending' (no sign-in was started here, or it was
  // already used), 'state' (the state does not match: refused, nothing is redeemed),
  // 'provider' (the provider returned an error), 'exchange' (the token endpoint refused
  // or was unreachable), 'id_token' (missing, or its nonce, issuer or audience is wrong).
  async function complete() {
    const params = new URLSearchParams(location.search);
    const logout = load(LOGOUT_KEY);
    if (logout && !params.has('code') && params.get('state') === logout.state) {
      // Back from signing out at the provider.
      store(LOGOUT_KEY, null);
      return { ok: true, signedOut: true, returnTo: safeReturn(logout.return_to) || '/archive' };
    }
    const pending = load(PENDING_KEY);
    const back = (pending && safeReturn(pending.return_to)) || '/archive';
    const fail = (reason, detail) => ({ ok: false, reason, detail: detail || '', returnTo: back });
    if (!client) return fail('not_configured');
    if (!pending) return fail('no_pending');
    if (params.get('state') !== pending.state) return fail('state');
    // One attempt per sign-in: a replayed callback finds nothing pending.
    store(PENDING_KEY, null);
    if (params.get('error')) return fail('provider', params.get('error_description') || params.get('error'));
    const code = params.get('code');
    if (!code) return fail('provider', 'no code');
    const body = new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri(),
      client_id: client.client_id, code_verifier: pending.verifier,
    });
    if (client.resource) body.set('resource', client.resource);
    let json;
    try {
      const resp = await fetch(client.token_endpoint, {
        method: 'POST', body, credentials: 'omit',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Accept': 'application/json' },
      });
      json = await resp.json().catch(() => null);
      if (!resp.ok || !json || typeof json.access_token !== 'string') {
        return fail('exchange', (json && (json.error_description || json.error)) || ('HTTP ' + resp.status));
      }
    } catch (e) {
      return fail('exchange', String(e));
    }
    let id;
    try { id = jwtPayload(json.id_token); } catch (_) { return fail('id_token', 'missing or malformed'); }
    const aud = Array.isArray(id.aud) ? id.aud : [id.aud];
    if (id.nonce !== pending.nonce) return fail('id_token', 'nonce');
    if (id.iss !== client.issuer) return fail('id_token', 'iss');
    if (!aud.includes(client.client_id)) return fail('id_token', 'aud');
    let expiresAt = typeof json.expires_in === 'number' ? Date.now() + json.expires_in * 1000 : null;
    try {
      const exp = jwtPayload(json.access_token).exp;
      if (typeof exp === 'number') expiresAt = Math.min(expiresAt || Infinity, exp * 1000);
    } catch (_) { /* an opaque access token: expires_in only */ }
    store(TOKEN_KEY, {
      access_token: json.access_token, expires_at: expiresAt, id_token: json.id_token,
      sub: String(id.sub || ''), name: String(id.name || id.preferred_username || ''),
    });
    return { ok: true, returnTo: back };
  }

  // The token a staff page works with: one from the link (`?token=`, kept in
  // sessionStorage under `key` and removed from the address bar), else the one kept
  // from an earlier link, else the OIDC sign-in's. `fromSignIn` says it is the last.
  function pageToken(key) {
    let link = new URLSearchParams(location.search).get('token');
    try {
      if (link) sessionStorage.setItem(key, link);
      else link = sessionStorage.getItem(key);
    } catch (_) { /* private mode */ }
    if (location.search) history.replaceState(null, '', location.pathname);
    if (link || !client) return { token: link, fromSignIn: false };
    const t = token();
    return { token: t, fromSignIn: !!t };
  }

  // What a staff page without a token shows: sign in, sign-in unavailable (discovery
  // failed), or the local-token hint.
  const noTokenPhase = () => (client ? 'sign_in' : (config.sign_in_unavailable ? 'sign_in_unavailable' : 'no_token'));

  window.gremiumSignIn = {
    configured: !!client,
    unavailable: !!config.sign_in_unavailable,
    begin, token, user, signOut, complete, safeReturn, pageToken, noTokenPhase,
  };
})();
