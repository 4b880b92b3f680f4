// package.json names files that exist after the build: the embedding entry point and the command.

import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string; bin: Record<string, string> };

t.test('main loads and exports the embedding API', async (t) => {
  t.ok(existsSync(join(root, pkg.main)), `${pkg.main} exists`);
  const entry = (await import(join(root, pkg.main))) as Record<string, unknown>;
  for (const name of ['Pgfloat', 'loadConfigFile', 'parseConfigObject', 'createLogger']) t.type(entry[name], 'function', `exports ${name}`);
});

t.test('every bin exists', async (t) => {
  for (const [name, file] of Object.entries(pkg.bin)) t.ok(existsSync(join(root, file)), `${name}: ${file}`);
});
