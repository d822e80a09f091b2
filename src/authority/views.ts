// Server-rendered pages of the authority: sign-in, second factor (one-time
// code and/or passkey), account (passkey enrolment), logout, errors. No inline
// script and no inline style, ever: the sign-in, code and logout pages carry no
// script at all; pages that offer a passkey load the one same-origin file
// /assets/webauthn.js (CSP script-src 'self'). Every action is a real <form>
// with a <button>, so it works with a keyboard alone; without the script (or
// in a browser without WebAuthn) the passkey parts stay hidden and the rest of
// the page works. Every field has a label; errors are announced (role="alert").

export const STYLESHEET = `
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { max-width: 26rem; margin: 4rem auto; padding: 0 1rem; line-height: 1.5; }
h1 { font-size: 1.4rem; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input { display: block; width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; margin-top: .25rem; }
button { margin-top: 1.25rem; padding: .55rem 1.2rem; font-size: 1rem; }
button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #1a73e8; outline-offset: 2px; }
.error { border-left: 4px solid #c5221f; padding: .5rem .75rem; background: rgba(197,34,31,.08); }
.secondary { background: none; border: 1px solid currentColor; }
small { display: block; margin-top: .25rem; opacity: .8; }
h2 { font-size: 1.1rem; margin-top: 2rem; }
.notice { border-left: 4px solid #188038; padding: .5rem .75rem; background: rgba(24,128,56,.08); }
.passkeys { list-style: none; padding: 0; }
.passkeys li { border-top: 1px solid rgba(127,127,127,.4); padding: .5rem 0; }
.passkeys form { display: inline; }
[hidden] { display: none !important; }
`;

export function esc(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title: string, body: string, script = false): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/assets/authority.css">${script ? '\n<script src="/assets/webauthn.js" defer></script>' : ''}
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function errorBox(message: string | undefined): string {
  return message ? `<p class="error" role="alert" id="form-error">${esc(message)}</p>` : '';
}

export function loginPage(o: { uid: string; csrf: string; zone: string; client: string; error?: string; username?: string; upstreams?: { name: string; label: string }[] }): string {
  const upstreams = (o.upstreams ?? [])
    .map(
      (u) => `<form method="post" action="/interaction/${esc(o.uid)}/federate">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<input type="hidden" name="upstream" value="${esc(u.name)}">
<button type="submit" class="secondary">${esc(u.label)}</button>
</form>`,
    )
    .join('\n');
  const described = o.error ? ' aria-describedby="form-error"' : '';
  return page(
    `Sign in - ${o.zone}`,
    `<h1>Sign in</h1>
<p>to continue to <strong>${esc(o.client)}</strong></p>
${errorBox(o.error)}
<form method="post" action="/interaction/${esc(o.uid)}/login" autocomplete="on">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" maxlength="128" required autofocus value="${esc(o.username)}"${described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" maxlength="1024" required>
<button type="submit">Sign in</button>
</form>${upstreams ? `\n<h2>Or</h2>\n${upstreams}` : ''}
<form method="post" action="/interaction/${esc(o.uid)}/abort">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<button type="submit" class="secondary">Cancel</button>
</form>`,
  );
}

/** A passkey ceremony form: the script fills `response` and submits it. */
function webauthnForm(o: { action: string; csrf: string; kind: 'get' | 'create'; options: unknown; label: string; extra?: string }): string {
  return `<form method="post" action="${esc(o.action)}" data-webauthn="${o.kind}" data-options="${esc(JSON.stringify(o.options))}">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<input type="hidden" name="response" value="">${o.extra ?? ''}
<button type="submit">${esc(o.label)}</button>
<p class="status" role="status" aria-live="polite" data-webauthn-status></p>
</form>`;
}

/**
 * The second step of sign-in: a TOTP code form when the user has TOTP, a
 * passkey button when the user has passkeys (shown only where the browser
 * offers WebAuthn).
 */
export function otpPage(o: { uid: string; csrf: string; zone: string; error?: string; totp?: boolean; webauthnOptions?: unknown }): string {
  const totp = o.totp ?? true;
  const described = o.error ? ' aria-describedby="form-error otp-help"' : ' aria-describedby="otp-help"';
  const passkey =
    o.webauthnOptions === undefined
      ? ''
      : `<section data-webauthn-section hidden aria-labelledby="passkey-heading">
<h2 id="passkey-heading">Passkey or security key</h2>
${webauthnForm({ action: `/interaction/${o.uid}/webauthn`, csrf: o.csrf, kind: 'get', options: o.webauthnOptions, label: 'Use a passkey or security key' })}
</section>
${totp ? '' : '<p data-webauthn-unsupported>This account signs in with a passkey or security key, and this browser does not offer one here (or scripts are off). Use a browser that supports passkeys, or ask an administrator.</p>'}`;
  const code = totp
    ? `${o.webauthnOptions === undefined ? '' : '<h2>Code from your authenticator app</h2>\n'}<form method="post" action="/interaction/${esc(o.uid)}/otp" autocomplete="off">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<label for="otp">${o.webauthnOptions === undefined ? 'Code from your authenticator app' : 'Code'}</label>
<input id="otp" name="otp" type="text" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" required${o.webauthnOptions === undefined ? ' autofocus' : ''}${described}>
<small id="otp-help">Six digits; a code works once.</small>
<button type="submit">Verify</button>
</form>`
    : '';
  return page(
    `Verification - ${o.zone}`,
    `<h1>Two-step verification</h1>
${errorBox(o.error)}
${passkey}
${code}
<form method="post" action="/interaction/${esc(o.uid)}/abort">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<button type="submit" class="secondary">Cancel</button>
</form>`,
    o.webauthnOptions !== undefined,
  );
}

export interface AccountPasskeyView {
  id: string;
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
  kind: string;
}

/** The signed-in user's page: their passkeys, adding one (when the sign-in is recent), removing one. */
export function accountPage(o: {
  zone: string;
  username: string;
  csrf: string;
  passkeys: AccountPasskeyView[];
  totp: boolean;
  /** registration options when enrolment is allowed now */
  registerOptions?: unknown;
  /** why enrolment is not offered */
  enrolBlocked?: string;
  notice?: string;
  error?: string;
  consents?: { clientId: string; client: string; scopes: { scope: string; words: string }[]; grantedAt: number }[];
  sessions?: { uid: string; current: boolean; loginTs?: number; mfa: boolean; clients: string[] }[];
}): string {
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  /** a list of things the user can take away, one form (and one labelled button) per item; `html` parts are escaped by the caller */
  const list = <T>(items: T[], empty: string, item: (x: T) => { title: string; smallHtml: string; action: string; field: [string, string]; button: string; label: string }) =>
    items.length === 0
      ? `<p>${esc(empty)}</p>`
      : `<ul class="passkeys">
${items
  .map((x) => {
    const i = item(x);
    return `<li><strong>${esc(i.title)}</strong> <small>${i.smallHtml}</small>
<form method="post" action="${esc(i.action)}">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<input type="hidden" name="${esc(i.field[0])}" value="${esc(i.field[1])}">
<button type="submit" class="secondary" aria-label="${esc(i.label)}">${esc(i.button)}</button>
</form></li>`;
  })
  .join('\n')}
</ul>`;
  const consents = list(o.consents ?? [], 'You have not allowed any other application.', (c) => ({
    title: c.client,
    smallHtml: `since ${day(c.grantedAt)}: ${c.scopes.map((s) => esc(s.words)).join('; ')}`,
    action: '/account/consents/revoke',
    field: ['client', c.clientId],
    button: 'Revoke',
    label: `Revoke access of ${c.client}`,
  }));
  const sessions = list(o.sessions ?? [], 'You are signed in nowhere else.', (x) => ({
    title: x.current ? 'This browser' : 'Another sign-in',
    smallHtml: `signed in ${x.loginTs ? new Date(x.loginTs * 1000).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : 'at an unknown time'}${x.mfa ? ' with a second factor' : ''}${x.clients.length ? `; used by ${x.clients.map(esc).join(', ')}` : ''}`,
    action: '/account/sessions/end',
    field: ['session', x.uid],
    button: 'Sign out',
    label: `Sign out ${x.current ? 'this browser' : 'that sign-in'}`,
  }));
  const passkeys = list(o.passkeys, 'You have no passkey or security key yet.', (p) => ({
    title: p.name,
    smallHtml: `${esc(p.kind)}; added ${day(p.createdAt)}; ${p.lastUsedAt === null ? 'never used' : `last used ${day(p.lastUsedAt)}`}`,
    action: '/account/webauthn/remove',
    field: ['credential', p.id],
    button: 'Remove',
    label: `Remove ${p.name}`,
  }));
  const add =
    o.registerOptions !== undefined
      ? `<section data-webauthn-section hidden aria-labelledby="add-heading">
<h2 id="add-heading">Add a passkey or security key</h2>
${webauthnForm({
  action: '/account/webauthn/register',
  csrf: o.csrf,
  kind: 'create',
  options: o.registerOptions,
  label: 'Add a passkey',
  extra: '\n<label for="passkey-name">Name for it (so you can tell it apart)</label>\n<input id="passkey-name" name="name" type="text" maxlength="64" autocomplete="off">',
})}
</section>
<p data-webauthn-unsupported>This browser does not offer passkeys here (or scripts are off), so one cannot be added from it.</p>`
      : `<p>${esc(o.enrolBlocked ?? 'A passkey cannot be added now.')}</p>`;
  return page(
    `Your sign-in methods - ${o.zone}`,
    `<h1>Your sign-in methods</h1>
<p>Signed in as <strong>${esc(o.username)}</strong>.</p>
${errorBox(o.error)}${o.notice ? `<p class="notice" role="status">${esc(o.notice)}</p>` : ''}
<h2>Authenticator app</h2>
<p>${o.totp ? 'A one-time code app is set up.' : 'No one-time code app is set up.'}</p>
<h2>Passkeys and security keys</h2>
${passkeys}
${add}
<h2>Applications you allowed</h2>
${consents}
<h2>Where you are signed in</h2>
${sessions}`,
    o.registerOptions !== undefined,
  );
}

/**
 * The consent page: which application, what it may do (each scope in plain
 * words, the scope itself beside it), at which API (the audience), and two
 * buttons. `scopes` echoes the exact set shown, so a form edited to ask for
 * more is refused (interactions.ts).
 */
export function consentPage(o: {
  uid: string;
  csrf: string;
  zone: string;
  client: string;
  clientId: string;
  firstParty: boolean;
  scopes: { scope: string; words: string }[];
  audiences: string[];
  keys: string;
}): string {
  const items = o.scopes.map((s) => `<li>${esc(s.words)} <small><code>${esc(s.scope)}</code></small></li>`).join('\n');
  return page(
    `Allow access - ${o.zone}`,
    `<h1 id="consent-heading">Allow ${esc(o.client)} access?</h1>
<p><strong>${esc(o.client)}</strong> <small>(client <code>${esc(o.clientId)}</code>${o.firstParty ? '' : ', not operated by this zone'})</small> asks to:</p>
<ul aria-labelledby="consent-heading">
${items}
</ul>
${o.audiences.length > 0 ? `<p>at ${o.audiences.map((a) => `<code>${esc(a)}</code>`).join(', ')}.</p>` : ''}
<p>You can take this back at any time on your account page.</p>
<form method="post" action="/interaction/${esc(o.uid)}/consent">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<input type="hidden" name="scopes" value="${esc(o.keys)}">
<button type="submit" autofocus>Allow</button>
</form>
<form method="post" action="/interaction/${esc(o.uid)}/abort">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<button type="submit" class="secondary">Deny</button>
</form>`,
  );
}

/**
 * A same-origin hop as a new navigation (meta refresh, and a link for a browser
 * that does not follow it): after a form submission, browsers check every
 * redirect against the submitting page's form-action, and an upstream's page
 * cannot list where this authority sends the browser next.
 */
export function hopPage(location: string): string {
  return page('Signing in', `<meta http-equiv="refresh" content="0;url=${esc(location)}">
<h1>Signing in</h1>
<p><a href="${esc(location)}">Continue</a></p>`);
}

export function messagePage(title: string, message: string, requestId?: string): string {
  return page(
    title,
    `<h1>${esc(title)}</h1>
<p role="alert">${esc(message)}</p>${requestId ? `\n<p><small>Request id: ${esc(requestId)}</small></p>` : ''}`,
  );
}

/**
 * `form` is oidc-provider's hidden logout form (xsrf field); the buttons submit
 * it. "logout=yes" ends the whole sign-in session (every application's grant
 * made in it); without it only the asking application's grant ends and the
 * session stays.
 */
export function logoutPage(form: string, zone: string): string {
  return page(
    `Sign out - ${zone}`,
    `<h1>Sign out</h1>
<p>Do you want to sign out of ${esc(zone)}?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign out of every application</button>
<button type="submit" form="op.logoutForm" class="secondary">Sign out of this application only</button>`,
  );
}

/**
 * A page with one form the user submits with a button: what oidc-provider's
 * auto-submitting form_post page becomes (html-policy.ts), without script.
 */
export function continuePage(o: { title: string; message: string; zone: string; form?: { action: string; fields: [string, string][] } }): string {
  const form = o.form
    ? `<form method="post" action="${esc(o.form.action)}">
${o.form.fields.map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join('\n')}
<button type="submit" autofocus>Continue</button>
</form>`
    : '';
  return page(`${o.title} - ${o.zone}`, `<h1>${esc(o.title)}</h1>
<p>${esc(o.message)}</p>
${form}`);
}

export const HTML_CSP_BASE = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/** pages that load /assets/webauthn.js: that file and nothing else may run */
export const HTML_CSP_SCRIPT = `${HTML_CSP_BASE}; script-src 'self'; require-trusted-types-for 'script'`;

/**
 * /assets/webauthn.js: the only script of the authority. It reveals the
 * passkey parts of a page when the browser offers WebAuthn, and on submit of a
 * form[data-webauthn] runs the ceremony with the options the server put in
 * data-options, writes the JSON result into the form's hidden `response` field
 * and submits the form. It never writes HTML (textContent only).
 */
export const WEBAUTHN_SCRIPT = `'use strict';
(function () {
  var supported = typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
  function toBuf(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64(buf) {
    if (!buf) return undefined;
    var a = new Uint8Array(buf), s = '';
    for (var i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
    return btoa(s).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  }
  function descriptors(list) {
    return (list || []).map(function (d) { return { type: d.type, id: toBuf(d.id), transports: d.transports }; });
  }
  function creation(o) {
    var pk = Object.assign({}, o, { challenge: toBuf(o.challenge), user: Object.assign({}, o.user, { id: toBuf(o.user.id) }) });
    pk.excludeCredentials = descriptors(o.excludeCredentials);
    return { publicKey: pk };
  }
  function request(o) {
    var pk = Object.assign({}, o, { challenge: toBuf(o.challenge) });
    pk.allowCredentials = descriptors(o.allowCredentials);
    return { publicKey: pk };
  }
  function serialize(c, kind) {
    var r = c.response, out = { id: c.id, rawId: toB64(c.rawId), type: c.type, clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {}, authenticatorAttachment: c.authenticatorAttachment || undefined };
    if (kind === 'create') out.response = { clientDataJSON: toB64(r.clientDataJSON), attestationObject: toB64(r.attestationObject), transports: r.getTransports ? r.getTransports() : [] };
    else out.response = { clientDataJSON: toB64(r.clientDataJSON), authenticatorData: toB64(r.authenticatorData), signature: toB64(r.signature), userHandle: toB64(r.userHandle) };
    return out;
  }
  function start() {
    document.querySelectorAll('[data-webauthn-unsupported]').forEach(function (el) { el.hidden = supported; });
    if (!supported) return;
    document.querySelectorAll('[data-webauthn-section]').forEach(function (el) { el.hidden = false; });
    document.querySelectorAll('form[data-webauthn]').forEach(function (form) {
      var kind = form.getAttribute('data-webauthn');
      var status = form.querySelector('[data-webauthn-status]');
      var button = form.querySelector('button[type="submit"]');
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        var options = JSON.parse(form.getAttribute('data-options'));
        button.disabled = true;
        status.textContent = 'Follow the instructions of your browser or security key.';
        var ceremony = kind === 'create' ? navigator.credentials.create(creation(options)) : navigator.credentials.get(request(options));
        ceremony.then(function (credential) {
          form.elements.namedItem('response').value = JSON.stringify(serialize(credential, kind));
          status.textContent = 'Checking…';
          form.submit();
        }, function (error) {
          button.disabled = false;
          var name = error && error.name;
          status.textContent = name === 'NotAllowedError' ? 'The request was cancelled or timed out. Try again.'
            : name === 'InvalidStateError' ? 'This passkey is already registered.'
            : 'Your browser could not use a passkey here (' + (name || 'error') + ').';
          button.focus();
        });
      });
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
`;
