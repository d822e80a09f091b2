// Server-rendered pages of the authority: sign-in, one-time code, logout,
// errors. No script at all (the CSP forbids it); forms work with a keyboard
// alone; every field has a label; errors are announced (role="alert").

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
`;

export function esc(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/assets/authority.css">
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

export function loginPage(o: { uid: string; csrf: string; zone: string; client: string; error?: string; username?: string }): string {
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
</form>
<form method="post" action="/interaction/${esc(o.uid)}/abort">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<button type="submit" class="secondary">Cancel</button>
</form>`,
  );
}

export function otpPage(o: { uid: string; csrf: string; zone: string; error?: string }): string {
  const described = o.error ? ' aria-describedby="form-error otp-help"' : ' aria-describedby="otp-help"';
  return page(
    `Verification code - ${o.zone}`,
    `<h1>Two-step verification</h1>
${errorBox(o.error)}
<form method="post" action="/interaction/${esc(o.uid)}/otp" autocomplete="off">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<label for="otp">Code from your authenticator app</label>
<input id="otp" name="otp" type="text" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" required autofocus${described}>
<small id="otp-help">Six digits; a code works once.</small>
<button type="submit">Verify</button>
</form>
<form method="post" action="/interaction/${esc(o.uid)}/abort">
<input type="hidden" name="csrf" value="${esc(o.csrf)}">
<button type="submit" class="secondary">Cancel</button>
</form>`,
  );
}

export function messagePage(title: string, message: string, requestId?: string): string {
  return page(
    title,
    `<h1>${esc(title)}</h1>
<p role="alert">${esc(message)}</p>${requestId ? `\n<p><small>Request id: ${esc(requestId)}</small></p>` : ''}`,
  );
}

/** `form` is oidc-provider's hidden logout form (xsrf field); the buttons submit it. */
export function logoutPage(form: string, zone: string): string {
  return page(
    `Sign out - ${zone}`,
    `<h1>Sign out</h1>
<p>Do you want to sign out?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" form="op.logoutForm" class="secondary">No, stay signed in</button>`,
  );
}

export const HTML_CSP_BASE = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";
