// What every suite prints and writes: timestamped progress lines, the machine it ran on, full results under tmp/ and a summary under bench/results/.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { OutputFlags } from './flags';

export type Say = (message: string) => void;

/** Prints a line stamped with the seconds since this was called. */
export function createSay(): Say {
  const started = Date.now();
  return (message) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}

export const loadAverage = (): string => loadavg().map((v) => v.toFixed(2)).join(' ');

export function machine(): { cpus: number; cpuModel: string; memoryBytes: number; kernel: string; node: string } {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), kernel: release(), node: process.version };
}

/** What a results file opens with: when, on what machine, how busy it was at the end, with which options. */
export function resultsHeader<Options extends object>(options: Options): { generatedAt: string; machine: ReturnType<typeof machine>; loadAverageAtEnd: string; options: Options } {
  return { generatedAt: new Date().toISOString(), machine: machine(), loadAverageAtEnd: loadAverage(), options };
}

// dist/bench/lib/ -> the checkout
const REPOSITORY = resolve(__dirname, '../../..');

export interface ResultFiles {
  /** Every figure, sample and log line of the run: large, so under tmp/ (not committed) unless --out says otherwise. */
  raw: string;
  /** The tables and headline figures the README quotes: small, committed. */
  summary: string;
}

/** `name` is the suite's (throughput, failover, ...): tmp/bench/<name>.json and bench/results/<name>-summary.json by default. */
export function resultFiles(name: string, flags: OutputFlags): ResultFiles {
  return {
    raw: resolve(flags.out ?? join(REPOSITORY, 'tmp', 'bench', `${name}.json`)),
    summary: resolve(flags.summary ?? join(REPOSITORY, 'bench', 'results', `${name}-summary.json`)),
  };
}

/**
 * JSON laid out two levels deep, anything nested further on one line: a summary's list of runs
 * reads one run per line instead of one field per line.
 */
export function summaryJson(value: unknown, indent = '', depth = 0): string {
  if (depth >= 2 || value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  const inner = `${indent}  `;
  const items = Array.isArray(value)
    ? value.map((v) => `${inner}${summaryJson(v, inner, depth + 1)}`)
    : Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${inner}${JSON.stringify(k)}: ${summaryJson(v, inner, depth + 1)}`);
  if (items.length === 0) return JSON.stringify(value);
  return Array.isArray(value) ? `[\n${items.join(',\n')}\n${indent}]` : `{\n${items.join(',\n')}\n${indent}}`;
}

function writeText(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${text}\n`);
}

export function writeResults(files: ResultFiles, raw: unknown, summary: unknown): void {
  writeText(files.raw, JSON.stringify(raw, null, 2));
  writeText(files.summary, summaryJson(summary));
}

/** The run's directory goes with its cluster; pgfloat's log is worth keeping beside the raw results to look into a figure. */
export function keepPgfloatLog(files: ResultFiles, logFile: string): string {
  const kept = files.raw.replace(/\.json$/, '') + '-pgfloat.log';
  mkdirSync(dirname(kept), { recursive: true });
  copyFileSync(logFile, kept);
  return kept;
}
