// A bounded scan of the declared hosts only: the ports either side of each
// declared port and a few common service ports. An open port the plan does
// not declare is a finding when it belongs to this deployment (it presents a
// certificate of the declared CA or trust domain, or the same certificate as
// a declared endpoint); other open ports are listed, since on a shared host
// they belong to other programs.
import net from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { result, pass, fail, error, type ProbeContext } from '../context.ts';
import { bundle, chainsTo, peerCertificate } from './tls.ts';
import type { CheckResult } from '../types.ts';

const COMMON = [22, 80, 443, 2379, 3000, 5432, 6379, 8000, 8080, 8443, 9090, 9443];
const MOST_PORTS_PER_HOST = 600;
const PARALLEL = 16;

function declaredUrls(ctx: ProbeContext): string[] {
  const p = ctx.plan;
  return [...p.zones.flatMap((z) => [z.gateway, z.authority]), ...p.services.map((s) => s.url), ...p.declared.map((d) => d.url)].filter((u): u is string => !!u);
}

function open(ctx: ProbeContext, host: string, port: number): Promise<boolean> {
  ctx.take(host);
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), Math.min(1_000, ctx.limits.timeoutMs));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export async function portChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const byHost = new Map<string, Set<number>>();
  for (const u of declaredUrls(ctx)) {
    const url = new URL(u);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    if (!byHost.has(host)) byHost.set(host, new Set());
    byHost.get(host)!.add(port);
  }
  const anchors = [...bundle(ctx.plan.caPem), ...bundle(ctx.plan.trustPem)];
  const out: CheckResult[] = [];
  for (const [host, declared] of byHost) {
    const candidates = new Set<number>(COMMON);
    for (const p of declared) for (let d = -ctx.limits.scanWindow; d <= ctx.limits.scanWindow; d++) if (p + d > 0 && p + d < 65536) candidates.add(p + d);
    for (const p of declared) candidates.delete(p);
    const ports = [...candidates].sort((a, b) => a - b).slice(0, MOST_PORTS_PER_HOST);
    const at = (port: number) => `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const fingerprints = new Set<string>();
    for (const p of declared) {
      const c = await peerCertificate(ctx, at(p));
      if (typeof c !== 'string') fingerprints.add(c[0].fingerprint256);
    }
    const found: number[] = [];
    let spent = '';
    for (let i = 0; i < ports.length; i += PARALLEL) {
      try {
        const batch = ports.slice(i, i + PARALLEL);
        const flags = await Promise.all(batch.map((p) => open(ctx, host, p)));
        batch.forEach((p, j) => flags[j] && found.push(p));
      } catch (e) {
        spent = (e as Error).message;
        break;
      }
    }
    const ours: string[] = [];
    const others: number[] = [];
    for (const p of found) {
      const c = await peerCertificate(ctx, at(p));
      const mine =
        typeof c !== 'string' &&
        (fingerprints.has(c[0].fingerprint256) ||
          chainsTo(c, anchors) ||
          (ctx.plan.trustDomain !== undefined && (c[0].subjectAltName ?? '').includes(`URI:spiffe://${ctx.plan.trustDomain}/`)));
      if (mine) ours.push(`${p} (${(c as X509Certificate[])[0].subject.replace(/\n/g, ', ')})`);
      else others.push(p);
    }
    const note = others.length > 0 ? `; open but not this deployment's (no certificate of it): ${others.join(', ')}` : '';
    out.push(
      result(
        'ports.undeclared',
        `undeclared open ports on ${host} (${ports.length} tried: ±${ctx.limits.scanWindow} around ${declared.size} declared, and common ports)`,
        'medium',
        host,
        'only the declared ports of this deployment are open',
        ours.length > 0 ? fail(`undeclared and this deployment's: ${ours.join(', ')}${note}`) : spent && found.length === 0 ? error(spent) : pass(`none of this deployment's${note}${spent ? ` (stopped: ${spent})` : ''}`),
      ),
    );
  }
  return out;
}
