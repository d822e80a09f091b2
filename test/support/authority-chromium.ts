// Headless Chromium for the authority's pages, driven by playwright-core
// (Debian's /usr/bin/chromium, never a downloaded browser): one tab per
// browser context, navigation that waits for the load of a matching URL, the
// keyboard, DOM reads that work with JavaScript disabled, screenshots, the
// DevTools protocol for what playwright does not wrap (the WebAuthn virtual
// authenticator), and everything the page complained about (exceptions,
// console errors, CSP violations) collected so a test can assert there was
// nothing.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `chromium not installed: ${CHROMIUM} is missing (apt-get install chromium)`;
}

/** Skips the test with the reason where Chromium is missing; under CI=true a missing browser fails it. */
export function requireChromium(t: { skip(message?: string): void }): boolean {
  const missing = chromiumMissing();
  if (!missing) return true;
  if (process.env.CI === 'true') throw new Error(`CI=true: the browser test must run: ${missing}`);
  t.skip(missing);
  return false;
}

export interface Complaint {
  kind: 'exception' | 'console';
  text: string;
  url?: string;
}

export interface DocumentResponse {
  url: string;
  status: number;
  headers: Record<string, string>;
}

export class Chromium {
  readonly browser: Browser;

  private constructor(browser: Browser) {
    this.browser = browser;
  }

  static async launch(args: string[] = []): Promise<Chromium> {
    return new Chromium(await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', ...args], timeout: 30_000 }));
  }

  /** A tab in a browser context of its own (its own cookies); `javaScript: false` turns page scripts off. */
  async newTab(o: { javaScript?: boolean } = {}): Promise<Tab> {
    const context = await this.browser.newContext({ javaScriptEnabled: o.javaScript ?? true, viewport: { width: 800, height: 700 } });
    const page = await context.newPage();
    return new Tab(context, page, await context.newCDPSession(page));
  }

  async close(): Promise<void> {
    await this.browser.close();
  }
}

export class Tab {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly #cdp: CDPSession;
  readonly complaints: Complaint[] = [];
  readonly documents: DocumentResponse[] = [];

  constructor(context: BrowserContext, page: Page, cdp: CDPSession) {
    this.context = context;
    this.page = page;
    this.#cdp = cdp;
    page.on('pageerror', (e) => this.complaints.push({ kind: 'exception', text: e.message }));
    // CSP violations are console errors in Chromium ("Refused to …")
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning' || m.type() === 'assert') this.complaints.push({ kind: 'console', text: m.text(), url: m.location().url });
    });
    page.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) this.documents.push({ url: r.url(), status: r.status(), headers: r.headers() });
    });
  }

  get url(): string {
    return this.page.url();
  }

  /** A DevTools command on this tab (WebAuthn.*: the virtual authenticator). */
  send<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return this.#cdp.send(method as never, params as never) as Promise<T>;
  }

  /**
   * Answers requests to URLs starting with `prefix` here (the client's redirect
   * URI, where nothing listens): `onUrl` gets each URL, the page gets a small 200.
   */
  async intercept(prefix: string, onUrl: (url: string) => void): Promise<void> {
    // DevTools' Fetch domain, not page.route: playwright routes only the first URL of a redirect
    // chain, and the client's redirect URI is always reached by a redirect
    this.#cdp.on('Fetch.requestPaused', (p: { requestId: string; request: { url: string } }) => {
      onUrl(p.request.url);
      this.send('Fetch.fulfillRequest', {
        requestId: p.requestId,
        responseCode: 200,
        responseHeaders: [{ name: 'content-type', value: 'text/plain' }],
        body: Buffer.from('callback reached').toString('base64'),
      }).catch((error: unknown) => this.complaints.push({ kind: 'exception', text: `interception: ${String(error)}` }));
    });
    await this.send('Fetch.enable', { patterns: [{ urlPattern: `${prefix}*`, requestStage: 'Request' }] });
  }

  /** Runs `action` and waits for the main frame to navigate to, and load, a URL that `until` accepts. */
  async navigation(action: () => Promise<unknown>, until: (url: string) => boolean = () => true, timeoutMs = 15_000): Promise<string> {
    const navigated = this.page.waitForEvent('framenavigated', { predicate: (f) => f === this.page.mainFrame() && until(f.url()), timeout: timeoutMs });
    await action();
    try {
      await navigated;
    } catch (error) {
      throw new Error(`no navigation to a matching page within ${timeoutMs} ms; at ${this.url}; complaints: ${JSON.stringify(this.complaints)}`, { cause: error });
    }
    await this.page.waitForLoadState('load', { timeout: timeoutMs });
    return this.url;
  }

  goto(url: string, until?: (url: string) => boolean): Promise<string> {
    return this.navigation(() => this.page.goto(url, { waitUntil: 'commit' }), until);
  }

  /** Polls `check` until it holds. */
  async until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; at ${this.url}; complaints: ${JSON.stringify(this.complaints)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Evaluates an expression in the page (through DevTools: works with page scripts disabled). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** Focuses an element the way a keyboard user ends up on it. */
  async focus(selector: string): Promise<void> {
    await this.page.focus(selector, { timeout: 5_000 });
  }

  /** Whether the element takes up space on the page (false for [hidden], display:none, missing). */
  async rendered(selector: string): Promise<boolean> {
    const box = await this.page.locator(selector).first().boundingBox({ timeout: 1_000 }).catch(() => null);
    return box !== null && box.width > 0 && box.height > 0;
  }

  async press(key: 'Enter' | 'Tab' | 'Space' | 'Shift+Tab'): Promise<void> {
    await this.page.keyboard.press(key);
  }

  /** Types into the focused field (as an input method would). */
  async type(text: string): Promise<void> {
    await this.page.keyboard.insertText(text);
  }

  async screenshot(): Promise<Buffer> {
    return this.page.screenshot({ fullPage: true });
  }

  /**
   * On a sign-in page (`loginUrl`), as a keyboard user: wait for the username's autofocus,
   * type it, Tab, the password, Enter; then on the code page, the code from `code()`, Enter.
   * Returns the URL the second Enter leads to, the first one `until` accepts.
   */
  async signInWithKeyboard(loginUrl: string, user: { username: string; password: string }, code: () => Promise<string>, until: (url: string) => boolean): Promise<string> {
    const focused = (id: string) => this.until(async () => (await this.evaluate('document.activeElement && document.activeElement.id')) === id, `autofocus on the ${id}`, 3_000);
    await focused('username');
    await this.type(user.username);
    await this.press('Tab');
    await this.type(user.password);
    await this.navigation(() => this.press('Enter'), (x) => x.startsWith(loginUrl));
    await focused('otp');
    await this.type(await code());
    return this.navigation(() => this.press('Enter'), until);
  }

  /** The last document response of the main frame whose URL `match` accepts. */
  document(match: (url: string) => boolean): DocumentResponse {
    const d = this.documents.findLast((x) => match(x.url));
    if (!d) throw new Error(`no document response matched; seen: ${this.documents.map((x) => x.url).join(', ')}`);
    return d;
  }
}
