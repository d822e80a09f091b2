// The control plane (issue 12): serves signed bundles over mTLS, and the
// client every PEP uses to consume them. Public API.
export { startControlServer, type StartControlServerOptions, type ControlServer, type ControlStatus, type PepStatus } from './start-control-server.ts';
export { createBundleClient, spiffeIdOf, type BundleClient, type BundleClientOptions, type BundleClientStats, type PepIdentity } from './create-bundle-client.ts';
export { openPepBundles, type OpenPepBundlesOptions, type PepBundleSource } from './open-pep-bundles.ts';
export { exportBundles, type ExportBundlesOptions } from './export-bundles.ts';
export { controlAdminUrl } from './control-admin-url.ts';
export { createEventShipper, type EventShipper, type EventShipperOptions, type EventShipperStats } from './create-event-shipper.ts';
