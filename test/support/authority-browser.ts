// A small scripted browser for the sign-in pages: a cookie jar, manual
// redirects, and form parsing, so tests drive the real HTML forms the way a
// user agent does (GET the page, read the hidden fields, POST the form).
import type { TestFetch } from './authority-harness.ts';

export interface Page {
  status: number;
  url: string;
  html: string;
  headers: Headers;
}

export class Browser {
  readonly #fetch: TestFetch;
  readonly cookies = new Map<string, string>();

  constructor(fetch: TestFetch) {
    this.#fetch = fetch;
  }

  #cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (!headers.has('accept')) headers.set('accept', 'text/html');
    if (this.cookies.size > 0) headers.set('cookie', this.#cookieHeader());
    const res = await this.#fetch(url, { ...init, headers, redirect: 'manual' });
    this.#store(res);
    return res;
  }

  /**
   * Follows redirects while they stay on `origin`; returns the page reached,
   * or the first URL outside it (the client's redirect URI) as `url` with status 0.
   */
  async follow(url: string, origin: string, init: RequestInit = {}): Promise<Page> {
    let res = await this.request(url, init);
    let current = url;
    for (let hops = 0; hops < 10; hops++) {
      if (res.status < 300 || res.status >= 400) break;
      const next = new URL(res.headers.get('location')!, current).toString();
      await res.arrayBuffer();
      if (!next.startsWith(origin)) return { status: 0, url: next, html: '', headers: res.headers };
      current = next;
      res = await this.request(next);
    }
    return { status: res.status, url: current, html: await res.text(), headers: res.headers };
  }

  async submit(page: Page, formAction: string, fields: Record<string, string>, origin: string): Promise<Page> {
    const form = parseForm(page.html, formAction);
    const body = new URLSearchParams({ ...form.hidden, ...fields });
    return this.follow(new URL(form.action, page.url).toString(), origin, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
      body: body.toString(),
    });
  }
}

export function parseForm(html: string, actionEndsWith: string): { action: string; hidden: Record<string, string>; fields: string[] } {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)];
  for (const [, attrs, inner] of forms) {
    const action = /action="([^"]*)"/.exec(attrs)?.[1] ?? '';
    if (!action.endsWith(actionEndsWith)) continue;
    const hidden: Record<string, string> = {};
    const fields: string[] = [];
    for (const [, input] of inner.matchAll(/<input\b([^>]*)>/g)) {
      const name = /name="([^"]*)"/.exec(input)?.[1];
      if (!name) continue;
      fields.push(name);
      if (/type="hidden"/.test(input)) hidden[name] = decode(/value="([^"]*)"/.exec(input)?.[1] ?? '');
    }
    return { action: decode(action), hidden, fields };
  }
  throw new Error(`no form with action …${actionEndsWith} on the page`);
}

function decode(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}
