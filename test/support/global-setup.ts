/**
 * vitest's global setup, run once per `vitest run` before any worker starts:
 * the suite's CA and server certificate (cached under .cache/test-tls), named
 * in the environment every worker, controller and bmctl of the run inherits.
 * Controllers the tests start then serve TLS with it, and bmctl verifies them
 * through BM_CA without a test saying anything.
 */
import { prepareSuiteTls } from '../../controller/lab/suite-tls.ts';

export default async function setup(): Promise<void> {
  await prepareSuiteTls();
}
