// The authority's part of the monitor (issue 16). The authority of the zone
// named by `monitor.console.zone` registers the web console's sign-in client:
// a first-party authorization-code client `gatehouse-console` whose redirect
// URI is the running console's callback. The console's address is known only
// once the control plane listens (port 0), so it is read from
// <stateDir>/control/control.json every second, and the client is registered
// again when it moved; its secret goes to <stateDir>/control/console-client.json
// (owner-only, monitor/console-grant.ts), where the control plane reads it.
// A client by that name that is not the console's is never replaced: refused loudly.
import type { AuthorityContext } from './context.ts';
import { compareClientSecret, FIRST_PARTY_PROPERTY } from './client-registry.ts';
import { CONSOLE_CALLBACK, CONSOLE_CLIENT_ID, readConsoleGrant, runningConsoleUrl, writeConsoleGrant } from '../monitor/console-grant.ts';

const POLL_MS = 1000;

/** Registers the console's client now and whenever the console moves; returns the stop. */
export function grantConsole(ctx: AuthorityContext, stateDir: string): () => void {
  if (ctx.loaded.topology.monitor.console.zone !== ctx.zone) return () => undefined;
  let running = false;
  let warned = '';
  const sync = async () => {
    const consoleUrl = runningConsoleUrl(stateDir);
    if (!consoleUrl) return;
    const redirect = `${consoleUrl}${CONSOLE_CALLBACK}`;
    const existing = await ctx.clients.find(CONSOLE_CLIENT_ID);
    if (existing) {
      const m = existing.metadata;
      const ours = m[FIRST_PARTY_PROPERTY] === true && JSON.stringify(m.grant_types) === JSON.stringify(['authorization_code']);
      if (!ours) {
        if (warned !== redirect) ctx.log.error({ clientId: CONSOLE_CLIENT_ID }, 'a client named gatehouse-console exists that is not the console\'s sign-in client; remove it');
        warned = redirect;
        return;
      }
      const held = readConsoleGrant(stateDir);
      const current =
        JSON.stringify(m.redirect_uris) === JSON.stringify([redirect]) &&
        held?.client_id === CONSOLE_CLIENT_ID &&
        held.redirect_uri === redirect &&
        held.zone === ctx.zone &&
        typeof existing.secretHash === 'string' &&
        compareClientSecret(ctx.secretHashKey, existing.secretHash, held.client_secret);
      if (current) {
        if (held.issuer !== ctx.issuer) writeConsoleGrant(stateDir, { ...held, issuer: ctx.issuer });
        return;
      }
      await ctx.clients.remove(CONSOLE_CLIENT_ID);
    }
    const created = await ctx.clients.add({
      clientId: CONSOLE_CLIENT_ID,
      name: 'Gatehouse console',
      grantTypes: ['authorization_code'],
      redirectUris: [redirect],
      scope: 'openid profile',
      authMethod: 'client_secret_basic',
      firstParty: true,
    });
    writeConsoleGrant(stateDir, { zone: ctx.zone, issuer: ctx.issuer, client_id: created.client_id, client_secret: created.client_secret!, redirect_uri: redirect });
    ctx.audit('client.added', { client_id: CONSOLE_CLIENT_ID, reason: `sign-in client of the console at ${consoleUrl}` });
  };
  const tick = () => {
    if (running) return;
    running = true;
    sync()
      .catch((err: unknown) => ctx.log.error({ err }, 'console client registration failed'))
      .finally(() => (running = false));
  };
  tick();
  const timer = setInterval(tick, POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
