/**
 * How the native driver's sessions behave against the virtual BMC: lost
 * datagrams are retransmitted, an expired session is re-opened, at most one
 * session per BMC by default, a wrong password is an auth error.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import { GET_BOOT_OPTIONS } from '../../controller/drivers/power/ipmi/commands.ts';
import { BmcAuthError, BmcCommandError } from '../../controller/drivers/power/errors.ts';
import { startVirtualBmc, type VirtualBmcServer, VirtualBmc } from '../../controller/lab/index.ts';

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function target(
  server: { address: string; port: number },
  password = 'password',
): { nodeUuid: string; driver: string; address: string; port: number; username: string; password: string } {
  return { nodeUuid: 'pool-node', driver: 'ipmi', address: server.address, port: server.port, username: 'admin', password };
}

async function server(options: Parameters<typeof startVirtualBmc>[0] = {}): Promise<VirtualBmcServer> {
  const s = await startVirtualBmc(options);
  cleanup.push(() => s.close());
  return s;
}

function pool(options: ConstructorParameters<typeof SessionPool>[0]): SessionPool {
  const p = new SessionPool(options);
  cleanup.push(() => p.close());
  return p;
}

describe('native sessions against the virtual BMC', () => {
  it('retransmits through a link that loses every third datagram each way', async () => {
    const bmc = new VirtualBmc({ power: 'on' });
    const socket = dgram.createSocket('udp4');
    let n = 0;
    socket.on('message', (msg, rinfo) => {
      if (++n % 3 === 0) return;
      const answer = bmc.handle(new Uint8Array(msg));
      if (answer && ++n % 3 !== 0) socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise((r) => socket.close(() => r())));
    const d = new IpmiDriver(target({ address: '127.0.0.1', port: socket.address().port }), {
      pool: pool({ attemptTimeoutMs: 100, retries: 4 }),
      timeoutMs: 5000,
    });
    for (let i = 0; i < 10; i++) expect(await d.getPowerState()).toBe('on');
    await d.setPowerState('off');
    expect(bmc.power).toBe('off');
  });

  it('survives a lost Open Session Response, RAKP 2 and RAKP 4: the BMC answers a retransmission again', async () => {
    const bmc = new VirtualBmc({ power: 'on' });
    const socket = dgram.createSocket('udp4');
    const lost = new Set<number>();
    socket.on('message', (msg, rinfo) => {
      const answer = bmc.handle(new Uint8Array(msg));
      if (!answer) return;
      const payloadType = answer[4] === 0x06 ? answer[5]! & 0x3f : -1;
      if ([0x11, 0x13, 0x15].includes(payloadType) && !lost.has(payloadType)) {
        lost.add(payloadType);
        return;
      }
      socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise((r) => socket.close(() => r())));
    const d = new IpmiDriver(target({ address: '127.0.0.1', port: socket.address().port }), {
      pool: pool({ attemptTimeoutMs: 100, retries: 2 }),
      timeoutMs: 5000,
    });
    expect(await d.getPowerState()).toBe('on');
    expect(lost.size).toBe(3);
    expect(bmc.stats.authFailures).toBe(0);
    expect(bmc.activeSessions).toBe(1);
  });

  it('re-opens a session the BMC has expired', async () => {
    const s = await server({ sessionTimeoutMs: 150 });
    const p = pool({ attemptTimeoutMs: 100, retries: 1, idleMs: 60_000 });
    const d = new IpmiDriver(target(s), { pool: p });
    expect(await d.getPowerState()).toBe('off');
    await new Promise((r) => setTimeout(r, 300));
    expect(s.bmc.activeSessions).toBe(0);
    expect(await d.getPowerState()).toBe('off');
    expect(p.stats()).toMatchObject({ sessionsOpened: 2, reopened: 1 });
  });

  it('opens one session per BMC for many concurrent callers, and serves them all', async () => {
    const s = await server({ power: 'on' });
    let peak = 0;
    const p = pool({ maxSessionsPerBmc: 1 });
    const reads = Array.from({ length: 20 }, async () => {
      const state = await new IpmiDriver(target(s), { pool: p }).getPowerState();
      peak = Math.max(peak, s.bmc.activeSessions);
      return state;
    });
    expect(await Promise.all(reads)).toEqual(Array(20).fill('on'));
    expect(peak).toBe(1);
    expect(p.stats().sessionsOpened).toBe(1);
  });

  it('talks to at most maxConcurrent BMCs at once', async () => {
    let inFlight = 0;
    let peak = 0;
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) {
      const bmc = new VirtualBmc({ power: 'on' });
      const socket = dgram.createSocket('udp4');
      socket.on('message', (msg, rinfo) => {
        peak = Math.max(peak, ++inFlight);
        setTimeout(() => {
          inFlight--;
          const answer = bmc.handle(new Uint8Array(msg));
          if (answer) socket.send(answer, rinfo.port, rinfo.address);
        }, 20);
      });
      await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
      cleanup.push(() => new Promise((r) => socket.close(() => r())));
      ports.push(socket.address().port);
    }
    const p = pool({ maxConcurrent: 2, attemptTimeoutMs: 500 });
    const states = await Promise.all(
      ports.map((port) => new IpmiDriver(target({ address: '127.0.0.1', port }), { pool: p }).getPowerState()),
    );
    expect(states).toEqual(Array(6).fill('on'));
    expect(peak).toBe(2);
  });

  it('tells apart BMCs that share a port on different loopback addresses, and resolves host names', async () => {
    const a = await server({ address: '127.0.0.2', power: 'on' });
    const b = await server({ address: '127.0.0.3', port: a.port, power: 'off' });
    const p = pool({});
    expect(await new IpmiDriver(target(a), { pool: p }).getPowerState()).toBe('on');
    expect(await new IpmiDriver(target(b), { pool: p }).getPowerState()).toBe('off');
    const local = await server({ power: 'on' });
    expect(await new IpmiDriver({ ...target(local), address: 'localhost' }, { pool: p }).getPowerState()).toBe('on');
  });

  it('keeps the session after a command the BMC refuses', async () => {
    const s = await server({ power: 'on' });
    const p = pool({});
    const t = {
      address: s.address,
      port: s.port,
      username: 'admin',
      password: 'password',
      privilege: 4,
      context: { bmc: `${s.address}:${s.port}` },
    };
    const refused = await p
      .use(
        t,
        (session) => session.call(GET_BOOT_OPTIONS, new Uint8Array([0x55, 0, 0]), performance.now() + 2000, 'Get System Boot Options 0x55'),
        performance.now() + 2000,
      )
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BmcCommandError);
    expect((refused as Error).message).toMatch(/parameter not supported \(0x80\)/);
    expect(await new IpmiDriver(target(s), { pool: p }).getPowerState()).toBe('on');
    expect(p.stats().sessionsOpened).toBe(1);
    expect(s.bmc.activeSessions).toBe(1);
  });

  it('closes its sessions on the BMC when the pool closes', async () => {
    const s = await server();
    const p = new SessionPool({});
    await new IpmiDriver(target(s), { pool: p }).getPowerState();
    expect(s.bmc.activeSessions).toBe(1);
    await p.close();
    expect(s.bmc.activeSessions).toBe(0);
  });

  it('reports a wrong password as an auth error naming node and BMC, not the password', async () => {
    const s = await server();
    const err = await new IpmiDriver(target(s, 'hunter2-wrong'), { pool: pool({}) }).getPowerState().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcAuthError);
    expect((err as Error).message).toContain(`${s.address}:${s.port}`);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('uses suite 3 when the BMC offers only suite 3, and works with OPERATOR privilege', async () => {
    const s = await server({ suites: [3], users: [{ name: 'admin', password: 'password', privilege: 3 }] });
    const d = new IpmiDriver(target(s), { pool: pool({}), privilege: 'OPERATOR' });
    await d.setPowerState('on');
    expect(s.bmc.power).toBe('on');
    expect(s.bmc.stats.suites).toEqual({ 3: 1 });
  });
});
