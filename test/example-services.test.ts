// The example as a new user runs it, under one `gatehouse up` that these parts
// share (sharedExample in test/support/example-up.ts: one run instead of
// five, each part calling from a loopback address of its own). The parts run
// in this order: the mTLS part comes last, since the control plane
// quarantines the BFF once it has presented its certificate where no edge
// allows it. The run's last check is that `up` stops cleanly on SIGINT.
import './example/up.ts'; // endpoints.json, tokens of each zone, the revocation feed
import './example/socket.ts'; // the sidecar's application only on its Unix socket
import './example/vault.ts'; // personal data sealed by the vault; kills the vault and sees it back
import './example/mtls.ts'; // every service over mTLS, deny by default, the BFF's way to the private zone
