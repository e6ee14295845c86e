/**
 * pino, with every field that could carry a secret redacted at the source, as
 * a second line of defence: code never logs passwords or tokens on purpose.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'password',
  'pmPassword',
  'pm_password',
  'token',
  'authorization',
  '*.password',
  '*.pmPassword',
  '*.pm_password',
  '*.token',
  '*.authorization',
  'req.headers.authorization',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } };
  return destination ? pino(options, destination) : pino(options);
}
