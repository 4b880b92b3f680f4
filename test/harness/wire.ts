// Protocol messages built by hand for tests: a type byte, a length, a body.

/** One message of `type` ('Q', 'Z', ...) with `body` (text is UTF-8). */
export function message(type: string, body: Uint8Array | string = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  out.set(b, 5);
  return out;
}

export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}
