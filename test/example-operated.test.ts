// The example as its operators run it, under one `gatehouse up` of a copy
// whose monitor names a console sign-in zone (operatedExample in
// test/support/example-up.ts), shared by these parts in this order:
import './example/live-edit.ts'; // an allow edge edited while it runs; a real Prometheus scrapes the gateways
import './example/monitor.ts'; // a scanner and a credential-stuffing run quarantined; the console in Chromium
