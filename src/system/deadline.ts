// One time budget shared by every step of a long operation (a rejoin, a start).

export class Deadline {
  private readonly end: number;

  constructor(
    readonly timeoutMs: number,
    private readonly what: string,
  ) {
    this.end = Date.now() + timeoutMs;
  }

  /** Milliseconds left; throws once the budget is spent, naming the step that could not start. */
  remaining(step: string): number {
    const left = this.end - Date.now();
    if (left <= 0) throw new Error(`${this.what} ran out of its ${this.timeoutMs} ms before ${step}`);
    return left;
  }

  expired(): boolean {
    return Date.now() >= this.end;
  }
}
