// RoutingRules: glob patterns on user, database and application_name; first match wins.

import t from 'tap';
import type { RoutingRule } from '../../src/config/schema';
import { globToRegExp, RoutingRules, type StartupIdentity } from '../../src/routing/rules';

function who(user: string, database = 'app', applicationName = ''): StartupIdentity {
  return { user, database, applicationName };
}

t.test('glob patterns: * and ?', async (t) => {
  const rules = new RoutingRules([{ applicationName: 'metabase*', route: 'readOnly' }]);
  t.equal(rules.resolve('readWrite', who('u', 'db', 'metabase')), 'readOnly', '* matches the empty run');
  t.equal(rules.resolve('readWrite', who('u', 'db', 'metabase v0.50 (pool 3)')), 'readOnly');
  t.equal(rules.resolve('readWrite', who('u', 'db', 'my-metabase')), 'readWrite', 'anchored at the start');
  t.equal(rules.resolve('readWrite', who('u', 'db', 'Metabase')), 'readWrite', 'case-sensitive');

  const q = new RoutingRules([{ user: 'report_?', route: 'readOnly' }]);
  t.equal(q.resolve('readWrite', who('report_1')), 'readOnly');
  t.equal(q.resolve('readWrite', who('report_')), 'readWrite', '? needs one character');
  t.equal(q.resolve('readWrite', who('report_12')), 'readWrite', '? is exactly one character');

  const middle = new RoutingRules([{ database: '*_archive_*', route: 'readOnly' }]);
  t.equal(middle.resolve('readWrite', who('u', 'sales_archive_2023')), 'readOnly');
  t.equal(middle.resolve('readWrite', who('u', 'sales_archive')), 'readWrite', 'anchored at the end');

  const exact = new RoutingRules([{ user: 'reporting', route: 'readOnly' }]);
  t.equal(exact.resolve('readWrite', who('reporting')), 'readOnly');
  t.equal(exact.resolve('readWrite', who('reporting2')), 'readWrite', 'no pattern: whole-string match');
  t.equal(exact.resolve('readWrite', who('xreporting')), 'readWrite');
});

t.test('first match wins', async (t) => {
  const rules = new RoutingRules([
    { user: 'admin', route: 'readWrite' },
    { user: 'a*', route: 'readOnly' },
    { user: '*', route: 'readWrite' },
  ]);
  t.equal(rules.resolve('readOnly', who('admin')), 'readWrite', 'the first rule, though the second matches too');
  t.equal(rules.resolve('readWrite', who('alice')), 'readOnly', 'the second rule');
  t.equal(rules.resolve('readOnly', who('bob')), 'readWrite', 'the catch-all');
  // Reversed order, reversed outcome.
  const reversed = new RoutingRules([
    { user: 'a*', route: 'readOnly' },
    { user: 'admin', route: 'readWrite' },
  ]);
  t.equal(reversed.resolve('readWrite', who('admin')), 'readOnly');
});

t.test('fields of one rule combine with AND', async (t) => {
  const rules = new RoutingRules([{ user: 'analyst', database: 'warehouse', applicationName: 'tableau*', route: 'readOnly' }]);
  t.equal(rules.resolve('readWrite', who('analyst', 'warehouse', 'tableau 2024')), 'readOnly', 'all three match');
  t.equal(rules.resolve('readWrite', who('other', 'warehouse', 'tableau 2024')), 'readWrite', 'user differs');
  t.equal(rules.resolve('readWrite', who('analyst', 'sales', 'tableau 2024')), 'readWrite', 'database differs');
  t.equal(rules.resolve('readWrite', who('analyst', 'warehouse', 'psql')), 'readWrite', 'application differs');
  // Absent fields match anything, including the empty string.
  const two = new RoutingRules([{ user: 'analyst', database: 'warehouse', route: 'readOnly' }]);
  t.equal(two.resolve('readWrite', who('analyst', 'warehouse', '')), 'readOnly');
  t.equal(two.resolve('readWrite', who('analyst', 'warehouse', 'anything at all')), 'readOnly');
});

t.test('no rule matches: the listener kind', async (t) => {
  const rules = new RoutingRules([{ user: 'reporting', route: 'readOnly' }]);
  t.equal(rules.resolve('readWrite', who('app')), 'readWrite');
  t.equal(rules.resolve('readOnly', who('app')), 'readOnly');
  const none = new RoutingRules([]);
  t.equal(none.resolve('readWrite', who('reporting')), 'readWrite');
  t.equal(none.resolve('readOnly', who('reporting')), 'readOnly');
  // A rule can send read-only-port clients to the primary.
  const toPrimary = new RoutingRules([{ user: 'etl', route: 'readWrite' }]);
  t.equal(toPrimary.resolve('readOnly', who('etl')), 'readWrite');
});

t.test('regex special characters in patterns are literal', async (t) => {
  const literal: Array<[string, string, string]> = [
    // [pattern, matching value, non-matching value that a regex reading would accept]
    ['app.v1', 'app.v1', 'appXv1'],
    ['a+b', 'a+b', 'aab'],
    ['(x)', '(x)', 'x'],
    ['[abc]', '[abc]', 'a'],
    ['^start', '^start', 'start'],
    ['end$', 'end$', 'end'],
    ['a|b', 'a|b', 'a'],
    ['x{2}', 'x{2}', 'xx'],
    ['c:\\dir', 'c:\\dir', 'c:9ir'],
    ['a\\*', 'a\\anything', 'a*'],
    ['$1.00 (USD)', '$1.00 (USD)', '$1X00 (USD)'],
  ];
  for (const [pattern, yes, no] of literal) {
    const rules = new RoutingRules([{ applicationName: pattern, route: 'readOnly' } as RoutingRule]);
    t.equal(rules.resolve('readWrite', who('u', 'db', yes)), 'readOnly', `${pattern} matches ${yes}`);
    t.equal(rules.resolve('readWrite', who('u', 'db', no)), 'readWrite', `${pattern} does not match ${no}`);
  }
  // Globs still work next to escaped characters.
  const mixed = globToRegExp('v1.?-(*)');
  t.ok(mixed.test('v1.2-(beta)'));
  t.notOk(mixed.test('v1x2-(beta)'));
  t.notOk(mixed.test('v1.2-beta'));
});
