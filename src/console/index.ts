// The web console (issue 16): the control plane serves it. Public API.
export { startConsole, CONSOLE_CSP, type ConsoleDeps, type ConsoleServer } from './start-console.ts';
