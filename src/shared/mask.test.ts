// The masking module against a corpus of realistic log lines: what must be
// masked is, what must stay (ids, times, codes, SPIFFE IDs, ciphertexts) stays,
// and a masked JSON line is still JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maskText, maskValue } from './mask.ts';

const JWT =
  'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyLTEiLCJzY29wZSI6Im9yZGVyczpyZWFkIn0.MEUCIQDx3m1Hq2bVJdcjJ1r8Q2oSb2xUqFzZ3kZCqQ4F0wIgWq';
const API_KEY = 'gh_ab12cd34_' + 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg';

// [line, substrings that must be gone, substrings that must stay]
const CORPUS: [string, string[], string[]][] = [
  [`{"level":"info","msg":"charge card 4111111111111111 for order 42"}`, ['4111111111111111', '411111111111'], ['************1111', 'order 42']],
  [`payment with 4111 1111 1111 1111 refused`, ['4111 1111 1111 1111'], ['**** **** **** 1111']],
  [`pan=5555-5555-5555-4444 amount=12.00`, ['5555-5555-5555-4444'], ['4444', 'amount=12.00']],
  [`amex 378282246310005 ok`, ['378282246310005'], ['0005']],
  [`not a card: 4111111111111112 (Luhn fails)`, [], ['4111111111111112']],
  [`time 1795781492693 serial 1234567890123456`, [], ['1795781492693', '1234567890123456']],
  [`our token 0425789012341111 is not a card`, [], ['0425789012341111']],
  [`{"msg":"order placed","email":"ann.smith+shop@example.com"}`, ['ann.smith+shop@'], ['***@example.com']],
  [`user bob@mail.example.co.uk logged in`, ['bob@'], ['***@mail.example.co.uk']],
  [`Authorization: Bearer ${JWT}`, [JWT, 'eyJzdWIi'], ['Authorization: ']],
  [`{"req":{"headers":{"authorization":"Bearer abc.DEF-123_xyz"}}}`, ['abc.DEF-123_xyz'], ['authorization']],
  [`authorization: Basic dXNlcjpodW50ZXIy`, ['dXNlcjpodW50ZXIy'], ['Basic [REDACTED]']],
  [`token in query: /callback?id_token=${JWT}&state=xyz`, [JWT], ['state=xyz']],
  [`{"msg":"refused","token":"${JWT}"}`, [JWT], ['"token":"[REDACTED]"']],
  [`GET /api/orders?access_token=s3cr3tTOKEN&limit=5`, ['s3cr3tTOKEN'], ['limit=5']],
  [`POST /login body username=ann&password=hunter2&remember=1`, ['hunter2'], ['username=ann', 'remember=1']],
  [`client_secret=Zx8_kq-99aa&grant_type=client_credentials`, ['Zx8_kq-99aa'], ['grant_type=client_credentials']],
  [`{"client_secret":"abc\\"def","client_id":"web"}`, ['abc\\"def', 'abc'], ['"client_id":"web"']],
  [`{"msg":"body was {\\"password\\":\\"hunter2\\",\\"user\\":\\"ann\\"}"}`, ['hunter2'], ['\\"user\\":\\"ann\\"']],
  [`connecting to postgres://app:p4ssw0rd@db.internal:5432/shop`, ['p4ssw0rd'], ['postgres://app:[REDACTED]@db.internal:5432/shop']],
  [`redis://:verysecret@127.0.0.1:6379`, ['verysecret'], ['127.0.0.1:6379']],
  [`partner key ${API_KEY} used`, ['Zm9vYmFyYmF6cXV4'], ['gh_ab12cd34_[REDACTED]']],
  [`x-api-key: ${API_KEY}`, ['Zm9vYmFyYmF6cXV4'], ['x-api-key']],
  [`aws AKIAIOSFODNN7EXAMPLE leaked`, ['AKIAIOSFODNN7EXAMPLE'], ['[API_KEY]']],
  [`stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc`, ['4eC39HqLyjWDarjtT1zdp7dc'], []],
  [`github ghp_1234567890abcdefghijABCDEFGHIJ123456`, ['ghp_1234567890abcdefghij'], []],
  [`refund to IBAN DE89 3704 0044 0532 0130 00 today`, ['3704 0044 0532'], ['DE' + '*'.repeat(16) + '3000']],
  [`iban=GB82WEST12345698765432`, ['GB82WEST12345698765432'], ['5432']],
  [`not an IBAN: DE00 1234 5678 9012 3456 78`, [], ['DE00 1234 5678 9012 3456 78']],
  [`totp: 123456 accepted`, ['123456'], ['totp: [REDACTED]']],
  [`cookie: session_id=abcdef0123456789; theme=dark`, ['abcdef0123456789'], ['theme=dark']],
  [`passphrase = "correct horse"`, [], []],
  [`Bearer realm="gatehouse", error="invalid_token"`, [], ['Bearer realm="gatehouse", error="invalid_token"']],
  [`Basic authentication failed for client web`, [], ['Basic authentication failed for client web']],
  // what must stay as it is
  [
    `{"level":"info","time":"2026-11-27T12:00:00.000Z","request_id":"550e8400-e29b-41d4-a716-446655440000","code":"forbidden","status":403,"route":"orders-list","duration_ms":1.25,"caller":{"kind":"user","sub":"u-7f3a","client_id":"bff","jti":"Jx9"},"spiffe_id":"spiffe://shop.local/zone/private/svc/orders","ciphertext":"gh:v1:A3BpaQAAAAEx","token_type":"Bearer","token_endpoint":"https://127.0.0.1:9444/token"}`,
    [],
    ['550e8400-e29b-41d4-a716-446655440000', '"code":"forbidden"', 'spiffe://shop.local/zone/private/svc/orders', 'gh:v1:A3BpaQAAAAEx', '"token_type":"Bearer"', '"token_endpoint":"https://127.0.0.1:9444/token"', '2026-11-27T12:00:00.000Z'],
  ],
];

test('the corpus: every sensitive value masked, everything else kept, JSON stays JSON', () => {
  for (const [line, gone, kept] of CORPUS) {
    const masked = maskText(line);
    for (const g of gone) assert.ok(!masked.includes(g), `${JSON.stringify(g)} still in ${masked}`);
    for (const k of kept) assert.ok(masked.includes(k), `${JSON.stringify(k)} missing from ${masked}`);
    if (line.startsWith('{')) assert.doesNotThrow(() => JSON.parse(masked), masked);
    assert.equal(maskText(masked), masked, `masking is idempotent: ${masked}`);
  }
});

test('maskValue: secret-named properties redacted, strings masked, cycles and depth bounded', () => {
  const o: Record<string, unknown> = { password: 'x', nested: { client_secret: 'y', note: 'mail ann@example.com' }, list: ['4111111111111111'] };
  o.self = o;
  const m = maskValue(o) as Record<string, any>;
  assert.equal(m.password, '[REDACTED]');
  assert.equal(m.nested.client_secret, '[REDACTED]');
  assert.equal(m.nested.note, 'mail ***@example.com');
  assert.equal(m.list[0], '************1111');
  assert.equal(m.self, '[…]');
  assert.deepEqual(maskValue(new Error('bad password=abc')), { type: 'Error', message: 'bad password=[REDACTED]' });
});

test('hostile input: long and adversarial strings finish quickly', () => {
  const inputs = [
    'a'.repeat(200_000),
    '4'.repeat(200_000),
    '4 '.repeat(100_000),
    '@'.repeat(100_000) + 'a'.repeat(1000),
    'a@'.repeat(100_000),
    'password='.repeat(20_000),
    '"token":"'.repeat(20_000),
    'eyJ.'.repeat(50_000),
    'Bearer '.repeat(30_000),
    'DE89'.repeat(50_000),
    'x://'.repeat(50_000) + ':@',
  ];
  for (const input of inputs) {
    const t0 = performance.now();
    maskText(input);
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `${input.slice(0, 12)}… took ${ms.toFixed(0)} ms`);
  }
  assert.equal(maskText(''), '');
  assert.equal(maskText(undefined as never), undefined);
});

test('cost: a line with nothing to mask is cheap', () => {
  const line = '{"request_id":"550e8400-e29b-41d4-a716-446655440000","method":"GET","path":"/api/catalog","status":200,"route":"catalog","duration_ms":0.42,"client":"127.0.0.1","http":"1.1"}';
  const n = 50_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) maskText(line);
  const perLineUs = ((performance.now() - t0) * 1000) / n;
  assert.ok(perLineUs < 20, `${perLineUs.toFixed(2)} µs a line`);
});

test('wired: a pino logger of createLogger and a problem body mask what they carry', async () => {
  const { createLogger } = await import('./logger.ts');
  const { GatehouseError, problemBody } = await import('./errors.ts');
  const lines: string[] = [];
  const log = createLogger({ name: 't', destination: { write: (s: string) => void lines.push(s) } });
  log.info({ user: 'ann@example.com', err: new Error(`card 4111111111111111 refused, Bearer ${JWT}`) }, 'password=hunter2 for %s', 'bob@example.com');
  const line = lines.join('');
  for (const gone of ['ann@', 'bob@', '4111111111111111', JWT.slice(0, 40), 'hunter2']) assert.ok(!line.includes(gone), `${gone} in ${line}`);
  assert.doesNotThrow(() => JSON.parse(line));
  const body = problemBody(new GatehouseError('bad_request', 'no user ann@example.com'), 'r1');
  assert.equal(body.detail, 'no user ***@example.com');
});

test('identifiers are not card numbers: UUIDs whose decimal groups pass Luhn, hex ids that start with digits', () => {
  // each of these would have been masked as a card: a request id in a log line lost its value
  for (const id of ['00000000-0000-4000-4111-111111111111', '3f2a9c1e-8b7d-4e5f-5123-123456789010', '4111111111111111abcdef0123456789'])
    assert.equal(maskText(`request_id ${id} status 200`), `request_id ${id} status 200`);
  // the cards themselves still are, whatever their separators
  assert.equal(maskText('paid with 4111-1111-1111-1111.'), 'paid with ****-****-****-1111.');
  assert.equal(maskText('card=4111111111111111&x=1'), 'card=************1111&x=1');
});
