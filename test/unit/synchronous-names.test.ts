// Which streaming standbys satisfy a synchronous_standby_names value (when pgfloat may put a lifted one back).
import t from 'tap';
import { coversEnough } from '../../src/runtime/synchronous-guard';

t.test('plain lists and *', async (t) => {
  t.ok(coversEnough('*', ['n1']), '* matches any standby');
  t.notOk(coversEnough('*', []), 'but not none');
  t.ok(coversEnough('n1, n2', ['n2']), 'a list needs one of them');
  t.notOk(coversEnough('n1, n2', ['n3']), 'others do not count');
  t.ok(coversEnough('N1', ['n1']), 'unquoted names compare case-insensitively');
  t.notOk(coversEnough('"N1"', ['n1']), 'quoted names exactly');
  t.ok(coversEnough('"n1"', ['n1']));
});

t.test('FIRST n and ANY n', async (t) => {
  t.notOk(coversEnough('FIRST 2 (n1, n2, n3)', ['n1']), 'FIRST 2 needs two');
  t.ok(coversEnough('FIRST 2 (n1, n2, n3)', ['n3', 'n1']));
  t.ok(coversEnough('ANY 1 (n1, "n2")', ['n2']));
  t.ok(coversEnough('2 (n1, n2)', ['n1', 'n2']), 'the old "num (list)" form');
  t.notOk(coversEnough('any 2 (n1, n2)', ['n1']), 'keywords in any case');
});
