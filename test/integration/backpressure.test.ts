// Backpressure in both directions: a client that stops reading must stop the proxy reading from
// the server, and a server that stops reading must stop the proxy reading from the client, so
// memory stays bounded; once reading resumes, everything arrives intact.

import t from 'tap';
import { connect } from 'node:net';
import { once } from 'node:events';
import { MessageScanner } from '../../src/protocol/message-scanner';
import { startupMessage } from '../../src/protocol/startup';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { simpleQuery as query } from '../harness/clients';
import { holdsFor } from '../harness/waiting';

const ROWS = 50_000;
const WIDTH = 1000;
const TOTAL = ROWS * WIDTH; // payload bytes alone; the wire carries more

function copyData(payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header[0] = 0x64; // 'd'
  header.writeInt32BE(4 + payload.length, 1);
  return Buffer.concat([header, payload]);
}

/** Polls a counter until it is above `floor` and stays put for 300 ms; returns the value. */
async function plateau(sampleOf: () => Promise<number>, floor: number, what: string): Promise<number> {
  let current = 0;
  await eventually(async () => {
    current = await sampleOf();
    if (current <= floor) return false;
    const value = current;
    const still = await holdsFor(300, 'while one side reads, the proxy relays within milliseconds: a counter still for 300 ms has stalled', async () => (await sampleOf()) === value);
    return still.held;
  }, what);
  return current;
}

t.test('backpressure', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const counter = async (direction: string): Promise<number> => {
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    return Number(new RegExp(`pgfloat_relayed_bytes_total\\{direction="${direction}"\\} (\\d+)`).exec(metrics)?.[1] ?? NaN);
  };

  t.test('from a slow client', async (t) => {
    const relayed = (): Promise<number> => counter('server_to_client');

    const socket = connect({ host: '127.0.0.1', port: proxy.readWritePort });
    t.teardown(() => socket.destroy());
    await once(socket, 'connect');
    let rows = 0;
    let intact = true;
    let readyCount = 0;
    let complete = '';
    let errorSeen = false;
    const scanner = new MessageScanner(new Set([0x44, 0x43, 0x5a, 0x45]), (type, body) => {
      if (type === 0x44) {
        rows++;
        // One column: Int16 count, Int32 length, then the value.
        if (body.readInt16BE(0) !== 1 || body.readInt32BE(2) !== WIDTH || body[6] !== 0x78 || body[body.length - 1] !== 0x78) intact = false;
      } else if (type === 0x43) complete = body.toString('utf8', 0, body.length - 1);
      else if (type === 0x5a) readyCount++;
      else errorSeen = true;
    }, 1 << 20);
    socket.on('data', (chunk: Buffer) => scanner.push(chunk));
    socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await eventually(() => readyCount === 1, 'the session to start');

    const before = await relayed();
    socket.pause();
    socket.write(query(`select repeat('x', ${WIDTH}) from generate_series(1, ${ROWS})`));
    const current = await plateau(relayed, before, 'relaying to stall while the client does not read');
    t.ok(current - before < TOTAL / 2, 'while the client is paused, the proxy holds back most of the result', {
      relayedWhilePaused: current - before,
      total: TOTAL,
    });

    socket.resume();
    await eventually(() => readyCount === 2 || errorSeen, 'the query to complete');
    t.notOk(errorSeen, 'no error');
    t.equal(complete, `SELECT ${ROWS}`);
    t.equal(rows, ROWS, 'every row arrived');
    t.ok(intact, 'every row is intact');
    t.ok((await relayed()) - before > TOTAL, 'the whole result was relayed in the end');
  });

  t.test('from a slow server', async (t) => {
    const relayed = (): Promise<number> => counter('client_to_server');
    const socket = connect({ host: '127.0.0.1', port: proxy.readWritePort });
    t.teardown(() => socket.destroy());
    await once(socket, 'connect');
    let backendPid = 0;
    let copyIn = false;
    let complete = '';
    let errorMessage = '';
    let readyCount = 0;
    const scanner = new MessageScanner(new Set([0x4b, 0x47, 0x43, 0x45, 0x5a]), (type, body) => {
      if (type === 0x4b) backendPid = body.readInt32BE(0);
      else if (type === 0x47) copyIn = true;
      else if (type === 0x43) complete = body.toString('utf8', 0, body.length - 1);
      else if (type === 0x45) errorMessage = body.toString('utf8');
      else readyCount++;
    });
    socket.on('data', (chunk: Buffer) => scanner.push(chunk));
    socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await eventually(() => readyCount === 1, 'the session to start');
    socket.write(query('create table sink (line text)'));
    await eventually(() => readyCount === 2, 'the table');
    socket.write(query('copy sink from stdin'));
    await eventually(() => copyIn, 'CopyInResponse');

    // Freeze the server backend: it stops reading its socket.
    process.kill(backendPid, 'SIGSTOP');
    let frozen = true;
    const thaw = (): void => {
      if (frozen) process.kill(backendPid, 'SIGCONT');
      frozen = false;
    };
    t.teardown(thaw);
    const before = await relayed();
    const line = Buffer.from(`${'y'.repeat(WIDTH - 1)}\n`);
    const chunk = copyData(Buffer.concat(Array.from({ length: 64 }, () => line)));
    const chunks = Math.ceil(TOTAL / (64 * WIDTH));
    const writer = (async () => {
      for (let i = 0; i < chunks; i++) {
        if (!socket.write(chunk)) await once(socket, 'drain');
      }
      socket.write(Buffer.from([0x63, 0, 0, 0, 4])); // CopyDone
    })();
    const current = await plateau(relayed, before, 'relaying to stall while the server does not read');
    t.ok(current - before < TOTAL / 2, 'while the server is frozen, the proxy holds back most of the COPY data', {
      relayedWhileFrozen: current - before,
      total: TOTAL,
    });

    thaw();
    await writer;
    await eventually(() => readyCount === 3, 'the COPY to complete');
    t.equal(errorMessage, '', 'no error');
    t.equal(complete, `COPY ${chunks * 64}`, 'every line arrived');
    t.ok((await relayed()) - before > TOTAL, 'the whole COPY was relayed in the end');
  });
});
