// What a session carries on its server that a move must take along (settings, prepared statements) or that forbids a move (temporary objects, locks, LISTEN, holdable cursors).

import { bindMessage, executeMessage, parseMessage, queryMessage, syncMessage } from '../protocol/client-messages';

/** A prepared statement as pg_prepared_statements shows it. */
export interface PreparedStatement {
  name: string;
  /** For SQL PREPARE, the whole PREPARE command; for a protocol-level Parse, the query text. */
  statement: string;
  fromSql: boolean;
  parameterTypes: number[];
}

export interface SessionState {
  /** Settings the session changed itself (pg_settings.source = 'session'), as current_setting shows them. */
  settings: Array<[name: string, value: string]>;
  /** current_setting('role'): 'none' unless SET ROLE. */
  role: string;
  sessionAuthorization: string;
  statements: PreparedStatement[];
  /** The settings a server reports to its client (ParameterStatus), by name. */
  reported: Record<string, string>;
  /** What cannot move, in words; empty when the session can. */
  unmovable: string[];
}

/**
 * The settings PostgreSQL 15 reports in ParameterStatus (GUC_REPORT). A moved session's client
 * knows their values from the old server; where the new one differs, it is told, as a server
 * would tell it after a SET.
 */
const REPORTED = [
  'application_name',
  'client_encoding',
  'DateStyle',
  'default_transaction_read_only',
  'in_hot_standby',
  'integer_datetimes',
  'IntervalStyle',
  'is_superuser',
  'server_encoding',
  'server_version',
  'session_authorization',
  'standard_conforming_strings',
  'TimeZone',
];

/**
 * One row, one text column: everything in one round trip, run on the session's own connection
 * while its client waits for nothing. Parameter types go as OIDs, which Parse takes.
 */
export const CAPTURE_SQL = `SELECT json_build_object(
  'settings', coalesce((SELECT json_agg(json_build_array(name, current_setting(name)) ORDER BY name) FROM pg_settings WHERE source = 'session'), '[]'),
  'role', current_setting('role'),
  'sessionAuthorization', current_setting('session_authorization'),
  'statements', coalesce((SELECT json_agg(json_build_array(name, statement, from_sql,
      (SELECT coalesce(array_agg(t::oid ORDER BY o), '{}') FROM unnest(parameter_types) WITH ORDINALITY AS p(t, o))) ORDER BY name)
    FROM pg_prepared_statements), '[]'),
  'temporaryObjects', (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())
    + (SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema()),
  'advisoryLocks', (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
  'listening', (SELECT count(*) FROM pg_listening_channels()),
  'holdableCursors', (SELECT count(*) FROM pg_cursors WHERE is_holdable),
  'reported', (SELECT json_object_agg(n, current_setting(n, true)) FROM unnest(ARRAY[${REPORTED.map((n) => `'${n}'`).join(', ')}]) AS n)
)::text`;

export const CAPTURE_QUERY = queryMessage(CAPTURE_SQL);

interface CaptureRow {
  settings: Array<[string, string]>;
  role: string;
  sessionAuthorization: string;
  statements: Array<[string, string, boolean, number[]]>;
  temporaryObjects: number;
  advisoryLocks: number;
  listening: number;
  holdableCursors: number;
  reported: Record<string, string | null>;
}

/** Reads the capture query's one value; throws on anything else (a different server, a changed catalog). */
export function parseCapture(text: string): SessionState {
  const row = JSON.parse(text) as CaptureRow;
  if (!Array.isArray(row.settings) || !Array.isArray(row.statements) || typeof row.role !== 'string') {
    throw new Error('unexpected answer to the session-state query');
  }
  const unmovable: string[] = [];
  const count = (n: number, what: string): void => {
    if (n > 0) unmovable.push(`${n} ${what}`);
  };
  count(row.temporaryObjects, 'temporary object(s)');
  count(row.advisoryLocks, 'session-level advisory lock(s)');
  count(row.listening, 'LISTEN channel(s)');
  count(row.holdableCursors, 'cursor(s) WITH HOLD');
  const reported: Record<string, string> = {};
  for (const [name, value] of Object.entries(row.reported ?? {})) if (value !== null) reported[name] = value;
  return {
    settings: row.settings,
    role: row.role,
    sessionAuthorization: row.sessionAuthorization,
    statements: row.statements.map(([name, statement, fromSql, parameterTypes]) => ({ name, statement, fromSql, parameterTypes })),
    reported,
    unmovable,
  };
}

const SET_CONFIG = 'SELECT set_config($1, $2, false)';

/**
 * The messages that give a fresh session `state`, in one extended-protocol batch ending in one
 * Sync, so the first error skips the rest and is the one answer to look at. Values go as
 * parameters: nothing is quoted into SQL, whatever the session's standard_conforming_strings.
 * Settings first, as the login user (some need its rights), then the session user, then the role.
 */
export function restoreMessages(state: SessionState, loginUser: string): Buffer {
  const parts: Buffer[] = [];
  const setConfig = (name: string, value: string): void => {
    parts.push(parseMessage('', SET_CONFIG), bindMessage([name, value]), executeMessage());
  };
  for (const [name, value] of state.settings) setConfig(name, value);
  if (state.sessionAuthorization !== loginUser) setConfig('session_authorization', state.sessionAuthorization);
  if (state.role !== 'none') setConfig('role', state.role);
  for (const s of state.statements) {
    if (s.fromSql) parts.push(parseMessage('', s.statement), bindMessage([]), executeMessage());
    else parts.push(parseMessage(s.name, s.statement, s.parameterTypes));
  }
  parts.push(syncMessage());
  return Buffer.concat(parts);
}

/** What differs between the state captured before the move and the one found after the restore; empty when they match. */
export function stateDifferences(before: SessionState, after: SessionState): string[] {
  const out: string[] = [];
  const settings = (s: SessionState): Map<string, string> => new Map(s.settings);
  const was = settings(before);
  const now = settings(after);
  for (const [name, value] of was) if (now.get(name) !== value) out.push(`setting ${name}: ${value} became ${now.get(name) ?? '(default)'}`);
  for (const name of now.keys()) if (!was.has(name)) out.push(`setting ${name} set only after the move`);
  if (before.role !== after.role) out.push(`role ${before.role} became ${after.role}`);
  if (before.sessionAuthorization !== after.sessionAuthorization) out.push(`session user ${before.sessionAuthorization} became ${after.sessionAuthorization}`);
  const statements = (s: SessionState): string => JSON.stringify(s.statements.map((p) => [p.name, p.statement, p.fromSql, p.parameterTypes]));
  if (statements(before) !== statements(after)) out.push('prepared statements differ');
  return out;
}

/** The reported settings whose value the client last saw differs from the new server's: what it must be told. */
export function changedReports(before: SessionState, after: SessionState): Array<[string, string]> {
  return Object.entries(after.reported).filter(([name, value]) => before.reported[name] !== value);
}
