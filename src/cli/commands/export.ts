import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  const exporter = program.command('export').description('write what the topology declares in the formats of the machines it runs on');

  exporter
    .command('nftables')
    .description('the nftables ruleset of one host of the hosts: mapping (default drop in and out, exactly its flows), on stdout for nft -f')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .requiredOption('--host <name>', 'the host (a key of hosts:)')
    .action(async (o: { config: string; host: string }) => {
      const { loadTopology } = await import('../../topology/index.ts');
      const { exportNftables } = await import('../../deploy/index.ts');
      process.stdout.write(exportNftables(loadTopology(o.config), o.host));
    });

  exporter
    .command('k8s')
    .description('Kubernetes manifests: a namespace per zone (Pod Security restricted), hardened Deployments, Services, quotas, default-deny NetworkPolicies in and out plus exactly the topology\'s flows')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--image <ref>', 'image of every container (pin it by digest: registry/gatehouse@sha256:…)')
    .option('--out <dir>', 'write one file per namespace into this directory; absent: every document on stdout')
    .option('--k8s-issuer <url>', "the cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration), whose projected tokens pods bootstrap their certificates with", 'https://kubernetes.default.svc.cluster.local')
    .option('--secrets-template', 'print, instead of the manifests, every Secret and ConfigMap they reference and you create: keys, what each holds, the kubectl command (--out writes it as NOTES.md beside them)', false)
    .action(async (o: { config: string; image?: string; out?: string; k8sIssuer: string; secretsTemplate: boolean }) => {
      const { loadTopology } = await import('../../topology/index.ts');
      const { exportK8s, k8sPrerequisites, isImageReference } = await import('../../deploy/index.ts');
      if (o.image !== undefined && !isImageReference(o.image)) {
        process.stderr.write(`gatehouse: --image ${JSON.stringify(o.image)} is not an image reference (registry/name[:tag][@sha256:digest])\n`);
        process.exitCode = 2;
        return;
      }
      let files: Map<string, string>;
      let notes: string;
      try {
        const loaded = loadTopology(o.config);
        const options = { image: o.image, k8sIssuer: o.k8sIssuer };
        files = exportK8s(loaded, options);
        notes = k8sPrerequisites(loaded, options).notes;
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('--k8s-issuer')) throw error;
        process.stderr.write(`gatehouse: ${error.message}\n`);
        process.exitCode = 2;
        return;
      }
      if (o.secretsTemplate) {
        process.stdout.write(notes);
        return;
      }
      if (o.out === undefined) {
        process.stdout.write([...files.values()].join(''));
        return;
      }
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const path = await import('node:path');
      mkdirSync(o.out, { recursive: true });
      for (const [name, text] of files) writeFileSync(path.join(o.out, name), text);
      // kubectl apply -f DIR reads .yaml, .yml and .json only: the notes stay beside the manifests
      writeFileSync(path.join(o.out, 'NOTES.md'), notes);
      process.stderr.write(`gatehouse: wrote ${[...files.keys()].join(', ')} and NOTES.md (the Secrets and ConfigMaps to create first) to ${o.out}\n`);
    });

  exporter
    .command('monitoring')
    .description('Prometheus alert rules and a Grafana dashboard for the topology (check them with promtool check rules)')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .requiredOption('--out <dir>', 'write gatehouse-alerts.yml and gatehouse-dashboard.json into this directory')
    .action(async (o: { config: string; out: string }) => {
      const { loadTopology } = await import('../../topology/index.ts');
      const { exportMonitoring } = await import('../../monitor/index.ts');
      const { files } = exportMonitoring(loadTopology(o.config).topology);
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const path = await import('node:path');
      mkdirSync(o.out, { recursive: true });
      for (const [name, text] of files) writeFileSync(path.join(o.out, name), text);
      process.stderr.write(`gatehouse: wrote ${[...files.keys()].join(', ')} to ${o.out}\n`);
    });
}
