// Entry point of a relay worker process, forked by the control process (proxy.workers > 1).

import { runRelayWorker } from './relay-worker';

runRelayWorker();
