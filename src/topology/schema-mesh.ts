// Mesh fields of a service (who may call it, where it may call out).
// Owned by the pki/mesh component. Deny by default: a service with no `allow`
// edge accepts no caller, and one with no `egress` entry calls nobody.
// (Methods are listed here rather than imported from schema.ts, which imports
// this file.)
import { z } from 'zod';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const MESH_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export const MeshPathRule = z
  .object({
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/, 'path must start with / and hold only unencoded URL path characters')
      .refine((p) => !/\/\.{1,2}(\/|$)|\/\//.test(p), 'path must be canonical: no dot segments or empty segments')
      .describe('request path to allow, in canonical form (no percent-encoding, dot or empty segments)'),
    match: z
      .enum(['exact', 'prefix'])
      .default('exact')
      .describe("'exact' (default) or 'prefix'; a prefix matches whole segments only (/orders matches /orders/1, not /orders-x)"),
  })
  .strict();

export const AllowEdge = z
  .object({
    caller: z
      .string()
      .regex(NAME, 'caller is a service name or `gateway`')
      .describe("who may call: another service's name, or `gateway` for the gateway of this service's own zone"),
    methods: z
      .array(z.enum(MESH_METHODS))
      .min(1)
      .default(['GET', 'HEAD'])
      .describe('methods this caller may use; default GET and HEAD. OPTIONS only when listed; method overrides are always refused'),
    paths: z
      .array(MeshPathRule)
      .min(1)
      .describe('paths this caller may reach (required: there is no "any path" default)'),
  })
  .strict();

export const EgressTarget = z
  .string()
  .refine(
    (v) =>
      NAME.test(v) ||
      /^gateway:[a-z][a-z0-9-]{0,62}$/.test(v) ||
      /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v),
    'egress entries are service names, gateway:<zone> or host:port',
  )
  .describe(
    'a service name of this topology, `gateway:<zone>` (the gateway of a zone: the only way into another zone), or host:port of an outside endpoint',
  );

export const ServiceMeshFields = {
  allow: z
    .array(AllowEdge)
    .default([])
    .describe('who may call this service (caller, methods, paths); absent or empty: nobody may call it'),
  egress: z
    .array(EgressTarget)
    .default([])
    .describe('services, zone gateways and host:port this service may call out to; absent or empty: none'),
  sidecar: z
    .boolean()
    .default(false)
    .describe(
      '`gatehouse up` runs the `run:` module as a plain-HTTP process on loopback with `gatehouse sidecar` in front of it (the way to mesh a service in any language); false: the module serves mTLS itself with createService',
    ),
};

export type AllowEdge = z.infer<typeof AllowEdge>;
export type MeshPathRule = z.infer<typeof MeshPathRule>;
