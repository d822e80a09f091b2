// The cost of checking a sender-constrained token at a gateway or service, per
// request (shared/sender-constraint.ts): a DPoP proof (ES256 verify, htm, htu,
// ath, iat, replay cache) and a certificate binding (SHA-256 of the peer
// certificate). Run alone: node bench/sender-constraint.ts
import { createHash, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, calculateJwkThumbprint } from 'jose';
import { checkSenderConstraint, memoryReplayCache } from '../src/shared/sender-constraint.ts';
const { privateKey, publicKey } = await generateKeyPair('ES256');
const jwk = await exportJWK(publicKey);
const jkt = await calculateJwkThumbprint(jwk);
const token = 'a.b.c';
const url = 'https://127.0.0.1:8443/api/echo/x';
const N = 2000;
const proofs = await Promise.all(Array.from({ length: N }, () => new SignJWT({ htm: 'GET', htu: url, jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ath: createHash('sha256').update(token).digest('base64url') }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(privateKey)));
const replay = memoryReplayCache(() => Date.now());
let t = performance.now();
for (const p of proofs) await checkSenderConstraint({ scheme: 'DPoP', token, claims: { cnf: { jkt } }, dpop: { proof: p, method: 'GET', url, now: () => Date.now(), replay } });
const dpop = (performance.now() - t) / N;
const der = Buffer.alloc(800, 7);
const x5t = createHash('sha256').update(der).digest('base64url');
t = performance.now();
for (let i = 0; i < N * 10; i++) await checkSenderConstraint({ scheme: 'Bearer', token, claims: { cnf: { 'x5t#S256': x5t } }, peerCertificate: der });
const mtls = (performance.now() - t) / (N * 10);
console.log(`DPoP proof check (ES256 verify, htm/htu/ath/iat, replay cache): ${(dpop * 1000).toFixed(0)} µs per request; certificate binding check: ${(mtls * 1000).toFixed(1)} µs per request (N=${N}, Node ${process.version})`);
