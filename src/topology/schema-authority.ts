// The `authority` block of a zone. Owned by the authority component.
import { z } from 'zod';

export const AuthorityConfig = z
  .object({
    listen: z.string().default('127.0.0.1:0').describe('host:port of the authority HTTPS listener'),
  })
  .strict();

export type AuthorityConfig = z.infer<typeof AuthorityConfig>;
