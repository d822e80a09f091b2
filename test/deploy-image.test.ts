// The image (Dockerfile) installs production dependencies only and copies
// bin/, src/ and examples/: whatever src/ needs at run time must come from
// there. A value import of a devDependency, or of test/ or bench/ code, works
// in the repository and fails in the container; this catches it first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : /\.ts$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [p] : [];
  });
}

/** Modules a file loads at run time: static imports and exports that are not `type`-only, and dynamic imports. */
function runtimeImports(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?\bfrom\s+)?['"]([^'"]+)['"]/gm)) if (!m[2]) out.push(m[4]);
  for (const m of code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]);
  return out;
}

test('src/ loads only production dependencies, node built-ins and its own files at run time', () => {
  const builtins = new Set(builtinModules);
  const problems: string[] = [];
  for (const file of sourceFiles('src')) {
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(file), spec);
        if (!target.startsWith(path.resolve('src') + path.sep)) problems.push(`${file}: ${spec} is outside src/ (not in the image)`);
        continue;
      }
      if (spec.startsWith('node:') || builtins.has(spec)) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      if (!Object.hasOwn(pkg.dependencies, name)) problems.push(`${file}: ${spec} is not a production dependency (npm ci --omit=dev leaves it out)`);
    }
  }
  assert.deepEqual(problems, []);
});

test('the Dockerfile runs as a numeric non-root user, without a shell, production dependencies only', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8');
  assert.match(dockerfile, /^RUN npm ci --omit=dev\b/m);
  const user = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].at(-1)?.[1];
  assert.match(user ?? '', /^[1-9]\d*:[1-9]\d*$/, 'the last USER is numeric and not root');
  assert.match(dockerfile, /^ENTRYPOINT \[/m, 'exec form');
  assert.match(dockerfile, /^\s+CMD \["node"/m, 'HEALTHCHECK in exec form');
  const ignore = readFileSync('.dockerignore', 'utf8');
  assert.match(ignore, /^\*$/m, 'the build context starts empty');
  for (const kept of ['src/', 'bin/', 'package-lock.json']) assert.match(ignore, new RegExp(`^!${kept.replace('.', '\\.')}$`, 'm'));
});
