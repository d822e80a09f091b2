// Upstream pools: retries only for idempotent, body-less requests whose
// connection was never made; the circuit breaker counts real failures only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { buildConnector } from 'undici';
import { Upstream } from '../src/gateway/upstream.ts';
import { Service } from '../src/topology/schema.ts';
import { systemClock } from '../src/shared/clock.ts';
import { GatehouseError } from '../src/shared/errors.ts';
import { startUpstream } from './support/gateway-fixture.ts';

/** A connector whose first `failures` connection attempts are refused. */
function flakyConnector(failures: number) {
  const real = buildConnector({});
  const state = { attempts: 0 };
  const connect: buildConnector.connector = (options, callback) => {
    state.attempts++;
    if (state.attempts <= failures) {
      const error = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      queueMicrotask(() => callback(error, null));
      return;
    }
    real(options, callback);
  };
  return { connect, state };
}

const sink = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

test('an idempotent request without a body is retried once when the connection was refused', async () => {
  const up = await startUpstream();
  const { connect, state } = flakyConnector(1);
  const upstream = new Upstream('s', up.url, Service.parse({ zone: 'z', upstream: up.url }), systemClock, connect);
  let status = 0;
  await upstream.stream({ path: '/x', method: 'GET', headers: [], body: undefined, idempotentRetry: true }, (r) => {
    status = r.statusCode;
    return sink();
  });
  assert.equal(status, 200);
  assert.equal(state.attempts, 2);
  assert.equal(up.seen.length, 1);
  await upstream.close();
  await up.close();
});

test('a request with a body, or not idempotent, is never retried', async () => {
  const up = await startUpstream();
  const { connect, state } = flakyConnector(1);
  const upstream = new Upstream('s', up.url, Service.parse({ zone: 'z', upstream: up.url }), systemClock, connect);
  await assert.rejects(
    upstream.stream({ path: '/x', method: 'POST', headers: [], body: 'data', idempotentRetry: false }, () => sink()),
    (e: unknown) => e instanceof GatehouseError && e.status === 502,
  );
  assert.equal(state.attempts, 1);
  assert.equal(up.seen.length, 0);
  await upstream.close();
  await up.close();
});

test('a failed retry counts once toward the circuit breaker and answers 502', async () => {
  const up = await startUpstream();
  const { connect, state } = flakyConnector(10);
  const config = Service.parse({ zone: 'z', upstream: up.url, circuitBreaker: { failures: 2 } });
  const upstream = new Upstream('s', up.url, config, systemClock, connect);
  const get = () => upstream.stream({ path: '/', method: 'GET', headers: [], body: undefined, idempotentRetry: true }, () => sink());
  await assert.rejects(get(), (e: unknown) => e instanceof GatehouseError && e.status === 502);
  assert.equal(state.attempts, 2);
  assert.equal(upstream.breaker.state, 'closed');
  await assert.rejects(get(), (e: unknown) => e instanceof GatehouseError && e.status === 502);
  assert.equal(upstream.breaker.state, 'open');
  await assert.rejects(get(), (e: unknown) => e instanceof GatehouseError && e.status === 503);
  assert.equal(state.attempts, 4, 'an open circuit does not even try to connect');
  await upstream.close();
  await up.close();
});
