// Policy bundles (issue 12): compile, sign, verify. Public API.
export { compileBundles, stampBundle, contentDigest, type CompiledBundle, type DecisionInputs, type CompileOptions } from './compile-bundles.ts';
export { signBundle, signBytes, type BundleSigner } from './sign-bundle.ts';
export { verifyBundle, type VerifyBundleOptions, type VerifiedBundle, type BundleRefusal } from './verify-bundle.ts';
export { openControlSigner, type ControlSigner, type OpenControlSignerOptions } from './open-control-signer.ts';
export { openRevisionStore, type RevisionStore } from './open-revision-store.ts';
export { readRevokedSerials } from './read-revoked-serials.ts';
export { canonicalJson, canonicalBytes, parseCanonical } from './lib/canonical.ts';
export {
  Bundle,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_SCHEMA,
  MAX_BUNDLE_BYTES,
  bundlePath,
  type Decisions,
  type PepKind,
  type Quarantine,
} from './lib/bundle.ts';
