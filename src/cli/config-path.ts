// The one rule for which topology file a verb reads: --config, else
// $GATEHOUSE_CONFIG, else ./gatehouse.yaml. Only `gatehouse up` alone falls
// back to the example, so that a management verb never acts on the example by
// surprise.

export const EXAMPLE_CONFIG = 'examples/shop/gatehouse.yaml';

/** The default of a verb's --config option (read when the verb is registered). */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.GATEHOUSE_CONFIG || 'gatehouse.yaml';
}

export const CONFIG_HELP = 'topology file; absent: $GATEHOUSE_CONFIG, else ./gatehouse.yaml';
