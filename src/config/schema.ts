// The configuration file's schema: every key, its type and its default (README "Configuration" mirrors it).

import { resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { SERVER_TLS_MODES } from '../cluster/node';
import { parseAddress, type ListenAddress } from './address';
import { serverTlsPolicy } from './nodes';

const address = z.union([z.string(), z.number().int()]).transform((value, ctx): ListenAddress => {
  const parsed = parseAddress(String(value));
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed });
    return z.NEVER;
  }
  return parsed;
});

const positiveMs = z.number().int().positive();
const nodeName = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,63}$/, 'node names use letters, digits, "_", "." and "-" (at most 63)');

const serverTlsMode = z.enum(SERVER_TLS_MODES);

/** TLS from pgfloat to the servers, with libpq's sslmode meanings; files are PEM. */
const serverTlsFields = {
  mode: serverTlsMode,
  /** Trusted CAs for verify-ca / verify-full (and require, as libpq does when a root file is given); the system's when null. */
  ca: z.string().min(1).nullable(),
  /** A client certificate and its key, for servers that ask for one (pg_hba `cert`, clientcert=verify-*). */
  cert: z.string().min(1).nullable(),
  key: z.string().min(1).nullable(),
};

const bothOrNeither = (t: { cert?: string | null; key?: string | null }): boolean => (t.cert == null) === (t.key == null);

const serverTls = z
  .object({
    mode: serverTlsFields.mode.default('prefer'),
    ca: serverTlsFields.ca.default(null),
    cert: serverTlsFields.cert.default(null),
    key: serverTlsFields.key.default(null),
  })
  .strict()
  .refine(bothOrNeither, { message: 'serverTls needs both cert and key, or neither', path: ['key'] });

/** A node's own serverTls: the keys it sets replace the top-level ones. */
const nodeServerTls = z
  .object({
    mode: serverTlsFields.mode.optional(),
    ca: serverTlsFields.ca.optional(),
    cert: serverTlsFields.cert.optional(),
    key: serverTlsFields.key.optional(),
  })
  .strict()
  .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'a node\'s serverTls sets cert and key together, or neither', path: ['key'] });

const node = z
  .object({
    name: nodeName,
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(5432),
    /** false for a reporting server: it serves read-only clients but is never promoted. */
    promotable: z.boolean().default(true),
    serverTls: nodeServerTls.nullable().default(null),
    /** Set when pgfloat runs on the node's host: it can then stop, start and rejoin it itself. */
    // Relative to pgfloat's working directory; the tools it runs for the node start elsewhere.
    dataDir: z
      .string()
      .min(1)
      .transform((dir) => resolvePath(dir))
      .nullable()
      .default(null),
    /** Shell hooks for a node on another host (environment: PGFLOAT_NODE_NAME, _HOST, _PORT, _DATA_DIR, PGFLOAT_PRIMARY_HOST, _PORT, PGFLOAT_REBUILD). */
    commands: z
      .object({
        stop: z.string().min(1).nullable().default(null),
        start: z.string().min(1).nullable().default(null),
        rejoin: z.string().min(1).nullable().default(null),
      })
      .strict()
      .default({}),
  })
  .strict();

const pattern = z.string().min(1);

const routingRule = z
  .object({
    user: pattern.optional(),
    database: pattern.optional(),
    applicationName: pattern.optional(),
    route: z.enum(['readWrite', 'readOnly']),
  })
  .strict()
  .refine((rule) => rule.user ?? rule.database ?? rule.applicationName, {
    message: 'a rule needs at least one of user, database, applicationName',
  });

const etcdStore = z
  .object({
    endpoints: z.array(z.string().url('an etcd endpoint is a URL, like http://10.0.0.5:2379')).min(1, 'at least one etcd endpoint is required'),
    /** Every key pgfloat writes starts with it: one prefix per PostgreSQL cluster. */
    prefix: z
      .string()
      .regex(/^\/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$/, 'a prefix is a path like /pgfloat/main')
      .default('/pgfloat/default'),
    /** This instance's name among the others; the host name when null. */
    instance: nodeName.nullable().default(null),
    /**
     * An instance that cannot renew its lease for this long is dead to the others: it stops
     * routing writes, and they stop waiting for it. Also how long a killed decider delays a failover.
     */
    leaseTtlSeconds: z.number().int().min(2).max(60).default(3),
    username: z.string().min(1).nullable().default(null),
    /** When empty, PGFLOAT_ETCD_PASSWORD. */
    password: z.string().default(''),
    tls: z
      .object({
        ca: z.string().min(1).nullable().default(null),
        cert: z.string().min(1).nullable().default(null),
        key: z.string().min(1).nullable().default(null),
      })
      .strict()
      .refine((t) => (t.cert === null) === (t.key === null), { message: 'state.etcd.tls needs both cert and key, or neither', path: ['key'] })
      .nullable()
      .default(null),
  })
  .strict();

export const configSchema = z
  .object({
    listen: z
      .object({
        readWrite: address.default('127.0.0.1:6432'),
        readOnly: address.nullable().default('127.0.0.1:6433'),
      })
      .strict()
      .default({}),
    admin: z
      .object({
        listen: address.nullable().default('127.0.0.1:8008'),
        token: z.string().min(16, 'use at least 16 characters').nullable().default(null),
      })
      .strict()
      .default({}),
    nodes: z
      .array(node)
      .min(1, 'at least one node is required')
      .superRefine((nodes, ctx) => {
        const seen = new Set<string>();
        nodes.forEach((n, index) => {
          if (seen.has(n.name)) {
            ctx.addIssue({ code: z.ZodIssueCode.custom, path: [index, 'name'], message: `duplicate node name "${n.name}"` });
          }
          seen.add(n.name);
        });
      }),
    monitor: z
      .object({
        user: z.string().min(1).default('postgres'),
        password: z.string().default(''),
        database: z.string().min(1).default('postgres'),
        intervalMs: positiveMs.default(500),
        timeoutMs: positiveMs.default(1000),
        failuresBeforeDown: z.number().int().min(1).default(3),
      })
      .strict()
      .default({}),
    state: z
      .object({
        /** file: one instance, state in `dir`. etcd: several instances agreeing through etcd. */
        store: z.enum(['file', 'etcd']).default('file'),
        dir: z.string().min(1).default('./.pgfloat/state'),
        etcd: etcdStore.nullable().default(null),
      })
      .strict()
      .refine((s) => s.store !== 'etcd' || s.etcd !== null, { message: 'state.store "etcd" needs a state.etcd section', path: ['etcd'] })
      .default({}),
    readOnly: z
      .object({
        fallbackToPrimary: z.boolean().default(true),
        maxLagBytes: z.number().int().nonnegative().nullable().default(null),
      })
      .strict()
      .default({}),
    routing: z
      .object({
        rules: z.array(routingRule).default([]),
      })
      .strict()
      .default({}),
    /** TLS toward clients; the files are read again on SIGHUP and POST /reload. */
    tls: z
      .object({
        cert: z.string().min(1),
        key: z.string().min(1),
        /** Trusted CAs for client certificates (PEM). */
        ca: z.string().min(1).nullable().default(null),
        /** none: not asked for. verify: asked for, and one presented must verify against ca. require: a client without a valid one fails its handshake. */
        clientCertificates: z.enum(['none', 'verify', 'require']).default('none'),
      })
      .strict()
      .refine((t) => t.clientCertificates === 'none' || t.ca !== null, {
        message: 'tls.clientCertificates verify and require need a CA file (tls.ca) to check client certificates against',
        path: ['ca'],
      })
      .nullable()
      .default(null),
    serverTls: serverTls.default({}),
    proxy: z
      .object({
        startupTimeoutMs: positiveMs.default(10_000),
        connectTimeoutMs: positiveMs.default(5_000),
        maxClientConnections: z.number().int().positive().default(10_000),
        keepaliveIdleMs: positiveMs.default(30_000),
        busyPollUs: z.number().int().min(0).max(10_000).default(0),
        /** Relay event loops: 1 relays in the control process; more fork worker processes. auto: see workers/worker-count.ts. */
        workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
      })
      .strict()
      .default({}),
    failover: z
      .object({
        enabled: z.boolean().default(true),
        requireStandbyConfirmation: z.boolean().default(true),
        standbyConfirmationMs: positiveMs.default(3000),
        maxLagBytes: z.number().int().nonnegative().default(1024 * 1024),
        holdMs: positiveMs.default(10_000),
        promoteTimeoutMs: positiveMs.default(10_000),
        retryIntervalMs: positiveMs.default(5_000),
        /**
         * With synchronous_standby_names set, keep it on a new primary that has no standby yet
         * (writes wait until one streams) instead of lifting it until one does.
         */
        keepSynchronousWhenAlone: z.boolean().default(false),
      })
      .strict()
      .default({}),
    switchover: z
      .object({
        /** Sessions on the old primary get this long to reach a transaction boundary. */
        drainMs: z.number().int().nonnegative().default(5_000),
        /** Refuse a switchover to a standby further behind than this. */
        maxLagBytes: z.number().int().nonnegative().default(16 * 1024 * 1024),
        /** The standby must replay the old primary's last WAL within this, or the switchover rolls back. */
        catchUpTimeoutMs: positiveMs.default(10_000),
      })
      .strict()
      .default({}),
    sessions: z
      .object({
        /**
         * A session leaving a switched-over (or fenced) primary at a transaction boundary moves to
         * the new primary, with its settings and prepared statements, instead of being closed.
         */
        move: z.boolean().default(true),
        /** Returns the role's pg_authid.rolpassword for $1 (a SCRAM verifier or md5 hash); run as monitor.user. */
        authQuery: z.string().min(1).default('SELECT rolpassword FROM pg_authid WHERE rolname = $1'),
        /** Each step of a move (reading the state, logging in, restoring) must answer within this. */
        moveTimeoutMs: positiveMs.default(5_000),
      })
      .strict()
      .default({}),
    management: z
      .object({
        /** PostgreSQL binaries for managed nodes (pg_ctl, pg_rewind, pg_basebackup); found like the sandbox's when null. */
        binDir: z.string().min(1).nullable().default(null),
        /** Role for pg_rewind, pg_basebackup and primary_conninfo; monitor.user when null. */
        replicationUser: z.string().min(1).nullable().default(null),
        /** Its password; when empty, PGFLOAT_REPLICATION_PASSWORD, else monitor.password. */
        replicationPassword: z.string().default(''),
        /** A rejoin (rewind or rebuild, then catching up) must finish within this. */
        rejoinTimeoutMs: positiveMs.default(30 * 60_000),
      })
      .strict()
      .default({}),
    fencing: z
      .object({
        action: z.enum(['none', 'sql', 'command']).default('sql'),
        command: z.string().min(1).nullable().default(null),
        timeoutMs: positiveMs.default(10_000),
      })
      .strict()
      .refine((f) => f.action !== 'command' || f.command !== null, {
        message: 'fencing.action "command" needs fencing.command',
        path: ['command'],
      })
      .default({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
      })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    // libpq 15 (the tools pgfloat runs) has no system CA store: verification needs a root file.
    const verifies = (mode: string | undefined): boolean => mode === 'verify-ca' || mode === 'verify-full';
    config.nodes.forEach((n, index) => {
      const { mode, ca } = serverTlsPolicy(config, n);
      if (verifies(mode) && ca === null) {
        const own = n.serverTls ?? {};
        const path = own.mode !== undefined || own.ca !== undefined ? ['nodes', index, 'serverTls', 'ca'] : ['serverTls', 'ca'];
        ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `serverTls.mode ${mode} needs a CA file (ca) to verify ${n.name}'s certificate against` });
      }
    });
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type NodeConfig = Config['nodes'][number];
export type ServerTlsConfig = Config['serverTls'];
export type RoutingRule = Config['routing']['rules'][number];
