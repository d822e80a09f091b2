// The cost of checking a sender-constrained token at a gateway or service, per
// request (shared/sender-constraint.ts): a DPoP proof (ES256 verify, htm, htu,
// ath, iat, replay cache) and a certificate binding (SHA-256 of the peer
// certificate). Run alone: node bench/sender-constraint.ts
import { createHash, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, calculateJwkThumbprint, jwtVerify, EmbeddedJWK } from 'jose';
import { checkSenderConstraint, memoryReplayCache } from '../src/shared/sender-constraint.ts';
const { privateKey, publicKey } = await generateKeyPair('ES256');
const jwk = await exportJWK(publicKey);
const jkt = await calculateJwkThumbprint(jwk);
const token = 'a.b.c';
const url = 'https://127.0.0.1:8443/api/echo/x';
const N = 2000;
const makeProofs = (n: number) =>
  Promise.all(Array.from({ length: n }, () => new SignJWT({ htm: 'GET', htu: url, jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ath: createHash('sha256').update(token).digest('base64url') }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(privateKey)));
const proofs = await makeProofs(N);
// warm-up (JIT, key cache) on other proofs, so neither measurement pays it
const warmProofs = await makeProofs(200);
const warmReplay = memoryReplayCache(() => Date.now());
for (const p of warmProofs) {
  await jwtVerify(p, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
  await checkSenderConstraint({ scheme: 'DPoP', token, claims: { cnf: { jkt } }, dpop: { proof: p, method: 'GET', url, now: () => Date.now(), replay: warmReplay } });
}
let t = performance.now();
// baseline in the same process: verifying each proof with its embedded key imported anew (what the check did first)
for (const p of proofs) await jwtVerify(p, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
const embedded = (performance.now() - t) / N;
const replay = memoryReplayCache(() => Date.now());
t = performance.now();
for (const p of proofs) await checkSenderConstraint({ scheme: 'DPoP', token, claims: { cnf: { jkt } }, dpop: { proof: p, method: 'GET', url, now: () => Date.now(), replay } });
const dpop = (performance.now() - t) / N;

const der = Buffer.alloc(800, 7);
const x5t = createHash('sha256').update(der).digest('base64url');
t = performance.now();
for (let i = 0; i < N * 10; i++) await checkSenderConstraint({ scheme: 'Bearer', token, claims: { cnf: { 'x5t#S256': x5t } }, peerCertificate: der });
const mtls = (performance.now() - t) / (N * 10);
console.log(`DPoP proof check (ES256 verify with the key cached by thumbprint, htm/htu/ath/iat, replay cache): ${(dpop * 1000).toFixed(0)} µs per request`);
console.log(`  baseline, signature only with the embedded key imported per proof: ${(embedded * 1000).toFixed(0)} µs`);
console.log(`certificate binding check: ${(mtls * 1000).toFixed(1)} µs per request (N=${N}, Node ${process.version})`);
