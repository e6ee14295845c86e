import { defineConfig } from 'vitest/config';

// Integration tests start real peers (MariaDB databases, NATS, ipmi_sim,
// namespaces); on a 2-core machine running too many files at once makes
// timing-sensitive protocol tests flaky, so files run two at a time.
export default defineConfig({
  test: {
    // The suite's TLS (controller/lab/suite-tls.ts): controllers the tests start serve TLS unless a test opts out.
    globalSetup: ['test/support/global-setup.ts'],
    include: ['controller/**/*.test.ts', 'agent/**/*.test.ts', 'db/**/*.test.ts', 'proto/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    pool: 'forks',
  },
});
