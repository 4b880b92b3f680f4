// The layering the README describes holds: no import cycle between the folders of src/, and neither src/ nor bench/ imports test/.

import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve } from 'node:path';

const root = resolve(__dirname, '../../..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Relative imports of every .ts file under `top`, as paths from the repository root. */
function imports(top: string): Array<{ from: string; to: string }> {
  const edges: Array<{ from: string; to: string }> = [];
  for (const file of sources(join(root, top))) {
    for (const match of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      edges.push({ from: relative(root, file), to: relative(root, normalize(join(dirname(file), match[1]!))) });
    }
  }
  return edges;
}

t.test('no import cycle between the folders of src/', async (t) => {
  const graph = new Map<string, Set<string>>();
  const folder = (path: string): string => path.split('/')[1]!.replace(/\.ts$/, '');
  for (const { from, to } of imports('src')) {
    if (folder(from) === folder(to)) continue;
    if (!graph.has(folder(from))) graph.set(folder(from), new Set());
    graph.get(folder(from))!.add(folder(to));
  }
  t.ok(graph.size >= 10, `${graph.size} folders import others`);
  for (const start of graph.keys()) {
    const seen = new Set<string>();
    const stack = [...(graph.get(start) ?? [])].map((next) => [start, next]);
    while (stack.length > 0) {
      const path = stack.pop()!;
      const at = path.at(-1)!;
      if (at === start) {
        t.fail(`import cycle: ${path.join(' -> ')}`);
        break;
      }
      if (seen.has(at)) continue;
      seen.add(at);
      for (const next of graph.get(at) ?? []) stack.push([...path, next]);
    }
  }
});

t.test('src/ and bench/ import nothing under test/', async (t) => {
  const edges = [...imports('src'), ...imports('bench')];
  t.ok(edges.length > 100, `${edges.length} imports read`);
  t.same(
    edges.filter((e) => e.to.startsWith('test/')).map((e) => `${e.from} -> ${e.to}`),
    [],
  );
});
