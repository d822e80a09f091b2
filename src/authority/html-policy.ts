// Every HTML page the authority serves carries the strict CSP and no inline
// script. Our own pages set it where they are rendered (views.ts, send());
// this middleware is the backstop for the pages oidc-provider renders itself:
// its form_post helper (an authorization response with response_mode=form_post,
// and the logout confirmation when there is no session) writes an inline
// auto-submit script and no CSP. Such a page is rendered again as a plain form
// with a Continue button (it works without script), and any HTML answer
// without a CSP gets the base one.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { continuePage, HTML_CSP_BASE } from './views.ts';

const INLINE_SCRIPT = /<script(?![^>]*\bsrc=)[^>]*>/i;

function unescapeHtml(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The action and hidden fields of oidc-provider's form_post page, or undefined when the page is not one. */
export function parseFormPost(html: string): { action: string; fields: [string, string][] } | undefined {
  const form = /<form method="post" action="([^"]*)">([\s\S]*?)<\/form>/.exec(html);
  if (!form) return undefined;
  const fields: [string, string][] = [];
  for (const m of form[2].matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)"\/?>/g)) fields.push([unescapeHtml(m[1]), unescapeHtml(m[2])]);
  return { action: unescapeHtml(form[1]), fields };
}

/** [origin] of an http(s) URL, else []: a CSP source for a form target or a redirect after it. */
export function httpOrigin(uri: unknown): string[] {
  if (typeof uri !== 'string') return [];
  try {
    const u = new URL(uri);
    return u.protocol === 'https:' || u.protocol === 'http:' ? [u.origin] : [];
  } catch {
    return [];
  }
}

export function installHtmlPolicy(provider: Provider, ctx: AuthorityContext): void {
  provider.use(async (c: KoaContextWithOIDC, next) => {
    await next();
    if (!/^text\/html\b/.test(c.response.get('content-type') || '')) return;
    if (typeof c.body === 'string' && INLINE_SCRIPT.test(c.body)) {
      const post = parseFormPost(c.body);
      if (!post) {
        // an inline script we do not know: never serve it
        c.status = 500;
        c.type = 'html';
        c.set('content-security-policy', HTML_CSP_BASE);
        c.body = continuePage({ title: 'Sign-in problem', message: 'This page could not be shown.', zone: ctx.zone });
        ctx.log.error({ path: c.path }, 'an HTML answer with an inline script was refused');
        return;
      }
      const logout = c.oidc?.route === 'end_session';
      // a browser checks the form target and every redirect after the POST against form-action
      const targets = ["'self'", ...httpOrigin(post.action), ...httpOrigin(c.oidc?.session?.state?.postLogoutRedirectUri)];
      c.set('content-security-policy', `${HTML_CSP_BASE}; form-action ${[...new Set(targets)].join(' ')}`);
      c.body = continuePage({
        title: logout ? 'Sign out' : 'Continue',
        message: logout ? 'You are not signed in here. Continue to finish signing out.' : 'Continue to return to the application.',
        zone: ctx.zone,
        form: post,
      });
      return;
    }
    if (!c.response.get('content-security-policy')) c.set('content-security-policy', HTML_CSP_BASE);
  });
}
