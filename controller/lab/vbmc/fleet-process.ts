/**
 * A fleet of virtual BMCs in a process of its own, so a benchmark can measure
 * the controller side alone. Started with an IPC channel:
 *   node controller/lab/vbmc/fleet-process.ts COUNT PASSWORD_PREFIX
 * It answers {type:'ready', ports} once every BMC listens, then takes
 * {type:'set-power', index, power}, {type:'silent', index} and {type:'stats'}
 * messages, and exits when the parent goes away.
 */
import { startFleet } from './server.ts';

interface FleetMessage {
  readonly type: 'set-power' | 'silent' | 'stats';
  readonly index?: number;
  readonly power?: 'on' | 'off';
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? '100');
  const prefix = process.argv[3] ?? 'fleet-pw-';
  if (!process.send) throw new Error('fleet-process.ts must be started with an IPC channel');
  const fleet = await startFleet(count, (i) => ({
    users: [{ name: 'admin', password: `${prefix}${i}`, privilege: 4 }],
    power: i % 2 === 0 ? 'on' : 'off',
  }));
  process.on('message', (raw: FleetMessage) => {
    const server = raw.index === undefined ? undefined : fleet.servers[raw.index];
    if (raw.type === 'set-power' && server && raw.power) server.bmc.setPower(raw.power);
    else if (raw.type === 'silent' && server) server.bmc.silent = true;
    else if (raw.type === 'stats') {
      let received = 0;
      let sessions = 0;
      let dropped = 0;
      for (const s of fleet.servers) {
        received += s.bmc.stats.received;
        sessions += s.bmc.stats.sessionsOpened;
        for (const n of Object.values(s.bmc.stats.dropped)) dropped += n;
      }
      process.send?.({ type: 'stats', received, sessions, dropped, rssMiB: Math.round(process.memoryUsage().rss / 1048576) });
    }
  });
  process.on('disconnect', () => {
    void fleet.close().finally(() => process.exit(0));
  });
  process.send({ type: 'ready', ports: fleet.servers.map((s) => s.port) });
}

main().catch((err: unknown) => {
  process.stderr.write(`fleet-process: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
