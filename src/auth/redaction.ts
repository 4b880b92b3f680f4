// Keeps login secrets out of logs: util.inspect and JSON (what pino writes) see "[redacted]" in their place.

import { inspect, type InspectOptionsStylized } from 'node:util';

export const REDACTED = '[redacted]';

/**
 * A maker of records that look and compare like plain objects but whose inspect and JSON forms
 * replace `secretFields`. Those two live on the prototype, not on each object: pino's redaction
 * copies the objects it walks through (keeping their prototype, dropping non-enumerable and
 * symbol-keyed properties), and a copy must still redact. A structured clone (to a worker thread)
 * keeps only the fields: make the record again on the other side.
 */
export function redactingRecord<T extends object>(secretFields: ReadonlyArray<keyof T & string>): (fields: T) => T {
  const secrets: readonly string[] = secretFields;
  const view = (record: object): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(record)) out[key] = secrets.includes(key) ? REDACTED : field;
    return out;
  };
  class Redacted {
    constructor(fields: T) {
      Object.assign(this, fields);
    }

    toJSON(): Record<string, unknown> {
      return view(this);
    }

    [inspect.custom](_depth: number, options: InspectOptionsStylized, inspectFn: typeof inspect): string {
      return inspectFn(view(this), options);
    }
  }
  return (fields) => new Redacted(fields) as unknown as T;
}

/** For classes holding secrets: their inspect form is a chosen summary, under the class's name. */
export function inspectSummary(name: string, summary: Record<string, unknown>, options: InspectOptionsStylized, inspectFn: typeof inspect): string {
  return `${name} ${inspectFn(summary, options)}`;
}
