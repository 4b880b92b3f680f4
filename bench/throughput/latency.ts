// Times `select 1` round trips on one raw connection (the bench's wire client, so the client adds little to each).

import { queryMessage } from '../../src/protocol/client-messages';
import { WireConnection } from '../lib/wire-client';

const SELECT_1 = queryMessage('select 1');

/** Round-trip times in microseconds of `count` sequential `select 1`, after `warmup` untimed ones. */
export async function measureLatency(port: number, count: number, warmup = 1000): Promise<Float64Array> {
  const conn = await WireConnection.open(port, 'pgfloat-bench-latency', 10_000);
  const samples = new Float64Array(count);
  try {
    for (let i = -warmup; i < count; i++) {
      const started = process.hrtime.bigint();
      const { error } = await conn.query(SELECT_1);
      const elapsed = process.hrtime.bigint() - started;
      if (error) throw new Error(`server error: ${error.code} ${error.message}`);
      if (i >= 0) samples[i] = Number(elapsed) / 1000;
    }
  } finally {
    await conn.terminate();
  }
  return samples;
}
