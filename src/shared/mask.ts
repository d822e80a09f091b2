// The one masking module of Gatehouse: every logger (shared/logger.ts, the
// gateway access log's secret-carrying fields, the authority audit log), every
// problem+json detail and the CLI's error output pass text through maskText.
//
// What is masked, and how:
//   card numbers      13–19 digits (single spaces or dashes allowed), first
//                     digit 2–6 (the card schemes' ranges), Luhn-valid → every
//                     digit but the last four becomes '*'
//   e-mail addresses  the local part → '***' (the domain stays)
//   JWTs (JWS, JWE)   → '[JWT]'
//   credentials       Bearer/Basic/Digest/DPoP/Negotiate <credential> → '<scheme> [REDACTED]'
//   API keys          Gatehouse gh_<prefix>_<secret> → gh_<prefix>_[REDACTED];
//                     AWS AKIA…, Stripe sk_/rk_live|test_…, GitHub gh[pousr]_…,
//                     Slack xox?-…, Google AIza… → '[API_KEY]'
//   URL passwords     scheme://user:password@ → scheme://user:[REDACTED]@
//   named secrets     password, passwd, pwd, secret, *_secret, token, *_token,
//                     api_key, apikey, session, cookie, otp, cvv, cvc … in
//                     forms and queries (name=value), JSON ("name":"value")
//                     and text (name: value) → the value becomes [REDACTED]
//   IBANs             mod-97-valid → country code, '*', last four
//
// Replacements never contain quotes or backslashes, so masking a serialized
// JSON line keeps it valid JSON. Each rule runs only when a cheap trigger
// (a character or a short substring) is present, so text without any of them
// costs a few indexOf calls.

const REDACTED = '[REDACTED]';

const SECRET_NAME = String.raw`[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|session[_-]?id|sessionid|cookie|credential|otp|totp|cvv|cvc|pin)`;
// "name":"value", and the same escaped inside a JSON string (\"name\":\"value\")
const JSON_PAIR = new RegExp(String.raw`"(${SECRET_NAME})"(\s*:\s*)"((?:[^"\\]|\\.)*)"`, 'gi');
const ESCAPED_JSON_PAIR = new RegExp(String.raw`\\"(${SECRET_NAME})\\"(\s*:\s*)\\"((?:[^"\\]|\\\\|\\(?!"))*)\\"`, 'gi');
// name=value (forms, queries, cookies) and name: value (text); the value stops at a separator or a quote
const KV_PAIR = new RegExp(String.raw`(?<![A-Za-z0-9_])(${SECRET_NAME})(\s*[=:]\s*)(?!\[REDACTED\]|\\?")([^\s&;,"'\\<>)}\]]+)`, 'gi');
// a credential has a digit, a capital or a symbol: 'Basic authentication' is prose
const AUTH_SCHEME = /\b(Bearer|Basic|Digest|DPoP|Negotiate)(\s+)([A-Za-z0-9._~+/=-]{8,})/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){2,4}/g;
const URL_PASSWORD = /([a-z][a-z0-9+.-]{1,20}:\/\/[^\s:/?#@"'\\]*):([^\s@/"'\\]+)@/gi;
const GATEHOUSE_API_KEY = /\bgh_([a-z0-9]{8})_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g;
const VENDOR_API_KEY =
  /\b(?:AKIA[0-9A-Z]{16}|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})\b/g;
const EMAIL = /[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})\b/g;
// a card number stands alone: not inside a word or a hex identifier (a trace id's leading digits)
const CARD = /(?<![0-9A-Za-z])[2-6](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])/g;
/** A UUID (request and event ids): a run of its decimal groups can look like a dash-separated card number. */
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const IBAN = /\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b/g;

/** Luhn (mod 10) over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (double) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

/** Whether [start, end) of `text` lies inside a UUID. */
function insideUuid(text: string, start: number, end: number): boolean {
  const from = Math.max(0, start - 36);
  const window = text.slice(from, Math.min(text.length, end + 36));
  for (const m of window.matchAll(UUID)) if (from + m.index <= start && from + m.index + m[0].length >= end) return true;
  return false;
}

function maskCard(match: string, offset: number, text: string): string {
  const digits = match.replace(/[ -]/g, '');
  if (digits.length < 13 || digits.length > 19 || !luhnValid(digits)) return match;
  if (match.includes('-') && insideUuid(text, offset, offset + match.length)) return match;
  let keep = 4;
  let out = '';
  for (let i = match.length - 1; i >= 0; i--) {
    const c = match[i];
    if (c === ' ' || c === '-') out = c + out;
    else out = (keep-- > 0 ? c : '*') + out;
  }
  return out;
}

function ibanValid(compact: string): boolean {
  if (compact.length < 15 || compact.length > 34) return false;
  const moved = compact.slice(4) + compact.slice(0, 4);
  let rest = 0;
  for (const ch of moved) {
    const v = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rest = v > 9 ? (rest * 100 + v) % 97 : (rest * 10 + v) % 97;
  }
  return rest === 1;
}

function maskIban(match: string): string {
  const compact = match.replace(/ /g, '');
  if (!ibanValid(compact)) return match;
  return compact.slice(0, 2) + '*'.repeat(compact.length - 6) + compact.slice(-4);
}

const hasDigitRun = (s: string): boolean => /[2-6][0-9 -]{12}/.test(s);
/** One scan that finds none of the rules' triggers: most paths and messages stop here. */
const ANY_TRIGGER = /[=:@"]|eyJ|gh|AKIA|sk_|rk_|xox|AIza|bearer|basic|digest|dpop|negotiate|[2-6][0-9 -]{12}|[A-Z]{2}[0-9]{2}/i;

/** `text` with every sensitive value listed above masked. */
export function maskText(text: string): string {
  if (typeof text !== 'string' || text.length < 6 || !ANY_TRIGGER.test(text)) return text;
  let s = text;
  if (s.includes('eyJ')) s = s.replace(JWT, '[JWT]');
  if (s.includes('://')) s = s.replace(URL_PASSWORD, `$1:${REDACTED}@`);
  if (s.includes('gh_')) s = s.replace(GATEHOUSE_API_KEY, `gh_$1_${REDACTED}`);
  if (/AKIA|sk_|rk_|gh[pousr]_|xox|AIza/.test(s)) s = s.replace(VENDOR_API_KEY, '[API_KEY]');
  if (/bearer|basic|digest|dpop|negotiate/i.test(s)) s = s.replace(AUTH_SCHEME, (m, scheme: string, space: string, cred: string) => (/^[a-z]+$/.test(cred) ? m : `${scheme}${space}${REDACTED}`));
  if (s.includes('"') && /password|passwd|passphrase|pwd|secret|token|key|session|cookie|credential|otp|cvv|cvc|pin/i.test(s))
    s = s.replace(JSON_PAIR, `"$1"$2"${REDACTED}"`).replace(ESCAPED_JSON_PAIR, `\\"$1\\"$2\\"${REDACTED}\\"`);
  if ((s.includes('=') || s.includes(':')) && /password|passwd|passphrase|pwd|secret|token|key|session|cookie|credential|otp|cvv|cvc|pin/i.test(s))
    s = s.replace(KV_PAIR, `$1$2${REDACTED}`);
  if (s.includes('@')) s = s.replace(EMAIL, '***@$1');
  if (hasDigitRun(s)) s = s.replace(CARD, maskCard);
  if (/[A-Z]{2}[0-9]{2}/.test(s)) s = s.replace(IBAN, maskIban);
  return s;
}

/**
 * A copy of `value` with every string masked (maskText) and every property
 * whose name says it holds a secret replaced by [REDACTED]; bounded depth,
 * cycles cut. For structured entries that are not serialized through a
 * masked logger.
 */
export function maskValue(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return maskText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8 || seen.has(value)) return '[…]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => maskValue(v, depth + 1, seen));
  if (value instanceof Error) return { type: value.name, message: maskText(value.message) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? REDACTED : maskValue(v, depth + 1, seen);
  return out;
}

const SECRET_KEY = new RegExp(`^${SECRET_NAME}$|^(authorization|proxy-authorization|set-cookie|x-api-key)$`, 'i');
