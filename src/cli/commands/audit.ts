import type { Command } from 'commander';
import { usage } from '../usage.ts';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('audit')
    .description('posture lint of a topology: one rule per practice (stable ids), each finding with its line and fix; exit 1 on any error-level finding')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--format <format>', 'text, json or sarif (SARIF 2.1.0, for code scanning)', 'text')
    .action(async (o: { config: string; format: string }) => {
      const { auditTopology, auditConfigError, formatAudit, AUDIT_FORMATS } = await import('../../audit/index.ts');
      if (!(AUDIT_FORMATS as readonly string[]).includes(o.format)) throw usage('audit', `--format must be one of ${AUDIT_FORMATS.join(', ')}`);
      const { loadTopology, ConfigError } = await import('../../topology/index.ts');
      let report;
      try {
        report = auditTopology(loadTopology(o.config), o.config);
      } catch (error) {
        // a topology that does not load: its errors are the findings (SARIF included)
        if (!(error instanceof ConfigError)) throw error;
        report = auditConfigError(error, o.config);
        process.stderr.write(`${error.message}\n`);
        process.exitCode = 2; // a config error (CLI contract), its findings still on stdout
      }
      process.stdout.write(formatAudit(report, o.format as (typeof AUDIT_FORMATS)[number], program.version() ?? '0.1.0'));
      if (report.summary.error > 0 && process.exitCode !== 2) process.exitCode = 1;
    });
}
