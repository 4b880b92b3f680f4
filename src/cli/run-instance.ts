// Runs a pgfloat instance in the foreground until SIGINT/SIGTERM, then stops it cleanly; SIGHUP reloads its TLS files.

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
  // The outcome is logged by reload() itself; a failed reload keeps the previous files and pgfloat running.
  const reload = (): void => void instance.reload('SIGHUP').catch((err: Error) => log.error({ err: err.message }, 'reload failed'));
  process.on('SIGHUP', reload);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.removeListener('SIGHUP', reload);
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
