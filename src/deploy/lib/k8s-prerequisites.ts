// What the exported manifests reference but never contain: each Secret (its
// keys, what each holds, the command that creates it) and each ConfigMap the
// operator writes (the trust anchors, the cluster issuer's keys), in the order
// they can be made. Rendered as NOTES.md beside the manifests
// (`export k8s --out`) or on stdout (`--secrets-template`). Values never
// appear; a shell command names only strings the topology restricts (zone,
// service and variable names) and takes every secret from a variable or a file
// the operator provides. Free text from the topology (client ids) appears only
// in the prose, escaped.

export interface PrerequisiteKey {
  key: string;
  /** What the value is; free text, escaped when rendered. */
  what: string;
  /** The kubectl flag that adds it (--from-literal=K="$VAR", --from-file=K=FILE); for a TLS Secret, the cert or key flag. */
  flag: string;
}

export interface Prerequisite {
  namespace: string;
  kind: 'Secret' | 'ConfigMap';
  /** generic or tls (a Secret); a ConfigMap is always generic. */
  type: 'generic' | 'tls';
  name: string;
  /** Made after the CA pod runs (it needs the CA's trust bundle): step 2. */
  afterCa: boolean;
  keys: PrerequisiteKey[];
}

/** Collects references; the same Secret key named by two containers is listed once. */
export class Prerequisites {
  private readonly items = new Map<string, Prerequisite>();

  add(p: Omit<Prerequisite, 'keys'>, key: PrerequisiteKey): void {
    const id = `${p.namespace}/${p.kind}/${p.name}`;
    const item = this.items.get(id) ?? { ...p, keys: [] };
    if (!item.keys.some((k) => k.key === key.key)) item.keys.push(key);
    this.items.set(id, item);
  }

  list(): Prerequisite[] {
    return [...this.items.values()].sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.kind, b.kind) || cmp(a.name, b.name));
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A string the shell takes as one plain word: what a command may contain. */
const SAFE = /^[A-Za-z0-9._=/:@-]+$/;

/** `"$VAR"` or a path: the flag's value, after the key. */
export function literalFromVariable(key: string): string {
  return `--from-literal=${key}="$${key}"`;
}

/** The kubectl command that creates one prerequisite. */
export function createCommand(p: Prerequisite): string {
  const words = p.kind === 'Secret' ? ['kubectl', '-n', p.namespace, 'create', 'secret', p.type, p.name] : ['kubectl', '-n', p.namespace, 'create', 'configmap', p.name];
  for (const w of words) if (!SAFE.test(w)) throw new Error(`unsafe word in a generated command: ${JSON.stringify(w)}`);
  for (const k of p.keys) if (!/^--[a-z-]+=[A-Za-z0-9._-]+(="\$[A-Z_][A-Z0-9_]*"|=[A-Za-z0-9._/<>-]+)?$/.test(k.flag)) throw new Error(`unsafe flag in a generated command: ${JSON.stringify(k.flag)}`);
  return [words.join(' '), ...p.keys.map((k) => k.flag)].join(' \\\n    ');
}

function prose(s: string): string {
  // one line, no markup that could end the table cell or open a link/HTML
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/gu, ' ').replace(/[|`<>[\]\\*_]/g, (c) => `\\${c}`);
}

export function renderPrerequisites(list: Prerequisite[], header: { topologyFile: string; trustDomain: string; namespaces: string[]; files: string[] }): string {
  const out: string[] = [];
  const step = (afterCa: boolean) => list.filter((p) => p.afterCa === afterCa);
  out.push(
    `# What to create before these manifests run`,
    '',
    `Written by \`gatehouse export k8s\` from ${prose(header.topologyFile)} (trust domain ${prose(header.trustDomain)}). The manifests`,
    'reference these Secrets and ConfigMaps by name and key; the export never writes a value. Each',
    'command takes a secret from an environment variable you set (`"$NAME"`) or a file you provide.',
    '',
    '## 0. Namespaces',
    '',
    '```sh',
    ...header.namespaces.map((n) => `kubectl create namespace ${n}   # or apply the Namespace documents first`),
    '```',
  );
  const section = (title: string, items: Prerequisite[]) => {
    if (items.length === 0) return;
    out.push('', `## ${title}`);
    for (const p of items) {
      out.push('', `### ${p.kind} \`${p.namespace}/${p.name}\``, '', '| key | what it holds |', '|---|---|');
      for (const k of p.keys) out.push(`| \`${k.key}\` | ${prose(k.what)} |`);
      out.push('', '```sh', createCommand(p), '```');
    }
  };
  section('1. Before anything runs', step(false));
  out.push(
    '',
    '## 2. Start the CA',
    '',
    '```sh',
    `kubectl apply -f gatehouse.yaml   # the CA creates its root on first start`,
    'kubectl -n gatehouse rollout status deploy/ca',
    'kubectl -n gatehouse exec deploy/ca -c ca -- cat /var/lib/gatehouse/pki/bundle.pem > bundle.pem',
    '```',
  );
  section('3. Trust anchors of each zone (after the CA runs)', step(true));
  out.push('', '## 4. Everything else', '', '```sh', ...header.files.filter((f) => f !== 'gatehouse.yaml').map((f) => `kubectl apply -f ${f}`), '```', '');
  return out.join('\n');
}
