/**
 * Client TLS for the adapter. grpc-js sends the target host as the TLS server
 * name even when it is an IP address; Node ignores that (RFC 6066 allows only
 * host names there) but prints deprecation DEP0123 on stderr, which would land
 * in bmctl's one-line output and the agent's log. Certificates are still
 * checked against the IP (subjectAltName IP:...), so the warning says nothing
 * the operator must act on and is dropped, that one code only.
 */
import * as grpc from '@grpc/grpc-js';

let quieted = false;

function dropIpServernameWarning(): void {
  if (quieted) return;
  quieted = true;
  const original = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const [typeOrOptions, code] = rest;
    const warningCode = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (warningCode === 'DEP0123') return;
    original(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** TLS channel credentials verifying the server against `caPem` (PEM bytes), or the system's roots when absent. */
export function tlsCredentials(caPem?: Buffer): grpc.ChannelCredentials {
  dropIpServernameWarning();
  return caPem ? grpc.credentials.createSsl(caPem) : grpc.credentials.createSsl();
}
