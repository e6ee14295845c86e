import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../log/logger.ts';
import { RefusalLog } from './refusal-log.ts';

function capture(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('refusal log', () => {
  it('logs the first refusal of a window and sums up the rest in one line when it closes', () => {
    vi.useFakeTimers();
    const { stream, lines } = capture();
    const refusals = new RefusalLog(createLogger('info', stream), { windowMs: 10_000, maxPeers: 2 });
    for (let i = 0; i < 1231; i++) refusals.refused('/bm.v1.NodeService/ListNodes', `192.0.2.${i % 4}:5000`);
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).toMatchObject({ msg: 'refused unauthenticated call', peer: '192.0.2.0:5000' });
    vi.advanceTimersByTime(10_000);
    expect(lines()).toHaveLength(2);
    expect(lines()[1]).toMatchObject({
      refused: 1230,
      peers: ['192.0.2.1:5000', '192.0.2.2:5000'],
      methods: ['/bm.v1.NodeService/ListNodes'],
      windowS: 10,
    });
    // A new window starts with a line of its own.
    refusals.refused('/bm.v1.NodeService/GetNode', '192.0.2.9:1');
    expect(lines()).toHaveLength(3);
    refusals.flush();
    expect(lines()).toHaveLength(3);
  });
});
