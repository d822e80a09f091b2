// TLS posture of every declared TLS endpoint: no TLS 1.0/1.1, no weak suites
// (asked with a hand-made ClientHello, so an mTLS server answers too), and a
// certificate that chains to the declared CA, names the host, is in date and
// has a strong key.
import tls from 'node:tls';
import net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { hello, versionName, TLS10, TLS11, TLS12, WEAK_SUITES, LEGACY_SUITES } from '../tls-hello.ts';
import { result, pass, fail, error, skip, type ProbeContext } from '../context.ts';
import type { CheckResult } from '../types.ts';

export interface TlsEndpoint {
  label: string;
  url: string;
  /** What the certificate must name and chain to: edge (the host; the declared CA), workload (a SPIFFE ID; the trust bundle), or either (other declared endpoints). */
  kind: 'edge' | 'workload' | 'either';
}

export function tlsEndpoints(ctx: ProbeContext): TlsEndpoint[] {
  const out: TlsEndpoint[] = [];
  for (const z of ctx.plan.zones) {
    if (z.gateway?.startsWith('https:')) out.push({ label: `${z.name} gateway`, url: z.gateway, kind: 'edge' });
    if (z.authority?.startsWith('https:')) out.push({ label: `${z.name} authority`, url: z.authority, kind: 'edge' });
  }
  for (const s of ctx.plan.services) if (s.url.startsWith('https:')) out.push({ label: `service ${s.name}`, url: s.url, kind: 'workload' });
  for (const d of ctx.plan.declared) if (d.url.startsWith('https:') && !out.some((o) => o.url === d.url)) out.push({ label: d.label, url: d.url, kind: 'either' });
  return out;
}

const hostPort = (url: string) => {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 443) };
};

/** The certificate chain the endpoint presents, leaf first (no verification: judged here). */
export function peerCertificate(ctx: ProbeContext, url: string): Promise<X509Certificate[] | string> {
  const { host, port } = hostPort(url);
  ctx.take(host);
  return new Promise((resolve) => {
    const socket = tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: false });
    const finish = (v: X509Certificate[] | string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish('timeout'), Math.min(ctx.limits.timeoutMs, Math.max(ctx.left(), 1)));
    socket.once('secureConnect', () => {
      const chain: X509Certificate[] = [];
      let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (c?.raw && chain.length < 8) {
        const x = new X509Certificate(c.raw);
        if (chain.some((y) => y.fingerprint256 === x.fingerprint256)) break;
        chain.push(x);
        c = c.issuerCertificate;
      }
      finish(chain.length > 0 ? chain : 'no certificate');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  });
}

export function bundle(pem: string | undefined): X509Certificate[] {
  return (pem?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

const issued = (cert: X509Certificate, by: X509Certificate) => cert.checkIssued(by) && cert.verify(by.publicKey);

/** The leaf chains to one of `anchors`, through the intermediates presented. */
export function chainsTo(chain: X509Certificate[], anchors: X509Certificate[]): boolean {
  let current = chain[0];
  for (let depth = 0; current && depth < 8; depth++) {
    if (anchors.some((a) => issued(current, a) || a.fingerprint256 === current.fingerprint256)) return true;
    const next = chain.find((c) => c !== current && c.fingerprint256 !== current.fingerprint256 && issued(current, c));
    if (!next) return false;
    current = next;
  }
  return false;
}

/** Problems with a presented chain: not from `cas`, wrong name, out of date, weak key. */
export function certificateProblems(chain: X509Certificate[], cas: X509Certificate[], host: string, kind: TlsEndpoint['kind'], trustDomain?: string, now = new Date()): string[] {
  const problems: string[] = [];
  const cert = chain[0];
  if (cas.length > 0 && !chainsTo(chain, cas)) problems.push(`issued by "${cert.issuer.replace(/\n/g, ', ')}", which does not chain to the declared CA`);
  if (new Date(cert.validTo) < now) problems.push(`expired ${cert.validTo}`);
  if (new Date(cert.validFrom) > now) problems.push(`not valid before ${cert.validFrom}`);
  const spiffe = trustDomain !== undefined && (cert.subjectAltName ?? '').includes(`URI:spiffe://${trustDomain}/`);
  const named = !!(net.isIP(host) ? cert.checkIP(host) : cert.checkHost(host));
  if (kind === 'workload' && trustDomain && !spiffe) problems.push(`no SPIFFE ID of ${trustDomain}`);
  if (kind === 'edge' && !named) problems.push(`does not name ${host}`);
  if (kind === 'either' && !named && !spiffe) problems.push(`names neither ${host} nor a SPIFFE ID${trustDomain ? ` of ${trustDomain}` : ''}`);
  const key = cert.publicKey;
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && (d?.modulusLength ?? 0) < 2048) problems.push(`RSA key of ${d?.modulusLength} bits`);
  if (key.asymmetricKeyType === 'ec' && !['prime256v1', 'secp384r1', 'secp521r1'].includes(d?.namedCurve ?? '')) problems.push(`EC key on ${d?.namedCurve}`);
  if (key.asymmetricKeyType === 'dsa') problems.push('DSA key');
  return problems;
}

export async function tlsChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const cas = bundle(ctx.plan.caPem);
  const trust = bundle(ctx.plan.trustPem);
  for (const e of tlsEndpoints(ctx)) {
    const { host, port } = hostPort(e.url);
    const where = `${e.label} ${e.url}`;
    const legacy: string[] = [];
    const answers: string[] = [];
    for (const v of [TLS10, TLS11]) {
      const a = await hello(ctx, host, port, v, LEGACY_SUITES);
      answers.push(`${versionName(v)}: ${a.agreed ? `agreed (${versionName(a.version)})` : a.reason}`);
      if (a.agreed && a.version <= TLS11) legacy.push(versionName(a.version));
    }
    const reachable = !answers.every((a) => /ECONNREFUSED|timeout|ECONNRESET/.test(a));
    out.push(result('tls.legacy-protocol', 'TLS 1.0 and 1.1 offered', 'high', where, 'refused (TLS 1.2 or newer only)', !reachable ? error(answers.join('; ')) : legacy.length > 0 ? fail(`agreed to ${legacy.join(', ')}`) : pass(answers.join('; '))));
    const weak = await hello(ctx, host, port, TLS12, Object.keys(WEAK_SUITES).map(Number));
    out.push(
      result(
        'tls.weak-cipher',
        'cipher suites without forward secrecy, SHA-1 CBC, 3DES, RC4, NULL or export offered alone',
        'medium',
        where,
        'refused (forward secrecy with an AEAD or SHA-2 suite only)',
        weak.agreed ? fail(`agreed to ${WEAK_SUITES[weak.suite] ?? `0x${weak.suite.toString(16)}`}`) : /ECONNREFUSED|timeout/.test(weak.reason) ? error(weak.reason) : pass(weak.reason),
      ),
    );
    const cert = await peerCertificate(ctx, e.url);
    const anchors = e.kind === 'workload' ? trust : e.kind === 'edge' ? cas : [...cas, ...trust];
    if (typeof cert === 'string') out.push(result('tls.certificate', 'the certificate presented', 'high', where, 'chains to the declared CA, names the host, in date, strong key', error(cert)));
    else if (anchors.length === 0 && e.kind !== 'edge' && !ctx.plan.trustDomain)
      out.push(result('tls.certificate', 'the certificate presented', 'high', where, 'chains to the declared CA', skip('no trust bundle declared')));
    else {
      const problems = certificateProblems(cert, anchors, host, e.kind, ctx.plan.trustDomain);
      out.push(
        result(
          'tls.certificate',
          'the certificate presented',
          'high',
          where,
          {
            edge: 'chains to the declared CA, names the host, in date, strong key',
            workload: 'chains to the trust bundle, names a SPIFFE ID of the trust domain, in date, strong key',
            either: 'chains to the declared CA or the trust bundle, names the host or a SPIFFE ID, in date, strong key',
          }[e.kind],
          problems.length > 0 ? fail(problems.join('; ')) : pass(`${cert[0].subject.replace(/\n/g, ', ')}; valid to ${cert[0].validTo}`),
        ),
      );
    }
  }
  return out;
}
