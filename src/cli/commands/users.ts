import type { Command } from 'commander';
import { zoneOptions, openZone, type ZoneOptions } from '../zone-stores.ts';

type Common = ZoneOptions;
const common = (c: Command) => zoneOptions(c, 'users');
const open = openZone;

/** Commander's collector for a repeatable option. */
const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Role names are usage: a bad one is exit 2 (nothing is opened or changed). */
async function badRoles(roles: readonly string[]): Promise<boolean> {
  const { roleProblem } = await import('../../authority/index.ts');
  const problems = roles.map(roleProblem).filter((p): p is string => p !== undefined);
  for (const p of problems) process.stderr.write(`gatehouse users: ${p}\n`);
  if (problems.length > 0) process.exitCode = 2;
  return problems.length > 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function register(program: Command): void {
  const users = program.command('users').description("manage a zone authority's local users");

  common(users.command('add'))
    .description('add a user with a TOTP second factor; prints the generated password and TOTP enrolment once')
    .argument('<username>')
    .option('--password-stdin', 'read the password from stdin instead of generating one', false)
    .option('--no-totp', 'no second factor (refused at sign-in when the zone requires MFA)')
    .option('--email <email>', 'email claim')
    .option('--role <role>', "a Gatehouse role (the gateway's `roles` rules; repeat for more); 1-64 letters, digits and . _ : -", collect, [])
    .action(async (username: string, o: Common & { passwordStdin: boolean; totp: boolean; email?: string; role: string[] }) => {
      if (await badRoles(o.role)) return;
      const password = o.passwordStdin ? await readStdin() : undefined;
      const s = await open(o);
      try {
        const u = await s.users.add({ username, password, totp: o.totp, claims: o.email ? { email: o.email } : {}, roles: o.role });
        const shown: Record<string, unknown> = { id: u.id, username: u.username, roles: u.roles ?? [] };
        if (!o.passwordStdin) shown.password = u.password;
        if (u.totp_secret) Object.assign(shown, { totp_secret: u.totp_secret, otpauth_uri: u.otpauth_uri });
        process.stdout.write(JSON.stringify(shown, null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('list'))
    .description('list users (never a secret)')
    .action(async (o: Common) => {
      const s = await open(o);
      try {
        const { rolesOf } = await import('../../authority/index.ts');
        const list = (await s.users.list()).map(({ id, username, locked, mfa, totp, passkeys, claims }) => ({ id, username, locked, mfa, totp, passkeys, roles: rolesOf(claims) }));
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('roles'))
    .description("show a user's roles, or add and remove some (tokens issued afterwards carry them); prints the roles as JSON")
    .argument('<username>')
    .option('--add <role>', 'add a role (repeat for more)', collect, [])
    .option('--remove <role>', 'remove a role (repeat for more)', collect, [])
    .action(async (username: string, o: Common & { add: string[]; remove: string[] }) => {
      if (await badRoles([...o.add, ...o.remove])) return;
      const s = await open(o);
      try {
        const roles = await s.users.changeRoles(username, { add: o.add, remove: o.remove });
        if (!roles) {
          process.stderr.write(`gatehouse: no user ${username} in zone ${o.zone}\n`);
          process.exitCode = 1;
        } else process.stdout.write(JSON.stringify({ username: username.toLowerCase(), roles }, null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('lock'))
    .description('lock (or with --unlock, unlock) a user; a locked user cannot sign in or refresh')
    .argument('<username>')
    .option('--unlock', 'unlock instead', false)
    .action(async (username: string, o: Common & { unlock: boolean }) => {
      const s = await open(o);
      try {
        if (!(await s.users.setLocked(username, !o.unlock))) {
          process.stderr.write(`gatehouse: no user ${username} in zone ${o.zone}\n`);
          process.exitCode = 1;
        } else process.stdout.write(`${o.unlock ? 'unlocked' : 'locked'} ${username}\n`);
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('reset-mfa'))
    .description('replace the TOTP secret of a user (the old one stops working); prints the new enrolment once')
    .argument('<username>')
    .action(async (username: string, o: Common) => {
      const s = await open(o);
      try {
        const r = await s.users.resetMfa(username);
        if (!r) {
          process.stderr.write(`gatehouse: no user ${username} in zone ${o.zone}\n`);
          process.exitCode = 1;
        } else process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('passkeys'))
    .description("list a user's passkeys and security keys (WebAuthn credentials; public data only)")
    .argument('<username>')
    .action(async (username: string, o: Common) => {
      const s = await open(o);
      try {
        const user = await s.users.byUsername(username);
        if (!user) {
          process.stderr.write(`gatehouse: no user ${username} in zone ${o.zone}\n`);
          process.exitCode = 1;
          return;
        }
        const list = (await s.users.passkeys(user.id)).map((p) => ({
          id: p.id,
          name: p.name,
          amr: p.deviceType === 'multiDevice' ? 'swk' : 'hwk',
          aaguid: p.aaguid,
          counter: p.counter,
          created_at: new Date(p.createdAt).toISOString(),
          last_used_at: p.lastUsedAt === null ? null : new Date(p.lastUsedAt).toISOString(),
        }));
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(users.command('remove-passkey'))
    .description('remove one passkey of a user (a lost or copied key), or all of them with --all')
    .argument('<username>')
    .argument('[credential-id]')
    .option('--all', 'remove every passkey of the user', false)
    .action(async (username: string, credentialId: string | undefined, o: Common & { all: boolean }) => {
      const s = await open(o);
      try {
        const user = await s.users.byUsername(username);
        if (!user || (!o.all && !credentialId)) {
          process.stderr.write(user ? 'gatehouse: give a credential id or --all\n' : `gatehouse: no user ${username} in zone ${o.zone}\n`);
          process.exitCode = 1;
          return;
        }
        const removed = o.all ? await s.users.removeAllPasskeys(user.id) : (await s.users.removePasskey(user.id, credentialId!)) ? 1 : 0;
        if (removed === 0 && !o.all) {
          process.stderr.write(`gatehouse: ${username} has no passkey ${credentialId}\n`);
          process.exitCode = 1;
        } else process.stdout.write(`removed ${removed} passkey(s) of ${username}\n`);
      } finally {
        await s.storage.close();
      }
    });
}
