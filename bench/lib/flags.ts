// A bench's command-line flags, declared once with their defaults and checked: `--drain-ms 5000` becomes `drainMs: 5000`.

import { parseArgs } from 'node:util';

interface IntegerFlag { kind: 'integer'; default: number; min: number }
interface OptionalIntegerFlag { kind: 'optional-integer'; min: number }
interface NumberFlag { kind: 'number'; default: number; min: number }
interface TextFlag { kind: 'text'; default: string }
interface Switch { kind: 'switch' }
type FlagSpec = IntegerFlag | OptionalIntegerFlag | NumberFlag | TextFlag | Switch;

export const integer = (defaultValue: number, min: number): IntegerFlag => ({ kind: 'integer', default: defaultValue, min });
/** An integer with no default: undefined unless given. */
export const optionalInteger = (min: number): OptionalIntegerFlag => ({ kind: 'optional-integer', min });
export const decimal = (defaultValue: number, min: number): NumberFlag => ({ kind: 'number', default: defaultValue, min });
export const text = (defaultValue: string): TextFlag => ({ kind: 'text', default: defaultValue });
/** A boolean flag, off unless given. */
export const toggle = (): Switch => ({ kind: 'switch' });

type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;
type ValueOf<F extends FlagSpec> = F extends TextFlag ? string : F extends Switch ? boolean : F extends OptionalIntegerFlag ? number | undefined : number;

/** Where the results go; every bench takes these two (see run-output.ts for the defaults). */
export interface OutputFlags {
  /** The raw results (every sample and log line kept). */
  out: string | undefined;
  /** The small summary, tables included. */
  summary: string | undefined;
}

export type Flags<S extends Record<string, FlagSpec>> = { [K in keyof S & string as CamelCase<K>]: ValueOf<S[K]> } & OutputFlags;

const camelCase = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function valueOf(name: string, spec: FlagSpec, given: string | boolean | undefined): string | number | boolean | undefined {
  if (spec.kind === 'switch') return given === true;
  if (spec.kind === 'text') return typeof given === 'string' ? given : spec.default;
  if (given === undefined) return spec.kind === 'optional-integer' ? undefined : spec.default;
  const value = Number(given);
  const integerOnly = spec.kind !== 'number';
  if (!(integerOnly ? Number.isInteger(value) : Number.isFinite(value)) || value < spec.min) {
    throw new Error(`--${name} must be ${integerOnly ? 'an integer' : 'a number'} >= ${spec.min}, got ${String(given)}`);
  }
  return value;
}

/** Parses process.argv; an unknown flag or a bad value throws with the flag's name. */
export function readFlags<S extends Record<string, FlagSpec>>(specs: S): Flags<S> {
  const options = Object.fromEntries(Object.entries(specs).map(([name, spec]) => [name, { type: spec.kind === 'switch' ? ('boolean' as const) : ('string' as const) }]));
  const values: Record<string, string | boolean | undefined> = parseArgs({ options: { ...options, out: { type: 'string' }, summary: { type: 'string' } } }).values;
  const flags: Record<string, unknown> = { out: values.out, summary: values.summary };
  for (const [name, spec] of Object.entries(specs)) flags[camelCase(name)] = valueOf(name, spec, values[name]);
  return flags as Flags<S>;
}
