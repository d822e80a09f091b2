// The SARIF 2.1.0 log both security reports write (`gatehouse audit`, `gatehouse
// probe`): one run of one tool, its rules, its results. What a run adds beside
// them (invocations, uri bases) comes as `extra`.
export function sarifLog(driver: { name: string; version: string; rules: object[] }, results: object[], extra: Record<string, unknown> = {}) {
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{ tool: { driver }, ...extra, results }],
  };
}
