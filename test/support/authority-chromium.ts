// Headless Chromium for the sign-in pages, over the Chrome DevTools Protocol
// with the `ws` package (no browser-automation dependency): launch, one tab
// per browser context, navigation that waits for the load, the keyboard
// (Input.dispatchKeyEvent), DOM reads that work with JavaScript disabled,
// screenshots, and everything the page complained about (exceptions, console
// errors, CSP violations) collected so a test can assert there was nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

export const CHROMIUM = '/usr/bin/chromium';

export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `chromium not installed: ${CHROMIUM} is missing (apt-get install chromium)`;
}

type Message = { id?: number; method?: string; params?: any; sessionId?: string; result?: any; error?: { message: string } };

/** One DevTools connection (the browser target); page sessions are multiplexed on it (flatten). */
class Cdp {
  readonly #ws: WebSocket;
  #next = 0;
  readonly #pending = new Map<number, { resolve(v: any): void; reject(e: Error): void; method: string }>();
  readonly #listeners = new Set<(m: Message) => void>();

  constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Message;
      if (m.id !== undefined) {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (m.error) p?.reject(new Error(`${p.method}: ${m.error.message}`));
        else p?.resolve(m.result);
        return;
      }
      for (const l of this.#listeners) l(m);
    });
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error(`${p.method}: the browser went away`));
      this.#pending.clear();
    });
  }

  send<T = any>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> {
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }

  on(listener: (m: Message) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#ws.close();
  }
}

export interface Complaint {
  kind: 'exception' | 'console' | 'log' | 'csp';
  text: string;
  url?: string;
}

export interface DocumentResponse {
  url: string;
  status: number;
  headers: Record<string, string>;
}

export class Chromium {
  readonly cdp: Cdp;
  readonly #child: ChildProcess;
  readonly #profile: string;

  private constructor(cdp: Cdp, child: ChildProcess, profile: string) {
    this.cdp = cdp;
    this.#child = child;
    this.#profile = profile;
  }

  static async launch(extraArgs: string[] = [], timeoutMs = 15_000): Promise<Chromium> {
    const profile = mkdtempSync(path.join(tmpdir(), 'gh-chromium-'));
    const child = spawn(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--remote-debugging-port=0',
        `--user-data-dir=${profile}`,
        ...extraArgs,
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`chromium did not print its DevTools URL in ${timeoutMs} ms:\n${stderr.slice(-2000)}`)), timeoutMs);
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`chromium exited (${code}) before DevTools was up:\n${stderr.slice(-2000)}`));
      });
    }).catch((error: unknown) => {
      child.kill('SIGKILL');
      rmSync(profile, { recursive: true, force: true });
      throw error;
    });
    child.stderr!.resume();
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Chromium(new Cdp(ws), child, profile);
  }

  /** A tab in a fresh browser context (its own cookies). */
  async newTab(): Promise<Tab> {
    const { browserContextId } = await this.cdp.send('Target.createBrowserContext', { disposeOnDetach: true });
    const { targetId } = await this.cdp.send('Target.createTarget', { url: 'about:blank', browserContextId });
    const { sessionId } = await this.cdp.send('Target.attachToTarget', { targetId, flatten: true });
    const tab = new Tab(this.cdp, sessionId);
    await tab.init();
    return tab;
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.cdp.send('Browser.close'), new Promise((r) => setTimeout(r, 2_000))]);
    } catch {
      // already gone
    }
    this.cdp.close();
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      const exited = new Promise((r) => this.#child.once('exit', r));
      this.#child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.#profile, { recursive: true, force: true });
  }
}

const KEYS = {
  Enter: { key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 13, text: '\r' },
  Tab: { key: 'Tab', code: 'Tab', windowsVirtualKeyCode: 9 },
} as const;

export class Tab {
  readonly #cdp: Cdp;
  readonly sessionId: string;
  readonly complaints: Complaint[] = [];
  readonly documents: DocumentResponse[] = [];
  /** URL of the main frame after its last navigation */
  url = 'about:blank';
  #loads = 0;
  #mainFrame = '';
  #paused: ((p: { requestId: string; request: { url: string } }) => Promise<void>) | undefined;

  constructor(cdp: Cdp, sessionId: string) {
    this.#cdp = cdp;
    this.sessionId = sessionId;
    cdp.on((m) => {
      if (m.sessionId !== sessionId) return;
      const p = m.params;
      switch (m.method) {
        case 'Page.frameNavigated':
          if (!p.frame.parentId) {
            this.#mainFrame = p.frame.id;
            this.url = p.frame.url;
          }
          break;
        case 'Page.loadEventFired':
          this.#loads++;
          break;
        case 'Network.responseReceived':
          if (p.type === 'Document' && (!this.#mainFrame || p.frameId === this.#mainFrame))
            this.documents.push({ url: p.response.url, status: p.response.status, headers: lower(p.response.headers) });
          break;
        case 'Runtime.exceptionThrown':
          this.complaints.push({ kind: 'exception', text: p.exceptionDetails.exception?.description ?? p.exceptionDetails.text, url: p.exceptionDetails.url });
          break;
        case 'Runtime.consoleAPICalled':
          if (p.type === 'error' || p.type === 'warning' || p.type === 'assert')
            this.complaints.push({ kind: 'console', text: p.args.map((a: any) => a.value ?? a.description).join(' ') });
          break;
        case 'Log.entryAdded':
          if (p.entry.level === 'error' || p.entry.level === 'warning') this.complaints.push({ kind: 'log', text: `${p.entry.source}: ${p.entry.text}`, url: p.entry.url });
          break;
        case 'Audits.issueAdded':
          if (p.issue.code === 'ContentSecurityPolicyIssue')
            this.complaints.push({ kind: 'csp', text: JSON.stringify(p.issue.details.contentSecurityPolicyIssueDetails) });
          break;
        case 'Fetch.requestPaused':
          this.#paused?.(p).catch((error: unknown) => this.complaints.push({ kind: 'exception', text: `interception: ${String(error)}` }));
          break;
      }
    });
  }

  send<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return this.#cdp.send<T>(method, params, this.sessionId);
  }

  async init(): Promise<void> {
    for (const domain of ['Page', 'Runtime', 'Network', 'Log', 'Audits', 'DOM']) await this.send(`${domain}.enable`);
    const { frameTree } = await this.send('Page.getFrameTree');
    this.#mainFrame = frameTree.frame.id;
  }

  /**
   * Answers requests to URLs starting with `prefix` here (the client's redirect
   * URI, where nothing listens): `onUrl` gets each URL, the page gets a small 200.
   */
  async intercept(prefix: string, onUrl: (url: string) => void): Promise<void> {
    this.#paused = async (p) => {
      onUrl(p.request.url);
      await this.send('Fetch.fulfillRequest', {
        requestId: p.requestId,
        responseCode: 200,
        responseHeaders: [{ name: 'content-type', value: 'text/plain' }],
        body: Buffer.from('callback reached').toString('base64'),
      });
    };
    await this.send('Fetch.enable', { patterns: [{ urlPattern: `${prefix}*`, requestStage: 'Request' }] });
  }

  /** Runs `action` and waits for the main frame to navigate and finish loading a URL that `until` accepts. */
  async navigation(action: () => Promise<unknown>, until: (url: string) => boolean = () => true, timeoutMs = 15_000): Promise<string> {
    const loads = this.#loads;
    await action();
    const deadline = Date.now() + timeoutMs;
    while (!(this.#loads > loads && until(this.url) && (await this.readyState()) === 'complete')) {
      if (Date.now() > deadline) throw new Error(`no navigation to a matching page within ${timeoutMs} ms; at ${this.url}; complaints: ${JSON.stringify(this.complaints)}`);
      await sleep(25);
    }
    return this.url;
  }

  /** Polls `check` until it holds. */
  async until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; at ${this.url}; complaints: ${JSON.stringify(this.complaints)}`);
      await sleep(25);
    }
  }

  goto(url: string, until?: (url: string) => boolean): Promise<string> {
    return this.navigation(async () => {
      const r = await this.send('Page.navigate', { url });
      if (r.errorText) throw new Error(`navigation to ${url} failed: ${r.errorText}`);
    }, until);
  }

  /** document.readyState, read without page script (works with JavaScript disabled) */
  async readyState(): Promise<string> {
    try {
      const r = await this.send('Runtime.evaluate', { expression: 'document.readyState', returnByValue: true });
      return r.result?.value ?? 'unknown';
    } catch {
      return 'unknown';
    }
  }

  /** Evaluates in the page (DevTools evaluation still runs when the page's scripts are disabled). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  async #node(selector: string): Promise<number> {
    const { root } = await this.send('DOM.getDocument', { depth: 0 });
    const { nodeId } = await this.send('DOM.querySelector', { nodeId: root.nodeId, selector });
    if (!nodeId) throw new Error(`no ${selector} on ${this.url}`);
    return nodeId;
  }

  /** Focuses an element the way a keyboard user ends up on it (DOM.focus, no page script). */
  async focus(selector: string): Promise<void> {
    await this.send('DOM.focus', { nodeId: await this.#node(selector) });
  }

  /** Whether the element takes up space on the page (false for [hidden], display:none, missing). */
  async rendered(selector: string): Promise<boolean> {
    let nodeId: number;
    try {
      nodeId = await this.#node(selector);
    } catch {
      return false;
    }
    try {
      const { model } = await this.send('DOM.getBoxModel', { nodeId });
      return model.width > 0 && model.height > 0;
    } catch {
      return false; // "Could not compute box model": not rendered
    }
  }

  async press(key: keyof typeof KEYS): Promise<void> {
    const k = KEYS[key];
    await this.send('Input.dispatchKeyEvent', { type: 'text' in k ? 'keyDown' : 'rawKeyDown', ...k, nativeVirtualKeyCode: k.windowsVirtualKeyCode });
    await this.send('Input.dispatchKeyEvent', { type: 'keyUp', key: k.key, code: k.code, windowsVirtualKeyCode: k.windowsVirtualKeyCode, nativeVirtualKeyCode: k.windowsVirtualKeyCode });
  }

  /** Types into the focused field (as an input method would). */
  async type(text: string): Promise<void> {
    await this.send('Input.insertText', { text });
  }

  async screenshot(): Promise<Buffer> {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
    return Buffer.from(data, 'base64');
  }

  /** The last document response of the main frame whose URL `match` accepts. */
  document(match: (url: string) => boolean): DocumentResponse {
    const d = this.documents.findLast((x) => match(x.url));
    if (!d) throw new Error(`no document response matched; seen: ${this.documents.map((x) => x.url).join(', ')}`);
    return d;
  }
}

function lower(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
