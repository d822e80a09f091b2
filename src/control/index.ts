// The control plane (issue 12): serves signed bundles over mTLS, and the
// client every PEP uses to consume them. Public API.
// The server and the export load when first called: every PEP reaches this
// door for the bundle client and should not load the control plane itself.
import type { StartControlServerOptions, ControlServer } from './start-control-server.ts';
import type { ExportBundlesOptions } from './export-bundles.ts';

export type { StartControlServerOptions, ControlServer, ControlStatus, PepStatus } from './start-control-server.ts';
export { createBundleClient, spiffeIdOf, type BundleClient, type BundleClientOptions, type BundleClientStats, type PepIdentity } from './create-bundle-client.ts';
export { openPepBundles, type OpenPepBundlesOptions, type PepBundleSource } from './open-pep-bundles.ts';
export type { ExportBundlesOptions } from './export-bundles.ts';
export { controlAdminUrl } from './control-admin-url.ts';
export { createEventShipper, type EventShipper, type EventShipperOptions, type EventShipperStats } from './create-event-shipper.ts';

/** `gatehouse control`: serves signed bundles over mTLS. */
export async function startControlServer(options: StartControlServerOptions): Promise<ControlServer> {
  return (await import('./start-control-server.ts')).startControlServer(options);
}

/** `gatehouse control export`: the bundles as files, for a folder or a web server. */
export async function exportBundles(options: ExportBundlesOptions): Promise<{ revision: number; files: string[] }> {
  return (await import('./export-bundles.ts')).exportBundles(options);
}
