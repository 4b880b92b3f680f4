// The open-files budget: how many client sessions pgfloat takes before the descriptors would run out.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openFilesLimit, RESERVED_DESCRIPTORS, sessionsWithinLimit } from '../../src/proxy/fd-budget';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

t.test('reads the soft limit from a /proc limits file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-fd-budget-'));
  const file = join(dir, 'limits');
  writeFileSync(file, LIMITS);
  t.equal(openFilesLimit(file), 1024);
  writeFileSync(file, LIMITS.replace('1024                 524288', 'unlimited            unlimited'));
  t.equal(openFilesLimit(file), undefined, 'unlimited: no budget');
  t.equal(openFilesLimit(join(dir, 'missing')), undefined, 'no /proc: no budget');
});

t.test('two descriptors per session after the reserve', async (t) => {
  t.equal(sessionsWithinLimit(1024), Math.floor((1024 - RESERVED_DESCRIPTORS) / 2));
  t.equal(sessionsWithinLimit(20_000), 9950);
  t.equal(sessionsWithinLimit(50), 1, 'never zero');
});

t.test("this process's own limit is readable on Linux", { skip: process.platform !== 'linux' }, async (t) => {
  t.type(openFilesLimit(), 'number');
});
