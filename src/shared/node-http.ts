// node:http for Gatehouse's ES modules. `import … from 'node:http'` builds the
// builtin's ES namespace, which reads every export — WebSocket, MessageEvent
// and CloseEvent among them — and so loads Node's internal fetch (undici):
// some 60 ms of CPU at every process start, for nothing a server uses.
// getBuiltinModule hands over the exports without reading them. Types still
// come from `import type … from 'node:http'`, which loads nothing.
export const { createServer, request } = process.getBuiltinModule('node:http');
