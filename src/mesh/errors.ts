// Errors of the mesh, made from the one registry (shared/errors.ts) and
// answered by the one problem writer (shared/problem.ts).
import { GatehouseError } from '../shared/errors.ts';

/** `close`: the connection is not trusted further (unverified or revoked peer). */
export const Forbidden = (close = false) => new GatehouseError('forbidden', 'This caller may not make this request.', { closeConnection: close });
export const Ambiguous = () => new GatehouseError('ambiguous_request', 'The request is ambiguous and was refused.');
export const Unauthorized = () => new GatehouseError('unauthorized', 'The propagated identity token is not valid for this service.');
export const EgressDenied = (target: string) => new GatehouseError('egress_denied', `This service may not call ${target}.`);
