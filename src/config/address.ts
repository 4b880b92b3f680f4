// Parses listen addresses written as "host:port", "[v6]:port", ":port" or a bare port.

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseAddress(text: string): ListenAddress | string {
  const trimmed = text.trim();
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(trimmed);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2]!;
  } else if (/^\d+$/.test(trimmed)) {
    host = '127.0.0.1';
    portText = trimmed;
  } else {
    const colon = trimmed.lastIndexOf(':');
    if (colon === -1) return `expected host:port, got "${text}"`;
    host = trimmed.slice(0, colon) || '0.0.0.0';
    portText = trimmed.slice(colon + 1);
    if (host.includes(':')) return `IPv6 addresses must be written in brackets, e.g. [::1]:6432, got "${text}"`;
  }
  if (!/^\d+$/.test(portText)) return `port must be a number, got "${portText}" in "${text}"`;
  const port = Number(portText);
  if (port > 65535) return `port out of range (0-65535): ${port}`;
  return { host, port };
}

export function formatAddress(address: ListenAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
