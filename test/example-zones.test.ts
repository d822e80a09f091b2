// The example's trust zones, then `gatehouse probe` against the same run,
// under one `gatehouse up` that these parts share (sharedExample in
// test/support/example-up.ts). The probe comes last: it is the one part that
// calls from 127.0.0.1, and its hostile requests count against that address.
import './example/zones.ts'; // partner, internal and private zones with their controls
import './example/probe.ts'; // no finding of any severity, every family at both gateways
