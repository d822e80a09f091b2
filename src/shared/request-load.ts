// V8 settings for the processes that proxy requests under load: the gateway
// and the sidecar. Called first thing in their verb, before they load anything.
//
// Allocation-site pretenuring: V8 watches which allocation sites' objects
// survive young-generation collections and then allocates that site's objects
// straight in the old generation. In a proxy whose heap holds what it loaded at
// start (the topology's schemas, policy units: ~40 MB), each young collection
// then finds ~5 MB of requests' objects alive and promotes nearly all of it,
// to die in the old generation (pretenured objects that died still point into
// the young generation until the next full collection). Any module holding
// ~20 MB does the same to the bare proxy of bench/. Measured on the gateway (wrk -t1 -c64, HTTPS,
// one core; `node --trace-gc-nvp`): 4.7 MB promoted per young collection with
// pretenuring, 0.1–0.6 MB without; 21.5k → 24.8k requests/s, p99 24 → 7.7 ms.
import { setFlagsFromString } from 'node:v8';

export function tuneForRequestLoad(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
