/**
 * Certificates made with Debian's openssl for a lab run or a test's temp dir:
 * a CA, and server certificates for 127.0.0.1 it signs. Short-lived (2 days
 * unless `days` says otherwise): they never leave this machine.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run('openssl', [...args]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('openssl is not installed: install the Debian package "openssl"');
    throw err;
  }
}

export interface CaFiles {
  readonly cert: string;
  readonly key: string;
}

export async function makeCa(dir: string, name: string, days = 2): Promise<CaFiles> {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    String(days),
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/**
 * A server certificate for 127.0.0.1 and localhost (and `extraIps`, e.g. a namespace's
 * provisioning address) signed by `ca`; a fresh key unless `reuseKey` names one.
 */
export async function makeServerCert(
  dir: string,
  ca: CaFiles,
  name: string,
  reuseKey?: string,
  days = 2,
  extraIps: readonly string[] = [],
): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.pem`);
  const key = reuseKey ?? path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  const names = ['IP:127.0.0.1', 'DNS:localhost', ...extraIps.map((ip) => `IP:${ip}`)].join(',');
  await writeFile(ext, `subjectAltName=${names}\nextendedKeyUsage=serverAuth\n`);
  await openssl([
    'req',
    '-new',
    ...(reuseKey ? ['-key', reuseKey] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key]),
    '-out',
    csr,
    '-subj',
    `/CN=${name}`,
  ]);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
    '-days',
    String(days),
    '-out',
    cert,
    '-extfile',
    ext,
  ]);
  return { cert, key };
}

/** A fresh CA and a server certificate it signed, in `dir`: what a lab controller serves TLS with. */
export async function makeLabTls(dir: string): Promise<{ cert: string; key: string; ca: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await makeCa(dir, 'lab-ca');
  const server = await makeServerCert(dir, ca, 'lab-api');
  return { ...server, ca: ca.cert };
}
