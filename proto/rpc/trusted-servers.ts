/**
 * Servers whose CA this process knows, by the address it dials them at. A
 * process that starts a TLS server of its own (the tests' and benchmarks'
 * controllers) registers it here, so a plain connect(address) to it verifies
 * TLS against that CA instead of speaking plaintext to a TLS-only port. The
 * agent and bmctl register nothing: for them connect() is unchanged.
 */
import * as grpc from '@grpc/grpc-js';
import { tlsCredentials } from './tls.ts';

const trusted = new Map<string, Buffer>();

/** From now on, connect(address) without credentials verifies TLS against `caPem`. */
export function trustServer(address: string, caPem: Buffer): void {
  trusted.set(address, caPem);
}

/** The address speaks whatever it speaks again: its server has stopped (a later one may reuse the port). */
export function forgetServer(address: string): void {
  trusted.delete(address);
}

/** What connect() uses when given no credentials: TLS for a trusted server, plaintext otherwise. */
export function defaultCredentials(address: string): grpc.ChannelCredentials {
  const ca = trusted.get(address);
  return ca ? tlsCredentials(ca) : grpc.credentials.createInsecure();
}
