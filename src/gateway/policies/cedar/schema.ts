// Config of the cedar unit: fine-grained rules written in Cedar over who calls
// (principal), what they do (action = method) and which route (resource).
// A leaf module (zod only): topology/schema.ts imports it, so it must not
// import topology/schema.ts back (an import cycle fails at load).
import { z } from 'zod';

/** A `policies` value naming a file rather than holding Cedar text. */
export function isPolicyFile(policies: string): boolean {
  return policies.endsWith('.cedar') && !policies.includes('\n');
}

export const CedarConfig = z
  .object({
    policies: z
      .string()
      .min(1)
      .describe(
        'a path to a .cedar file (relative to the topology file directory), or Cedar policy text inline; a value ' +
          'ending in .cedar with no newline is a path. Parsed and validated against the Gatehouse entity model ' +
          'when the config loads (an error names the file, line and column). Required: there is no default set. ' +
          'A set with no permit that matches refuses every request (deny by default; a forbid wins over a permit). ' +
          'Entity model: principal Gatehouse::User::"<sub>" | Gatehouse::Client::"<client id>" | ' +
          'Gatehouse::Consumer::"<consumer>" | Gatehouse::Anonymous::"anonymous", each with scopes: Set<String>, ' +
          'roles: Set<String>, mfa: Bool, issuer: String ("" when none), and for users client?: String; ' +
          'action Gatehouse::Action::"<METHOD>"; resource Gatehouse::Route::"<route name>" with path, service, zone; ' +
          'context { ip: ipaddr, time: Long (epoch seconds), hour: Long (0-23 UTC), mfa: Bool, method: String, ' +
          'path: String }',
      ),
    shadow: z
      .boolean()
      .default(false)
      .describe('log and count what would be refused, and let it pass (the policy chain reads it); default false'),
  })
  .strict()
  .describe(
    'Cedar policies checked after authentication (phase authorize); a refusal is 403 forbidden and never names ' +
      'the policy (the debug log does, with the request id)',
  );

export type CedarConfig = z.infer<typeof CedarConfig>;
