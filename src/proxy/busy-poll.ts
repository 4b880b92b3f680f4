// Optional busy polling: after a client message is relayed, the event loop polls instead of sleeping for a short window.

/**
 * On a mostly idle machine most of a proxied round trip is wake-up latency: the process sleeps
 * in epoll_wait and the CPU it sleeps on idles. Keeping the loop turning (setImmediate makes
 * libuv poll with a zero timeout) for a window after each client message picks the server's
 * answer up without that wake-up, at the price of CPU: one core stays busy while traffic flows.
 * Off by default, like haproxy's `busy-polling`.
 */
export class BusyPoller {
  private readonly windowNs: bigint;
  private until = 0n;
  private polling = false;

  constructor(windowUs: number) {
    this.windowNs = BigInt(Math.round(windowUs * 1000));
  }

  /** Extends the polling window from now. */
  kick(): void {
    this.until = process.hrtime.bigint() + this.windowNs;
    if (!this.polling) {
      this.polling = true;
      setImmediate(this.turn);
    }
  }

  private readonly turn = (): void => {
    if (process.hrtime.bigint() < this.until) setImmediate(this.turn);
    else this.polling = false;
  };
}
