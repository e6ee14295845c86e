/**
 * The test suite's TLS: one CA and a server certificate it signed for
 * 127.0.0.1 and localhost, which every controller the tests start serves
 * unless a test opts out. Made with openssl once and kept in the repository's
 * git-ignored `.cache/test-tls/`, so a rerun costs two file reads, not two
 * openssl runs; a set that is missing, unreadable or expiring within a day is
 * made again.
 */
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from './paths.ts';
import { makeCa, makeServerCert } from './tls-certs.ts';

export interface SuiteTls {
  /** The directory holding the set (its real path, not the `current` link). */
  readonly dir: string;
  /** The CA certificate clients verify with (what BM_CA names). */
  readonly ca: string;
  /** The CA's key: for a test that needs another certificate the suite's clients trust. */
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
}

/** Set by prepareSuiteTls() for every process a run starts: the set this run uses. */
export const SUITE_TLS_DIR_ENV = 'BM_TEST_TLS_DIR';

export const defaultSuiteTlsCache = path.join(repoRoot, '.cache/test-tls');

/** Long enough that sets are rarely made again, short enough that a leaked CA key soon means nothing. */
const VALID_DAYS = 30;
const DAY_MS = 86_400_000;
/** A set must outlive the run that starts with it: no run takes a day. */
const MIN_LEFT_MS = DAY_MS;

function filesIn(dir: string): SuiteTls {
  return {
    dir,
    ca: path.join(dir, 'suite-ca.pem'),
    caKey: path.join(dir, 'suite-ca.key'),
    cert: path.join(dir, 'suite-api.pem'),
    key: path.join(dir, 'suite-api.key'),
  };
}

/** Why the set in `dir` cannot serve a run starting now, or null when it can. */
export async function unusableBecause(set: SuiteTls, now = Date.now()): Promise<string | null> {
  let ca: X509Certificate;
  let cert: X509Certificate;
  try {
    ca = new X509Certificate(await readFile(set.ca));
    cert = new X509Certificate(await readFile(set.cert));
    if (!cert.checkPrivateKey(createPrivateKey(await readFile(set.key)))) return 'the key does not match the certificate';
    await stat(set.caKey);
  } catch (err) {
    return `unreadable (${err instanceof Error ? err.message : String(err)})`;
  }
  if (!cert.verify(ca.publicKey)) return 'the certificate is not signed by the CA';
  if (cert.checkIP('127.0.0.1') === undefined || cert.checkHost('localhost') === undefined)
    return 'the certificate does not name 127.0.0.1 and localhost';
  for (const [what, x] of [
    ['CA', ca],
    ['certificate', cert],
  ] as const) {
    if (Date.parse(x.validFrom) > now) return `the ${what} is not valid yet`;
    if (Date.parse(x.validTo) - now < MIN_LEFT_MS) return `the ${what} expires within a day`;
  }
  return null;
}

async function makeSet(cacheRoot: string): Promise<SuiteTls> {
  await mkdir(cacheRoot, { recursive: true, mode: 0o700 });
  // mkdtemp: 0700, and its own directory, so two runs making a set at once never share files.
  const dir = await mkdtemp(path.join(cacheRoot, 'set-'));
  const ca = await makeCa(dir, 'suite-ca', VALID_DAYS);
  await makeServerCert(dir, ca, 'suite-api', undefined, VALID_DAYS);
  await rm(path.join(dir, 'suite-api.csr'), { force: true });
  await rm(path.join(dir, 'suite-api.ext'), { force: true });
  // Replacing the link by rename is atomic: a reader sees the old set or the new one, never neither.
  const link = path.join(cacheRoot, 'current');
  const tmpLink = `${link}.${randomBytes(4).toString('hex')}`;
  await symlink(path.basename(dir), tmpLink);
  await rename(tmpLink, link);
  return filesIn(dir);
}

/** Removes sets older than their validity: a controller still running from an earlier run may read a newer one's files. */
async function pruneExpired(cacheRoot: string, keep: string, now: number): Promise<void> {
  for (const name of await readdir(cacheRoot).catch(() => [] as string[])) {
    const full = path.join(cacheRoot, name);
    if (!name.startsWith('set-') || full === keep) continue;
    const info = await stat(full).catch(() => null);
    if (info && now - info.mtimeMs > (VALID_DAYS + 1) * DAY_MS) await rm(full, { recursive: true, force: true });
  }
}

/** The cached set, made first when there is none that can serve a run starting now. */
export async function ensureSuiteTls(cacheRoot = defaultSuiteTlsCache, now = Date.now()): Promise<SuiteTls> {
  const current = await realpath(path.join(cacheRoot, 'current')).catch(() => null);
  const reused = current ? filesIn(current) : null;
  const set = reused && (await unusableBecause(reused, now)) === null ? reused : await makeSet(cacheRoot);
  await pruneExpired(cacheRoot, set.dir, now);
  return set;
}

/**
 * The set this run uses: the one prepareSuiteTls() chose for the run (named
 * by BM_TEST_TLS_DIR), else the cached one. One set per run keeps BM_CA and
 * the controllers' certificates in step even if another run renews the cache.
 */
export async function suiteTls(env: Readonly<Record<string, string | undefined>> = process.env): Promise<SuiteTls> {
  const named = env[SUITE_TLS_DIR_ENV];
  return named ? filesIn(named) : ensureSuiteTls();
}

/**
 * Run once before a test run (vitest's global setup) or a benchmark run:
 * makes or reuses the set, and puts it in this process's environment, which
 * every worker and every bmctl it starts inherits: BM_CA for bmctl, and
 * BM_TEST_TLS_DIR for startControllerProcess.
 */
export async function prepareSuiteTls(env: Record<string, string | undefined> = process.env): Promise<SuiteTls> {
  const set = await ensureSuiteTls();
  env[SUITE_TLS_DIR_ENV] = set.dir;
  env.BM_CA = set.ca;
  return set;
}
