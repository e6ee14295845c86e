/**
 * The controller side of the fan-out benchmark, run as its own process (like
 * stream-driver.ts): deploys one image to every agent at once, either each
 * straight from the controller (deployImage) or through the fan-out plan
 * (deployImageFanout), and prints one JSON line: each stream's finish time
 * from the common start, the data bytes the controller itself sent, which
 * relay fed it and whether it fell back, and the process's CPU time.
 * Input: a JSON object as argv[2].
 */
import { deployImage } from '../../controller/deploy/deploy.ts';
import { deployImageFanout } from '../../controller/deploy/fanout-deploy.ts';
import { FanoutPlanner, fanoutImageKey } from '../../controller/deploy/fanout-planner.ts';
import { openImageFile, type OpenedImage } from '../../controller/images/open.ts';
import { DigestAlgorithm } from '../../proto/digest/block-sha256.ts';

interface DriverInput {
  readonly agents: readonly { readonly address: string; readonly token: string }[];
  readonly image: string;
  /** Hex 4 MiB block digest of the image's raw content. */
  readonly expectedDigest: string;
  readonly mode: 'direct' | 'fanout';
  /** Followers per relay in fanout mode (default the planner's). */
  readonly fanout?: number;
}

const input = JSON.parse(process.argv[2] ?? '{}') as DriverInput;
const expected = { algorithm: DigestAlgorithm.blocks, hex: input.expectedDigest };
const planner = new FanoutPlanner(input.fanout ? { fanout: input.fanout } : {});
const images: OpenedImage[] = await Promise.all(input.agents.map(() => openImageFile(input.image, 'raw')));
const imageKey = fanoutImageKey(expected, images[0]!.source.virtualSize);
const cpuBefore = process.cpuUsage();
const started = performance.now();
const streams = await Promise.all(
  input.agents.map(async (agent, i) => {
    const common = {
      nodeUuid: `bench-${i}`,
      agentAddress: agent.address,
      agentToken: agent.token,
      source: images[i]!.source,
      expected,
      checkpoint: async () => undefined,
    };
    if (input.mode === 'direct') {
      const result = await deployImage({ ...common, attempts: 1 });
      return { seconds: (performance.now() - started) / 1000, dataBytesSent: result.dataBytesSent, relayedBy: null, fellBack: false };
    }
    const result = await deployImageFanout({ ...common, planner, imageKey });
    return {
      seconds: (performance.now() - started) / 1000,
      dataBytesSent: result.dataBytesSent,
      relayedBy: result.relayedBy ?? null,
      fellBack: result.fellBack,
    };
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
await Promise.all(images.map((image) => image.close()));
process.stdout.write(`${JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, streams })}\n`);
