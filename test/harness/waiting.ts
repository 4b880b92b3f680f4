// How tests wait: on state that shows a thing happened (never on log text or a sleep), and the one way to show that nothing happens for a while.

import { Client } from 'pg';

/** Polls `check` until it returns true (or throws after `timeoutMs`); for state that settles asynchronously. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface Hold {
  /** Whether `check` was true at every sample, the last one taken at the end of the window. */
  held: boolean;
  samples: number;
  /** The window, its reason and how it went, for an assertion's message. */
  summary: string;
}

/**
 * The one way a test shows that something does NOT happen: samples `check` every 100 ms for `ms`,
 * the last sample at the end of the window, and stops at the first sample where it is false. A
 * window proves nothing by itself, so `why` must say why `ms` is long enough: by when the thing
 * would have happened if it were going to (a detection time, a timer in pgfloat). Callers assert
 * on `held`; no timing is asserted.
 */
export async function holdsFor(ms: number, why: string, check: () => boolean | Promise<boolean>): Promise<Hold> {
  const started = Date.now();
  const end = started + ms;
  let samples = 0;
  for (;;) {
    const ok = await check();
    samples++;
    if (!ok) return { held: false, samples, summary: `broke ${Date.now() - started} ms into a ${ms} ms window (${why})` };
    const left = end - Date.now();
    if (left <= 0) return { held: true, samples, summary: `held for ${ms} ms, ${samples} samples (${why})` };
    await new Promise((r) => setTimeout(r, Math.min(100, left)));
  }
}

/**
 * Waits until a backend of `server` with that application_name is active, running `query` when
 * given (pg_stat_activity's text of the statement); returns its pid. One connection polls every
 * 20 ms: a short statement (a pg_sleep(0.5), say) is seen while it runs, early in its run.
 */
export async function waitForActiveQuery(server: { connectionString(): string }, applicationName: string, query?: string, timeoutMs = 30_000): Promise<number> {
  const client = new Client({ connectionString: server.connectionString(), application_name: 'pgfloat-test-watch' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    let pid = 0;
    await eventually(
      async () => {
        const { rows } = await client.query<{ pid: number }>(
          `select pid from pg_stat_activity where state = 'active' and application_name = $1 and ($2::text is null or query = $2)`,
          [applicationName, query ?? null],
        );
        pid = rows[0]?.pid ?? 0;
        return rows.length === 1;
      },
      `${query === undefined ? 'a query' : `"${query}"`} active for ${applicationName}`,
      timeoutMs,
      20,
    );
    return pid;
  } finally {
    await client.end().catch(() => undefined);
  }
}
