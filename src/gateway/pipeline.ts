// The ways into the request path: a request (HTTP/1.1 or HTTP/2, preflights
// included) and a WebSocket upgrade. Each makes one GatewayExchange and hands it
// to the one runner over the one phase list (phases.ts).
import type { Duplex } from 'node:stream';
import { GatewayExchange, isHttp2, type PipelineContext, type Req, type Res } from './exchange.ts';
import { runPipeline } from './phases.ts';
import { limitStream } from './phases/proxy.ts';
import { wasRefused } from './phases/respond.ts';

export type { PipelineContext } from './exchange.ts';
export { wasRefused } from './phases/respond.ts';
export { abortUpload } from './phases/proxy.ts';

export function createHandler(ctx: PipelineContext): (req: Req, res: Res) => void {
  return function handle(req, res) {
    if (wasRefused(req.socket)) {
      // a request pipelined behind a refused one is never answered or forwarded
      req.socket.destroy();
      return;
    }
    // draining: this answer is the connection's last
    if (ctx.draining && !isHttp2(req)) res.setHeader('connection', 'close');
    const ex = new GatewayExchange(req, res, undefined, ctx);
    // HTTP/2 streams have no server-wide request timeout: give each one its own
    limitStream(req, ex.state.config.limits.requestTimeoutMs);
    runPipeline(ex);
  };
}

/** An HTTP/1.1 upgrade: the same phases as any request; proxied only when every one said yes. */
export function createUpgradeHandler(ctx: PipelineContext): (req: Req, socket: Duplex, head: Buffer) => void {
  return function handleUpgrade(req, socket, head) {
    socket.on('error', () => socket.destroy());
    runPipeline(new GatewayExchange(req, undefined, { socket, head }, ctx));
  };
}
