// Chromium trusts the dev-CA-issued server certificate of an authority through
// --ignore-certificate-errors-spki-list=<SHA-256 of its SubjectPublicKeyInfo>,
// which ignores errors for that one key only (not --ignore-certificate-errors,
// which would accept any certificate).
import { createHash } from 'node:crypto';
import { connect } from 'node:tls';

/** base64 SHA-256 of the server certificate's SubjectPublicKeyInfo, as Chromium's SPKI list wants it */
export async function serverSpkiHash(issuer: string): Promise<string> {
  const u = new URL(issuer);
  const der = await new Promise<Buffer>((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), servername: u.hostname, rejectUnauthorized: false }, () => {
      const cert = s.getPeerX509Certificate();
      s.destroy();
      if (!cert) reject(new Error('no server certificate'));
      else resolve(cert.publicKey.export({ type: 'spki', format: 'der' }));
    });
    s.once('error', reject);
  });
  return createHash('sha256').update(der).digest('base64');
}
