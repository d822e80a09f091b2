// `gatehouse vault`: serves the vault (started by `gatehouse up`); its
// subcommands are the operator's tools on the vault's store (the same store a
// running vault uses; it sees changes within a second): encrypt|decrypt,
// tokenize|detokenize, keys create|rotate|set-min-version|list|trim|delete,
// rewrap over a table. Every operator action is audited (STATE/vault/audit.log).
import type { Command } from 'commander';
import { usage as usageError } from '../usage.ts';

interface Common {
  config: string;
  stateDir: string;
}

function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'topology file (its vault.storage; default $GATEHOUSE_CONFIG, else ./gatehouse.yaml)', process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml')
    .option('--state-dir <dir>', 'state directory (the vault in <dir>/vault)', '.gatehouse');
}

/** A usage error of a vault verb: printed by main.ts, exit 2 (0 ok, 1 refusal, 2 usage or config error). */
function usage(message: string): never {
  throw usageError('vault', message);
}

/** `--version N`: a whole number ≥ 1, else a usage error. */
function versionNumber(s: string): number {
  const n = Number(s);
  if (!/^[0-9]{1,9}$/.test(s) || n < 1) usage(`--version is a whole number from 1, not ${JSON.stringify(s.slice(0, 32))}`);
  return n;
}

// --config and --state-dir belong to `vault` (they precede or follow the subcommand); subcommands read them with optsWithGlobals
const withKey = (cmd: Command) => cmd.requiredOption('--key <name>', 'the key');
const opts = <T>(cmd: Command) => cmd.optsWithGlobals() as Common & T;

async function readStdin(limit = 1024 * 1024 + 1): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw Object.assign(new Error('stdin is larger than the vault takes in one field (1 MiB); use a data key'), { exit: 1 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** One line of text from stdin (a token, a card number): without its line ending. */
const stdinLine = async () => (await readStdin(8192)).toString('utf8').replace(/\r?\n$/, '');

/** Opens the vault's store and runs `f` as the operator, audited; a refusal exits 1 with its code, never a value. */
async function asOperator<T>(o: Common, op: string, key: string | undefined, f: (vault: import('../../vault/index.ts').Vault) => Promise<T>): Promise<T | undefined> {
  const { existsSync } = await import('node:fs');
  const { openVault } = await import('../../vault/index.ts');
  const { createVaultAudit } = await import('../../vault/lib/audit.ts');
  const { GatehouseError } = await import('../../shared/errors.ts');
  let storage = 'sqlite';
  if (existsSync(o.config)) {
    const { loadTopology } = await import('../../topology/load.ts');
    storage = loadTopology(o.config).topology.vault?.storage ?? 'sqlite';
  }
  const audit = createVaultAudit(o.stateDir);
  const vault = await openVault({ stateDir: o.stateDir, storage });
  try {
    const r = await f(vault);
    audit({ caller: 'operator', op, key, outcome: 'ok' });
    return r;
  } catch (error) {
    if (!(error instanceof GatehouseError) || error.code === 'usage') throw error; // a usage error is no refusal: main.ts says it, exit 2
    audit({ caller: 'operator', op, key, outcome: 'refused', code: error.code });
    process.stderr.write(`gatehouse vault ${op}: ${error.code}: ${error.message}\n`);
    process.exitCode = 1;
    return undefined;
  } finally {
    await vault.close();
  }
}

export function register(program: Command): void {
  // commander's own usage errors (a missing --key, an unknown option or subcommand) exit 2 as well, for
  // `vault` and every subcommand (they inherit this when created below); its message is already written
  const vault = common(program.command('vault').exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2)))
    .description('the vault: encryption at rest, key rotation, tokenization over mTLS (subcommands: the operator tools)')
    .option('--listen <host:port>', "HTTPS (mTLS) listener (default: the topology's vault.listen)")
    .option('--control <url>', 'send refusals as security events to the control plane (its bundles URL; default $GATEHOUSE_CONTROL_URL)')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ listen?: string; control?: string }>(cmd);
      const { startVaultServer } = await import('../../vault/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const server = await startVaultServer({ config: o.config, stateDir: o.stateDir, listen: o.listen, control: o.control });
      announceReady({ component: 'vault', endpoints: { vault: server.url } });
      closeOnSignals(() => server.close());
    });

  withKey(vault.command('encrypt'))
    .description('encrypt stdin (bytes as they are) → a gh:v1: ciphertext on stdout')
    .requiredOption('--context <context>', 'the context the ciphertext is bound to (service/table/column/id …)')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string; context: string }>(cmd);
      const input = await readStdin();
      const ct = await asOperator(o, 'encrypt', o.key, (v) => v.encrypt(o.key, input, o.context));
      if (ct !== undefined) process.stdout.write(ct + '\n');
    });

  withKey(vault.command('decrypt'))
    .description('decrypt a gh:v1: ciphertext from stdin → the plaintext bytes on stdout')
    .requiredOption('--context <context>', 'the context it was encrypted with')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string; context: string }>(cmd);
      const input = (await readStdin(4 * 1024 * 1024)).toString('utf8').trim();
      const pt = await asOperator(o, 'decrypt', o.key, (v) => v.decrypt(o.key, input, o.context));
      if (pt !== undefined) process.stdout.write(pt);
    });

  withKey(vault.command('tokenize'))
    .description('a token for the value on stdin (one line) → stdout')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      const value = await stdinLine();
      const token = await asOperator(o, 'tokenize', o.key, (v) => v.tokenize(o.key, value));
      if (token !== undefined) process.stdout.write(token + '\n');
    });

  withKey(vault.command('detokenize'))
    .description('the value of the token on stdin → stdout')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      const token = await stdinLine();
      const value = await asOperator(o, 'detokenize', o.key, (v) => v.detokenize(o.key, token));
      if (value !== undefined) process.stdout.write(value + '\n');
    });

  withKey(vault.command('revoke-token'))
    .description('revoke the token on stdin: it never detokenizes again')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      const token = await stdinLine();
      await asOperator(o, 'revoke-token', o.key, (v) => v.revokeToken(o.key, token));
    });

  const keys = vault.command('keys').description('key management');
  const print = (info: { name: string; latest: number; minDecryptionVersion: number } | undefined) => {
    if (info) process.stdout.write(`${info.name}: latest ${info.latest}, min_decryption_version ${info.minDecryptionVersion}\n`);
  };
  withKey(keys.command('create'))
    .description('a new key (version 1)')
    .option('--tokens <shape>', "token shape: opaque or card", 'opaque')
    .option('--deterministic', 'the same value always gets the same token (for joins)', false)
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string; tokens: string; deterministic: boolean }>(cmd);
      if (o.tokens !== 'opaque' && o.tokens !== 'card') usage('--tokens is opaque or card');
      print(await asOperator(o, 'keys.create', o.key, (v) => v.createKey(o.key, { tokens: o.tokens as 'opaque' | 'card', deterministic: o.deterministic })));
    });
  withKey(keys.command('rotate'))
    .description('a new version; new encryptions use it, older versions still decrypt')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      print(await asOperator(o, 'keys.rotate', o.key, (v) => v.rotateKey(o.key)));
    });
  withKey(keys.command('set-min-version'))
    .description('versions below N no longer decrypt (latest + 1 retires the key)')
    .requiredOption('--version <n>', 'the lowest version that still decrypts', versionNumber)
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string; version: number }>(cmd);
      print(await asOperator(o, 'keys.set-min-version', o.key, (v) => v.setMinDecryptionVersion(o.key, o.version)));
    });
  withKey(keys.command('trim'))
    .description('delete the material of versions below min_decryption_version (irreversible)')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      const removed = await asOperator(o, 'keys.trim', o.key, (v) => v.trimKey(o.key));
      if (removed) process.stdout.write(`removed versions: ${removed.join(', ') || 'none'}\n`);
    });
  withKey(keys.command('delete'))
    .description('delete a retired key and its tokens (refused while any version still decrypts)')
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string }>(cmd);
      await asOperator(o, 'keys.delete', o.key, (v) => v.deleteKey(o.key));
    });
  keys.command('list')
    .description('the keys')
    .option('--json', 'one JSON document: [ { name, latest, minDecryptionVersion } ]', false)
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ json: boolean }>(cmd);
      const list = await asOperator(o, 'keys.list', undefined, (v) => v.listKeys());
      if (!list) return;
      if (o.json) process.stdout.write(JSON.stringify(list.map(({ name, latest, minDecryptionVersion }) => ({ name, latest, minDecryptionVersion }))) + '\n');
      else for (const k of list) print(k);
    });

  withKey(vault.command('rewrap'))
    .description("re-encrypt a table column's ciphertexts (or, with --tokens, the key's token values) under the key's newest version (safe to interrupt and rerun)")
    .option('--tokens', "the vault's own token store instead of a table", false)
    .option('--db <file|url>', 'the SQLite file or postgres:// URL of the table')
    .option('--table <name>', 'the table')
    .option('--column <name>', 'the column holding gh:v1: ciphertexts')
    .option('--id-column <name>', 'its primary key', 'id')
    .option('--context <template>', 'each row\'s context: {table}, {column}, {id} filled in', '{table}/{id}/{column}')
    .option('--json', 'the result as one JSON document', false)
    .action(async (_: unknown, cmd: Command) => {
      const o = opts<{ key: string; tokens: boolean; db?: string; table?: string; column?: string; idColumn: string; context: string; json: boolean }>(cmd);
      if (o.tokens) {
        const t = await asOperator(o, 'rewrap-tokens', o.key, (v) => v.rewrapTokens(o.key));
        if (t) process.stdout.write(o.json ? JSON.stringify(t) + '\n' : `rewrapped ${t.rewrapped} of ${t.tokens} tokens\n`);
        return;
      }
      if (!o.db || !o.table || !o.column) usage('rewrap needs --db, --table and --column (or --tokens)');
      const table = { db: o.db, table: o.table, column: o.column };
      const { rewrapTable } = await import('../../vault/rewrap-table.ts');
      const tty = process.stderr.isTTY === true;
      const bar = (done: number, total: number) => {
        if (!tty || total < 1000) return;
        const width = 30;
        const filled = Math.round((done / Math.max(total, 1)) * width);
        process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
      };
      const r = await asOperator(o, 'rewrap', o.key, (v) =>
        rewrapTable(v, { key: o.key, ...table, idColumn: o.idColumn, context: o.context, onProgress: bar }),
      );
      if (tty) process.stderr.write('\n');
      if (!r) return;
      if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
      else
        process.stdout.write(
          `rewrapped ${r.rewrapped} of ${r.rows} rows (${r.current} already current, ${r.other} not of this key, ${r.raced} changed meanwhile, ${r.failed.length} refused)\n`,
        );
      if (r.failed.length > 0) process.exitCode = 1;
    });
}
