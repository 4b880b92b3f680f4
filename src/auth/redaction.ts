// Keeps login secrets out of logs: util.inspect and JSON (pino serializes with toJSON) see "[redacted]" in their place.

import { inspect, type InspectOptionsStylized } from 'node:util';

export const REDACTED = '[redacted]';

type CustomInspect = (depth: number, options: InspectOptionsStylized, inspectFn: typeof inspect) => string;

/**
 * Gives a plain object an inspect and a JSON form with `secretFields` replaced. Both are
 * non-enumerable so the object stays plain for spreading, deep equality and structured clone (a
 * clone sent to a worker thread loses them: redact it again there).
 */
export function redactFields<T extends object>(value: T, secretFields: ReadonlyArray<keyof T & string>): T {
  const view = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) out[key] = (secretFields as readonly string[]).includes(key) ? REDACTED : field;
    return out;
  };
  const custom: CustomInspect = (_depth, options, inspectFn) => inspectFn(view(), options);
  Object.defineProperty(value, inspect.custom, { value: custom, enumerable: false });
  Object.defineProperty(value, 'toJSON', { value: view, enumerable: false });
  return value;
}

/** For classes holding secrets: their inspect form is a chosen summary, under the class's name. */
export function inspectSummary(name: string, summary: Record<string, unknown>, options: InspectOptionsStylized, inspectFn: typeof inspect): string {
  return `${name} ${inspectFn(summary, options)}`;
}
