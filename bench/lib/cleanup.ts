// Cleanup for the benches: steps run once however a bench ends (done, failed, Ctrl-C), and scopes for what one run of a suite starts.

import type { Teardown } from '../../src/sandbox/etcd-cluster';

type CleanupStep = () => unknown;
const cleanups: CleanupStep[] = [];

/** Registers a step for `cleanupAll`; steps run in reverse order of registration. */
export function onCleanup(step: CleanupStep): void {
  cleanups.push(step);
}

let cleaning: Promise<void> | undefined;

/** Runs every registered step once, even when called again (say, by a signal during the normal cleanup). */
export function cleanupAll(): Promise<void> {
  cleaning ??= runSteps(cleanups, 'bench cleanup');
  return cleaning;
}

async function runSteps(steps: CleanupStep[], label: string): Promise<void> {
  while (steps.length > 0) {
    try {
      await steps.pop()!();
    } catch (err) {
      process.stderr.write(`${label}: ${(err as Error).message}\n`);
    }
  }
}

/**
 * What one run starts (a cluster, pgfloat processes, etcd), stopped in reverse at the run's end so
 * the next run starts clean; the bench's own cleanup closes it too if the run fails or is interrupted.
 */
export class Scope implements Teardown {
  private readonly steps: CleanupStep[] = [];

  constructor() {
    onCleanup(() => this.close());
  }

  add(step: CleanupStep): void {
    this.steps.push(step);
  }

  teardown(step: CleanupStep): void {
    this.add(step);
  }

  close(): Promise<void> {
    return runSteps(this.steps, 'bench run cleanup');
  }
}

/**
 * Runs a bench's main: whatever it started is cleaned up when it ends, fails, or is interrupted
 * (SIGINT, SIGTERM), and a failure sets exit status 1 with the reason.
 */
export function runBench(name: string, main: () => Promise<void>): void {
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      process.stderr.write(`\n${name}: ${signal}, cleaning up\n`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  main()
    .catch((err: unknown) => {
      if (interrupted) return new Promise(() => undefined); // the signal handler exits
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanupAll());
}
