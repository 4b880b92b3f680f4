// `npm run report:reliability`: the reliability scenarios' latest results as the README's markdown table.

import { readFileSync } from 'node:fs';
import { RESULTS_FILE } from './reliability';

interface ScenarioResult {
  scenario: string;
  result: string;
  failoverMs: number | null;
  acknowledged: number;
  lost: number;
  failed: number;
  unknown: number;
  failedConnects: number;
  fencedNodeRanQueued: number;
  violations: string[];
  file?: string;
  at: string;
}

const FILE_ORDER = ['reliability-primary-crash', 'reliability-server-faults', 'reliability-links', 'reliability-pgfloat-killed', 'reliability-switchover'];

function main(): void {
  let text: string;
  try {
    text = readFileSync(RESULTS_FILE, 'utf8');
  } catch {
    process.stderr.write(`no results in ${RESULTS_FILE}: run the tests first (npm test, or npx tap dist/test/integration/reliability-*.test.js)\n`);
    process.exit(1);
  }
  const latest = new Map<string, ScenarioResult>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const r = JSON.parse(line) as ScenarioResult;
    latest.set(r.scenario, r);
  }
  // The scenarios' files run in parallel; the table follows the suite's own order.
  const rank = (r: ScenarioResult): number => {
    const i = FILE_ORDER.indexOf(r.file ?? '');
    return i < 0 ? FILE_ORDER.length : i;
  };
  const rows = [...latest.values()].sort((a, b) => rank(a) - rank(b) || a.at.localeCompare(b.at));
  const out = [
    '| scenario | result | fault to first write on the new primary | acknowledged writes | lost | failed / unknown outcome | failed new connections | queued writes a fenced node ran |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.result}${r.violations.length ? ` (${r.violations.join('; ')})` : ''} | ${r.failoverMs === null ? '-' : `${(r.failoverMs / 1000).toFixed(2)} s`} | ${r.acknowledged} | ${r.lost} | ${r.failed} / ${r.unknown} | ${r.failedConnects} | ${r.fencedNodeRanQueued} |`,
    ),
  ];
  process.stdout.write(`${out.join('\n')}\n\n${rows.length} scenarios, from ${RESULTS_FILE} (latest run of each; oldest ${rows.map((r) => r.at).sort()[0]})\n`);
}

main();
