/** `[nats] url` may list a NATS cluster's servers, comma-separated; a dead one among them costs nothing. */
import { describe, expect, it } from 'vitest';
import { NatsEventBus } from '../../controller/events/nats-bus.ts';
import { Subjects } from '../../controller/events/subjects.ts';
import { freePort, natsUrl, uniqueNatsPrefix } from '../../controller/lab/index.ts';

describe('NATS server list', () => {
  it('connects through a comma-separated list with a dead server in it, and events flow', async () => {
    const dead = `nats://127.0.0.1:${await freePort()}`;
    const bus = await NatsEventBus.connect(`${dead}, ${natsUrl}`, 'ctl-list', { subjects: new Subjects(uniqueNatsPrefix()) });
    try {
      const sub = bus.subscribe(null);
      const first = (async () => {
        for await (const e of sub) return e;
        return null;
      })();
      await bus.flush();
      bus.publish({ nodeUuid: '01a20000-0000-7000-8000-0000000000e1', type: 'test.event' });
      expect(await first).toMatchObject({ type: 'test.event', controllerId: 'ctl-list' });
      sub.close();
    } finally {
      await bus.close();
    }
  });
});
