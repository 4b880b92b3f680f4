// WAL positions (LSNs) as PostgreSQL prints them, and the distance between two of them.

/** LSNs are "XXXXXXXX/XXXXXXXX": the high and low 32 bits in hex. */
export function lsnToBigInt(lsn: string): bigint {
  const slash = lsn.indexOf('/');
  if (slash === -1) throw new Error(`invalid LSN "${lsn}"`);
  return (BigInt(`0x${lsn.slice(0, slash)}`) << 32n) | BigInt(`0x${lsn.slice(slash + 1)}`);
}

/** Bytes `behind` trails `ahead`, never negative; undefined when either position is unknown. */
export function lagBytes(ahead: string | undefined, behind: string | undefined): number | undefined {
  if (ahead === undefined || behind === undefined) return undefined;
  const diff = lsnToBigInt(ahead) - lsnToBigInt(behind);
  return diff > 0n ? Number(diff) : 0;
}
