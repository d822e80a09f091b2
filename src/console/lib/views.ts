// The console's pages: server-rendered HTML, one stylesheet and one small
// script from the console itself (CSP: nothing inline, nothing third-party).
// Forms that change something carry the session's CSRF token; every value is
// escaped. Nothing secret is ever written into a page: no token, secret or
// cookie value (the CSRF token is the session's own and changes with it).
import type { ControlStatus } from '../../control/start-control-server.ts';
import type { Quarantine } from '../../policy/index.ts';
import type { SecurityEvent } from '../../monitor/index.ts';
import type { Finding } from '../../audit/index.ts';
import { esc } from './html.ts';

export const PAGES = [
  { path: '/', title: 'Overview' },
  { path: '/topology', title: 'Topology' },
  { path: '/events', title: 'Events' },
  { path: '/quarantines', title: 'Quarantines' },
  { path: '/audit', title: 'Audit' },
] as const;

export interface Layout {
  title: string;
  path: string;
  operator?: string;
  csrf?: string;
  /** a line shown above the page (what an action did) */
  notice?: string;
}

export function page(l: Layout, body: string): string {
  const nav = l.operator
    ? `<nav aria-label="Console"><ul>${PAGES.map((p) => `<li><a href="${p.path}"${p.path === l.path ? ' aria-current="page"' : ''}>${p.title}</a></li>`).join('')}</ul>
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="${esc(l.csrf)}"><span>${esc(l.operator)}</span> <button type="submit">Sign out</button></form></nav>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(l.title)} · Gatehouse console</title><link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a><header><p class="brand">Gatehouse console</p>${nav}</header>
<main id="main" tabindex="-1"><h1>${esc(l.title)}</h1>${l.notice ? `<p class="notice" role="status">${esc(l.notice)}</p>` : ''}
${body}</main></body></html>`;
}

export function signInPage(reason?: string): string {
  return page(
    { title: 'Sign in', path: '/login' },
    `${reason ? `<p class="notice" role="alert">${esc(reason)}</p>` : ''}<p>The console shows the security events, quarantines and enforcement points of this trust domain. Operators sign in at their zone's authority, with a second factor.</p>
<p><a class="button" href="/login">Sign in</a></p>`,
  );
}

const time = (iso: string) => `<time datetime="${esc(iso)}">${esc(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time>`;

export interface Rates {
  /** minute start (ISO) → counts */
  minutes: { at: string; requests: number; refused: number; denied: number }[];
}

export function ratesTable(r: Rates): string {
  return `<table id="rates" aria-describedby="rates-caption"><caption id="rates-caption">Requests and refusals per minute, last 10 minutes (refreshed every 5 s)</caption>
<thead><tr><th scope="col">Minute</th><th scope="col">Requests</th><th scope="col">Refused at gateways</th><th scope="col">Denied at services</th></tr></thead>
<tbody>${r.minutes.map((m) => `<tr><td>${time(m.at)}</td><td>${m.requests}</td><td${m.refused ? ' class="bad"' : ''}>${m.refused}</td><td${m.denied ? ' class="bad"' : ''}>${m.denied}</td></tr>`).join('')}</tbody></table>`;
}

export function overviewPage(l: Layout, s: ControlStatus, rates: Rates, counts: Record<string, number>, quarantines: number): string {
  const peps = s.peps.length
    ? s.peps
        .map(
          (p) =>
            `<tr><td><code>${esc(p.id)}</code></td><td>${esc(p.kind)}</td><td>${p.revision}</td><td>${time(p.lastSeen)}</td><td${p.stale ? ' class="bad"' : ''}>${p.stale ? 'stale' : 'current'}</td><td>${esc(p.lastRefusal ?? '')}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="6">No enforcement point has polled yet.</td></tr>';
  return page(
    l,
    `<section aria-labelledby="h-now"><h2 id="h-now">Now</h2><ul class="figures">
<li><strong>${s.revision}</strong> bundle revision</li>
<li><a href="/quarantines"><strong>${quarantines}</strong> quarantines in force</a></li>
${Object.entries(counts)
  .map(([type, n]) => `<li><a href="/events?type=${esc(type)}&amp;since=1h"><strong>${n}</strong> ${esc(type.replace(/_/g, ' '))}</a> in the last hour</li>`)
  .join('\n')}</ul></section>
<section aria-labelledby="h-rates"><h2 id="h-rates">Rates</h2><div id="live" data-src="/api/rates">${ratesTable(rates)}</div></section>
<section aria-labelledby="h-peps"><h2 id="h-peps">Enforcement points</h2><table><caption>Each enforcement point's bundle revision and staleness</caption>
<thead><tr><th scope="col">SPIFFE ID</th><th scope="col">Kind</th><th scope="col">Revision</th><th scope="col">Last seen</th><th scope="col">Bundle</th><th scope="col">Last refused bundle</th></tr></thead>
<tbody>${peps}</tbody></table></section>`,
  );
}

export function topologyPage(l: Layout, svg: string, edges: { from: string; to: string; denied: number }[]): string {
  const rows = edges
    .map((e) => `<tr${e.denied ? ' class="bad"' : ''}><td>${esc(e.from)}</td><td>${esc(e.to)}</td><td>${e.denied ? `denied ${e.denied} time(s) in the last hour` : 'allowed'}</td></tr>`)
    .join('');
  return page(
    l,
    `<p>Grey arrows are the edges the topology allows; <span class="bad">red arrows</span> are calls refused in the last hour.</p>
<figure class="graph">${svg}</figure>
<table><caption>The same edges as a table</caption><thead><tr><th scope="col">From</th><th scope="col">To</th><th scope="col">State</th></tr></thead><tbody>${rows}</tbody></table>`,
  );
}

export interface EventFilter {
  type?: string;
  since: string;
  source?: string;
  text?: string;
}

export const SINCE = ['5m', '1h', '24h', '7d'] as const;

export function eventsPage(l: Layout, types: readonly string[], f: EventFilter, events: SecurityEvent[], truncated: boolean): string {
  const opt = (v: string, label: string, sel: string | undefined) => `<option value="${esc(v)}"${v === (sel ?? '') ? ' selected' : ''}>${esc(label)}</option>`;
  const rows = events
    .slice()
    .reverse()
    .map(
      (e) =>
        `<tr><td>${time(e.time)}</td><td>${esc(e.type)}</td><td>${esc(e.code)}${e.status ? ` (${e.status})` : ''}</td><td><code>${esc(e.pep)}</code></td><td>${esc(e.source)}</td><td>${esc(e.subject ?? e.client ?? e.peer ?? '')}</td><td>${esc(e.route)}</td><td>${esc([e.method, e.path].filter(Boolean).join(' '))}</td><td>${esc(e.detail)}</td></tr>`,
    )
    .join('');
  return page(
    l,
    `<form method="get" action="/events" class="filters" role="search" aria-label="Filter events">
<label for="f-type">Type</label><select id="f-type" name="type">${opt('', 'any', f.type)}${types.map((t) => opt(t, t, f.type)).join('')}</select>
<label for="f-since">Since</label><select id="f-since" name="since">${SINCE.map((s) => opt(s, `last ${s}`, f.since)).join('')}</select>
<label for="f-source">Source</label><input id="f-source" name="source" value="${esc(f.source)}" maxlength="64" inputmode="text" autocomplete="off">
<label for="f-text">Contains</label><input id="f-text" name="text" value="${esc(f.text)}" maxlength="100" autocomplete="off">
<button type="submit">Filter</button></form>
<p role="status">${events.length} event(s), newest first${truncated ? ' (the newest 500 shown)' : ''}.</p>
<div class="scroll" role="region" aria-label="Security events table" tabindex="0"><table class="events"><caption>Security events</caption><thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Code</th><th scope="col">Reported by</th><th scope="col">Source</th><th scope="col">Identity</th><th scope="col">Route</th><th scope="col">Request</th><th scope="col">Detail</th></tr></thead>
<tbody>${rows || '<tr><td colspan="9">No events match.</td></tr>'}</tbody></table></div>`,
  );
}

export function quarantinesPage(l: Layout, list: Quarantine[]): string {
  const rows = list
    .map((q) => {
      const form = (fp: boolean) =>
        `<form method="post" action="/quarantines/release"><input type="hidden" name="csrf" value="${esc(l.csrf)}"><input type="hidden" name="scope" value="${esc(q.scope)}"><input type="hidden" name="value" value="${esc(q.value)}">${fp ? '<input type="hidden" name="falsePositive" value="1">' : ''}<button type="submit" aria-label="${fp ? 'Release as a false positive' : 'Release'} ${esc(q.scope)} ${esc(q.value)}">${fp ? 'False positive' : 'Release'}</button></form>`;
      return `<tr><td>${esc(q.scope)}</td><td><code>${esc(q.value)}</code></td><td>${time(q.until)}</td><td>${esc(q.reason)}</td><td>${esc(q.origin)}</td><td><div class="actions">${form(false)}${q.origin?.startsWith('detector:') ? form(true) : ''}</div></td></tr>`;
    })
    .join('');
  return page(
    l,
    `<p>A quarantine is enforced at every gateway, authority and service until it ends or is released. “False positive” releases it and teaches the detector that fired (that key's threshold or baseline is raised for a day).</p>
<table><caption>Quarantines in force</caption><thead><tr><th scope="col">Scope</th><th scope="col">Value</th><th scope="col">Until</th><th scope="col">Reason</th><th scope="col">Origin</th><th scope="col">Action</th></tr></thead>
<tbody>${rows || '<tr><td colspan="6">No quarantine is in force.</td></tr>'}</tbody></table>`,
  );
}

export function auditPage(l: Layout, findings: Finding[], error?: string): string {
  const rows = findings
    .map((f) => `<tr><td class="sev-${esc(f.severity)}">${esc(f.severity)}</td><td>${esc(f.ruleId)} ${esc(f.rule)}</td><td><code>${esc(f.path)}</code> (line ${f.line})</td><td>${esc(f.message)}</td><td>${esc(f.fix)}</td></tr>`)
    .join('');
  return page(
    l,
    `${error ? `<p class="notice" role="alert">${esc(error)}</p>` : ''}<p>The posture lint of the running topology (<code>gatehouse audit</code>).</p>
<table><caption>Audit findings</caption><thead><tr><th scope="col">Severity</th><th scope="col">Rule</th><th scope="col">Where</th><th scope="col">Finding</th><th scope="col">Fix</th></tr></thead>
<tbody>${rows || '<tr><td colspan="5">No findings.</td></tr>'}</tbody></table>`,
  );
}

export const STYLESHEET = `
:root { color-scheme: light; --fg: #1b1b1b; --muted: #4a4a4a; --bg: #ffffff; --line: #c8c8c8; --link: #0b4fa8; --bad: #a4001d; --ok: #17602a; --accent: #1f4e99; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--link); }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; z-index: 2; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 16px; padding: 8px 16px; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; margin: 0; }
nav { display: flex; flex: 1; align-items: center; gap: 16px; }
nav ul { display: flex; gap: 14px; list-style: none; margin: 0; padding: 0; flex: 1; }
nav a[aria-current="page"] { font-weight: 700; color: var(--fg); }
.logout { display: flex; gap: 8px; align-items: center; margin: 0; }
main { padding: 8px 16px 32px; }
main:focus { outline: none; }
:focus-visible { outline: 3px solid #f0a000; outline-offset: 2px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 8px 0; width: 100%; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
code { font-size: 0.9em; overflow-wrap: anywhere; }
.bad, td.bad { color: var(--bad); font-weight: 600; }
.sev-error { color: var(--bad); font-weight: 700; } .sev-warning { color: #7a4a00; font-weight: 700; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; list-style: none; padding: 0; }
.figures li { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.figures strong { display: block; font-size: 1.4rem; }
.notice { border-left: 4px solid var(--accent); background: #eef3fb; padding: 6px 10px; }
button, .button { font: inherit; background: var(--accent); color: #ffffff; border: 0; border-radius: 4px; padding: 4px 12px; cursor: pointer; text-decoration: none; display: inline-block; }
.actions { display: flex; flex-wrap: wrap; gap: 6px; } .actions form { margin: 0; } .actions button { white-space: nowrap; }
.filters { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; margin: 8px 0; }
input, select { font: inherit; padding: 3px 6px; border: 1px solid #6b6b6b; border-radius: 3px; color: var(--fg); background: #fff; }
.graph, .scroll { overflow-x: auto; margin: 0; }
table.events td:nth-child(4) { max-width: 16em; }
svg .zone { fill: #f6f8fb; stroke: #9aa7b8; }
svg .zone-name { font-weight: 700; fill: var(--fg); }
svg .node rect { fill: #ffffff; stroke: #2a4d7a; }
svg .node.gateway rect { fill: #e5eefb; } svg .node.authority rect { fill: #eef7ea; }
svg .node text { fill: var(--fg); font-size: 13px; }
svg path.allowed { fill: none; stroke: #6b7785; stroke-width: 1.5; }
svg path.denied { fill: none; stroke: var(--bad); stroke-width: 2.5; stroke-dasharray: 6 4; }
svg .arrow { fill: #6b7785; } svg .arrow-red { fill: var(--bad); }
`;

/** Live rates: the overview's table is replaced every 5 s by the server's rendering of /api/rates (HTML, same origin). */
export const SCRIPT = `'use strict';
(function () {
  var live = document.getElementById('live');
  if (!live) return;
  var src = live.getAttribute('data-src');
  setInterval(function () {
    fetch(src, { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var table = doc.getElementById('rates');
        var old = document.getElementById('rates');
        if (table && old) old.replaceWith(document.importNode(table, true));
      })
      .catch(function () {});
  }, 5000);
})();
`;
