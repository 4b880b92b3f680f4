// The reliability scenarios of reliability-switchover.test.ts again, with every pgfloat relaying on two worker processes (proxy.workers: 2).

process.env.PGFLOAT_TEST_WORKERS = '2';
require('./reliability-switchover.test');
