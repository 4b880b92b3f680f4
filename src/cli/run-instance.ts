// Runs a pgfloat instance in the foreground until SIGINT/SIGTERM, then stops it cleanly.

import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { Pgfloat } from '../runtime/pgfloat';

export async function runUntilSignal(
  config: Config,
  log: Logger,
  onStarted?: (instance: Pgfloat) => void,
  onStopped?: () => Promise<void>,
): Promise<void> {
  const instance = new Pgfloat(config, log);
  await instance.start();
  onStarted?.(instance);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      instance
        .stop()
        .then(() => onStopped?.())
        .catch((err: Error) => log.error({ err: err.message }, 'error while stopping'))
        .finally(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
