// `pgfloat archive-wal` and `pgfloat restore-wal`: archive_command and restore_command for a shared WAL archive.

import type { Command } from 'commander';
import { archiveWal, restoreWal } from '../archive/wal-archive';

/** Any status from 1 to 125 is an ordinary failure to PostgreSQL; above 125 it restarts the archiver or aborts recovery. */
const EXIT_WAL_FAILURE = 1;

/** PostgreSQL copies our stderr into its log, where one line per failure stays readable. */
function fail(command: string, message: string): void {
  process.stderr.write(`pgfloat ${command}: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exitCode = EXIT_WAL_FAILURE;
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function registerWalCommands(program: Command): void {
  program
    .command('archive-wal <path> <file>')
    .description('archive_command: copy a WAL file into a shared archive, never overwriting (archive-wal %p %f --to DIR)')
    .requiredOption('--to <dir>', 'the archive directory')
    .option('-v, --verbose', 'say what was done on success')
    .action(async (path: string, file: string, opts: { to: string; verbose?: boolean }) => {
      try {
        const result = await archiveWal(path, file, opts.to);
        if (opts.verbose) process.stdout.write(`${result.message}\n`);
      } catch (err) {
        fail('archive-wal', errorMessage(err));
      }
    });

  program
    .command('restore-wal <file> <path>')
    .description('restore_command: copy a WAL file out of the archive, exit 1 if absent (restore-wal %f %p --from DIR)')
    .requiredOption('--from <dir>', 'the archive directory')
    .option('-v, --verbose', 'say what was done on success')
    .action(async (file: string, path: string, opts: { from: string; verbose?: boolean }) => {
      try {
        const outcome = await restoreWal(file, path, opts.from);
        // PostgreSQL asks for files that were never archived as a matter of course: a short line, no alarm.
        if (outcome === 'missing') return fail('restore-wal', `${file} is not in the archive ${opts.from}`);
        if (opts.verbose) process.stdout.write(`restored ${file} to ${path}\n`);
      } catch (err) {
        fail('restore-wal', errorMessage(err));
      }
    });
}
