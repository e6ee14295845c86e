import { describe, expect, it } from 'vitest';
import { Metadata, status, type CallContext } from '../../proto/rpc/index.ts';
import { OperationSupersededError } from '../errors.ts';
import { AgentContext } from './context.ts';
import { agentStatusMapper } from './status.ts';

function callContext(): CallContext {
  return {
    path: '/bm.agent.v1.Agent/WriteImage',
    metadata: new Metadata(),
    peer: 'test',
    signal: new AbortController().signal,
  } as unknown as CallContext;
}

describe('agent status mapping', () => {
  const logged: string[] = [];
  const toStatus = agentStatusMapper((message) => logged.push(message));

  it('maps a superseded operation to ABORTED by its class', () => {
    expect(toStatus(new OperationSupersededError('WriteImage'), callContext())).toEqual({
      code: status.ABORTED,
      details: 'superseded by a new WriteImage',
    });
  });

  it('does not map by message: a plain error that says "superseded" is INTERNAL', () => {
    expect(toStatus(new Error('superseded by a new WriteImage'), callContext())).toEqual({
      code: status.INTERNAL,
      details: 'internal error',
    });
  });

  it('hands the superseded error to the running operation as its abort reason', async () => {
    const ctx = new AgentContext({
      root: '/',
      targetZeroed: true,
      commitIntervalBytes: 1 << 20,
      digest: 'auto',
      rebootCommand: [],
      powerOffCommand: [],
      log: () => undefined,
    });
    let reason: unknown;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const first = ctx.superseding('WriteImage', (signal) => {
      started();
      return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject((reason = signal.reason))));
    });
    await running;
    await ctx.superseding('WriteImage', async () => undefined);
    await expect(first).rejects.toBeInstanceOf(OperationSupersededError);
    expect(toStatus(reason, callContext()).code).toBe(status.ABORTED);
  });
});
