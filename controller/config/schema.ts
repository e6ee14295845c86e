/**
 * The controller's configuration, validated once at start. Every key can be
 * overridden by BM_<SECTION>_<KEY> (see load.ts); values from the environment
 * arrive as strings, so numbers, booleans and lists are coerced here.
 */
import { z } from 'zod';
import { bootConfigSchema } from '../boot/index.ts';
import { DEFAULT_GROUP, groupName } from '../nodes/index.ts';
import { DEFAULT_SUBJECT_PREFIX, SUBJECT_PREFIX_PATTERN } from '../events/index.ts';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port');

/** A list from TOML, or a comma-separated string from the environment. */
const stringList = z.preprocess(
  (v) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0)
      : v,
  z.array(z.string()),
);

const bool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean());
const positiveInt = z.coerce.number().int().positive();

export const tokenHash = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" followed by 64 hex digits (make one with `bmctl token create`)');

export const configSchema = z
  .object({
    api: z
      .object({
        listen: hostPort.default('0.0.0.0:6385'),
        /** Hashes of the admin bearer tokens; the tokens themselves are never stored. */
        tokens: z
          .preprocess(
            (v) =>
              typeof v === 'string'
                ? v
                    .split(',')
                    .map((s) => s.trim())
                    .filter(Boolean)
                : v,
            z.array(tokenHash),
          )
          .default([]),
        /** The largest message any call takes: image upload chunks (bmctl sends 1 MiB). */
        max_message_bytes: positiveInt.default(8 * 1024 * 1024),
        /** The largest request message of every other call, checked before it is decoded. */
        max_request_bytes: positiveInt.default(512 * 1024),
        /** PEM server certificate (chain) and key; with both set the API speaks TLS only. Renewed files are picked up. */
        tls_cert: z.string().default(''),
        tls_key: z.string().default(''),
        /** PEM CA certificate agents verify the API against (served at /ca.pem on the boot port); empty: tls_cert itself (a self-signed certificate). */
        tls_ca: z.string().default(''),
        /** How often the certificate files are re-read for a renewal. */
        tls_reload_ms: positiveInt.default(10_000),
      })
      .strict()
      .superRefine((api, ctx) => {
        if ((api.tls_cert === '') !== (api.tls_key === '')) {
          const missing = api.tls_cert === '' ? 'tls_cert' : 'tls_key';
          ctx.addIssue({
            code: 'custom',
            path: [missing],
            message: 'api.tls_cert and api.tls_key go together: set both (TLS) or neither (plaintext)',
          });
        }
        if (api.tls_ca !== '' && api.tls_cert === '')
          ctx.addIssue({ code: 'custom', path: ['tls_ca'], message: 'needs api.tls_cert and api.tls_key' });
      })
      .prefault({}),
    database: z
      .object({
        url: z.string().startsWith('mysql://', 'expected a mysql:// URL').default('mysql://root@127.0.0.1:3306/bm'),
        pool_size: positiveInt.default(16),
      })
      .strict()
      .prefault({}),
    nats: z
      .object({
        url: z
          .string()
          .regex(/^nats:\/\//, 'expected a nats:// URL')
          .default('nats://127.0.0.1:4222'),
        /** First token(s) of every subject; controllers of one cluster share it, other clusters on the same NATS use their own. */
        prefix: z
          .string()
          .regex(SUBJECT_PREFIX_PATTERN, 'expected NATS subject tokens (letters, digits, "_" or "-") joined by "."')
          .default(DEFAULT_SUBJECT_PREFIX),
      })
      .strict()
      .prefault({}),
    controller: z
      .object({
        /** Stable identity in the controllers table; defaults to hostname + listen port. */
        id: z
          .string()
          .regex(/^[A-Za-z0-9._-]{0,64}$/, 'expected up to 64 letters, digits, ".", "_" or "-"')
          .default(''),
        groups: stringList.default([DEFAULT_GROUP]),
        heartbeat_interval_ms: positiveInt.default(5000),
        /** A controller whose heartbeat is older than this is dead: its reservations are broken (Ironic: 60 s). */
        dead_after_s: positiveInt.default(30),
        /**
         * An action on a node owned by another controller is forwarded to it over NATS; this is the longest
         * silence from the owner (no acknowledgement, no keepalive) before the caller gets UNAVAILABLE naming it.
         */
        forward_timeout_ms: positiveInt.default(5000),
      })
      .strict()
      .prefault({}),
    secrets: z
      .object({
        /** base64 of 32 bytes; when empty, key_file is used (and created on first start). */
        key: z.string().default(''),
        key_file: z.string().min(1).default('/var/lib/bm/secret.key'),
      })
      .strict()
      .prefault({}),
    images: z
      .object({
        /** Where image bytes live: "local" (store_path: one controller, or a shared filesystem) or "jetstream" (the NATS object store every controller reads). */
        store: z.enum(['local', 'jetstream']).default('local'),
        /** Where the local blob store keeps image bytes, content-addressed. */
        store_path: z.string().min(1).default('/var/lib/bm/images'),
        max_upload_gb: positiveInt.default(256),
        /** jetstream: the object store bucket; the [nats] prefix goes in front, so clusters sharing a NATS keep apart. */
        bucket: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected up to 64 letters, digits, "_" or "-"')
          .default('images'),
        /** jetstream: copies the NATS cluster keeps (JetStream allows 1 to 5); only applied when the bucket is created. */
        replicas: z.coerce.number().int().min(1).max(5).default(1),
        /** jetstream: this controller's cache of verified image copies (positioned reads for qcow2, one fetch per image). */
        cache_dir: z.string().min(1).default('/var/lib/bm/image-cache'),
      })
      .strict()
      .prefault({}),
    discovery: z
      .object({
        /** Unknown machines that boot the ramdisk may enroll themselves (in `enroll`, never further). */
        enabled: bool.default(false),
        group: groupName.default(DEFAULT_GROUP),
        rate_per_second: z.coerce.number().positive().default(5),
        burst: positiveInt.default(20),
      })
      .strict()
      .prefault({}),
    agent: z
      .object({
        /** How long an agent token lives; an operation that ends revokes it sooner. */
        token_ttl_s: positiveInt.default(3 * 3600),
      })
      .strict()
      .prefault({}),
    conductor: z
      .object({
        /** How long a node booted into the ramdisk may take to call back (wait-callback), as Ironic's 30 min. */
        callback_timeout_s: positiveInt.default(1800),
        /** What cleaning erases: the partition tables and signatures (fast), or every byte. */
        erase_mode: z.enum(['metadata', 'full']).default('metadata'),
        /** How often a task re-reads its node while waiting (an agent's heartbeat, a power change). */
        poll_ms: positiveInt.default(500),
        /**
         * Rack fan-out: deploys of one image at once feed each other through
         * agent relays, this many followers per relay (controller/deploy/fanout-planner.ts); 0 turns it off.
         */
        deploy_fanout: z.coerce.number().int().min(0).max(16).default(2),
        /**
         * Deploys this controller starts at once (agent token, bootdev, power-on through the BMC); the rest wait in
         * claim order, their nodes claimed and their instances BUILD (metric bm_deploy_start_queue_depth), so a boot
         * storm does not power on every BMC at once.
         */
        deploy_start_concurrency: positiveInt.default(32),
      })
      .strict()
      .prefault({}),
    power: z
      .object({
        /** How long a power change may take to show (soft-off waits for the OS to shut down). */
        settle_timeout_s: positiveInt.default(60),
        ipmitool_cipher_suite: z.coerce.number().int().min(0).max(17).default(3),
        /** The power-state sync loop: every interval, read every owned node's power state. */
        sync_interval_s: positiveInt.default(60),
        sync_concurrency: positiveInt.default(64),
        /** false: record what the BMC says; true: re-apply the state the controller expects. */
        sync_enforce: bool.default(false),
        sync_failure_threshold: positiveInt.default(3),
        call_timeout_s: positiveInt.default(10),
      })
      .strict()
      .prefault({}),
    /** Network boot (DHCP, TFTP, HTTP iPXE); absent means this controller serves none of it. */
    boot: bootConfigSchema.optional(),
    metrics: z
      .object({
        /** Prometheus /metrics, with or without [boot]; "" turns this port off (the boot port still serves it). */
        listen: z.union([z.literal(''), hostPort]).default('127.0.0.1:6387'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;

/** Keys whose values must never be echoed in an error message. */
export const secretKeys: ReadonlySet<string> = new Set(['secrets.key', 'database.url', 'api.tokens']);
