/**
 * Puts virtual BMCs on UDP: one socket per BMC, on its own port (or its own
 * 127.x.y.z address), many in one process.
 */
import dgram from 'node:dgram';
import { VirtualBmc, type VirtualBmcOptions } from './virtual-bmc.ts';

export interface VirtualBmcServer {
  readonly bmc: VirtualBmc;
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startVirtualBmc(options: VirtualBmcOptions & { address?: string; port?: number } = {}): Promise<VirtualBmcServer> {
  const bmc = new VirtualBmc(options);
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const answer = bmc.handle(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
    if (answer) socket.send(answer, rinfo.port, rinfo.address);
  });
  socket.on('error', () => undefined);
  const address = options.address ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options.port ?? 0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  let closed = false;
  return {
    bmc,
    address,
    port: socket.address().port,
    close: () => {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

export interface VirtualFleet {
  readonly servers: readonly VirtualBmcServer[];
  close(): Promise<void>;
}

/** `count` BMCs in this process, each on its own loopback port. */
export async function startFleet(count: number, options: (index: number) => VirtualBmcOptions = () => ({})): Promise<VirtualFleet> {
  const servers: VirtualBmcServer[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await startVirtualBmc({ name: `vbmc-${i}`, ...options(i) }));
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    throw err;
  }
  return { servers, close: async () => void (await Promise.all(servers.map((s) => s.close()))) };
}
