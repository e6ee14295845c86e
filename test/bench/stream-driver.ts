/**
 * The controller side of the stream benchmark, run as its own process so
 * its peak RSS is the controller's alone: deploys one image to one or more
 * agents at once (deployImage, as the conductor calls it) and prints one JSON
 * line with the timings and the CPU time the deploys took (process.cpuUsage(),
 * all threads). Input: a JSON object as argv[2].
 */
import { readFile } from 'node:fs/promises';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { DEFAULT_TUNING, type StreamTuning } from '../../controller/deploy/tuning.ts';
import { openImageFile } from '../../controller/images/open.ts';
import { DigestAlgorithm } from '../../proto/digest/block-sha256.ts';

interface DriverInput {
  readonly agents: readonly string[];
  readonly token: string;
  readonly image: string;
  readonly format: 'raw' | 'qcow2';
  /** Hex digest of the image's raw content, by digestAlgorithm (default the 4 MiB block digest). */
  readonly expectedDigest: string;
  readonly digestAlgorithm?: DigestAlgorithm;
  readonly chunkBytes?: number;
  /** Overrides of the stream tuning (controller/deploy/tuning.ts). */
  readonly tuning?: Partial<StreamTuning>;
}

const input = JSON.parse(process.argv[2] ?? '{}') as DriverInput;
const tuning: StreamTuning = { ...DEFAULT_TUNING, ...input.tuning, ...(input.chunkBytes ? { chunkBytes: input.chunkBytes } : {}) };
const started = performance.now();
const cpuBefore = process.cpuUsage();
const streams = await Promise.all(
  input.agents.map(async (address, i) => {
    const image = await openImageFile(input.image, input.format, { chunkSize: tuning.chunkBytes });
    try {
      const t0 = performance.now();
      const result = await deployImage({
        nodeUuid: `bench-${i}`,
        agentAddress: address,
        agentToken: input.token,
        source: image.source,
        expected: { algorithm: input.digestAlgorithm ?? DigestAlgorithm.blocks, hex: input.expectedDigest },
        checkpoint: async () => undefined,
        tuning,
        attempts: 1,
      });
      return { seconds: (performance.now() - t0) / 1000, dataBytesSent: result.dataBytesSent, digestMethod: result.digestMethod };
    } finally {
      await image.close();
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
// VmHWM, not getrusage's maxrss: Linux carries ru_maxrss across exec, so a child of a
// large parent would report the parent's size.
const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
const maxRssMiB = hwm ? Number(hwm[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify({ seconds, cpuSeconds, streams, maxRssMiB })}\n`);
