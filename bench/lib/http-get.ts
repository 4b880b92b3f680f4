// GETs from pgfloat's admin API and the V8 inspector, each over a connection of its own.

import { get } from 'node:http';

/**
 * GET over a connection of its own, closed after the answer (fetch would keep it alive for a few
 * seconds): a kept-alive admin connection would show up as one more open fd in pgfloat.
 */
export function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

export async function getJson<T>(url: string): Promise<T> {
  return JSON.parse(await getText(url)) as T;
}
