/** The forward transport between two real NATS connections (two "controllers"), on a subject prefix of its own. */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BmError, NotFoundError } from '../errors.ts';
import { Subjects } from '../events/subjects.ts';
import { natsUrl, uniqueNatsPrefix } from '../lab/controller-process.ts';
import { Forwarder, OwnerUnavailableError } from './forwarding.ts';

const log = pino({ level: 'silent' });
const subjects = new Subjects(uniqueNatsPrefix());
const NODE = '0190c0de-0000-7000-8000-000000000001';
const ownerB = { id: 'ctl-b', apiAddress: '127.0.0.1:7002' };
let ncA: NatsConnection;
let ncB: NatsConnection;
const forwarders: Forwarder[] = [];

function forwarder(nc: NatsConnection, self: string, timeoutMs = 400): Forwarder {
  const f = new Forwarder(nc, { self, subjects, timeoutMs }, log);
  forwarders.push(f);
  return f;
}

beforeAll(async () => {
  ncA = await connect({ servers: natsUrl });
  ncB = await connect({ servers: natsUrl });
});

afterAll(async () => {
  for (const f of forwarders) await f.close();
  await ncA?.close();
  await ncB?.close();
});

describe('Forwarder', () => {
  it('runs the action at the owner and brings back its answer, or its typed error unchanged', async () => {
    const seen: string[] = [];
    const b = forwarder(ncB, 'ctl-b');
    b.serve(async (action, args, from) => {
      seen.push(`${from} ${action} ${JSON.stringify(args)}`);
      if (action === 'power-get') return { powerState: 'on' } as never;
      throw new NotFoundError('node', 'n-404');
    });
    await ncB.flush();
    const a = forwarder(ncA, 'ctl-a');
    expect(await a.call(ownerB, 'power-get', { node: NODE })).toEqual({ powerState: 'on' });
    const err = await a.call(ownerB, 'provision', { node: 'n-404', verb: 'manage' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmError);
    expect(err).toMatchObject({ code: 'not-found', message: 'node n-404 not found' });
    expect(seen).toEqual([`ctl-a power-get {"node":"${NODE}"}`, 'ctl-a provision {"node":"n-404","verb":"manage"}']);
    await b.close();
  });

  it('keeps waiting for an action that outlasts the timeout while the owner says it is working', async () => {
    const b = forwarder(ncB, 'ctl-b', 300);
    b.serve(async () => {
      await new Promise((r) => setTimeout(r, 1200));
      return null as never;
    });
    await ncB.flush();
    const started = Date.now();
    await expect(forwarder(ncA, 'ctl-a', 300).call(ownerB, 'power-set', { node: NODE, target: 'on' })).resolves.toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(1100);
    await b.close();
  });

  it('answers UNAVAILABLE naming the owner and its API address when nobody listens for it', async () => {
    const err = await forwarder(ncA, 'ctl-a', 2000)
      .call({ id: 'ctl-gone', apiAddress: '10.1.2.3:6385' }, 'power-get', { node: NODE })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OwnerUnavailableError);
    expect((err as BmError).code).toBe('unavailable');
    expect((err as Error).message).toMatch(/controller ctl-gone \(API 10\.1\.2\.3:6385\).*is not listening/);
  });

  it('answers UNAVAILABLE when the owner stays silent (paused), and the paused owner drops the request later', async () => {
    // A subscriber that takes the request and never answers: a SIGSTOPped owner as NATS sees it.
    const held: Uint8Array[] = [];
    const silent = ncB.subscribe(subjects.rpcOf('ctl-b'), { callback: (_e, msg) => void held.push(msg.data) });
    await ncB.flush();
    const started = Date.now();
    const err = await forwarder(ncA, 'ctl-a', 300)
      .call(ownerB, 'power-set', { node: NODE, target: 'off' })
      .catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2000);
    expect((err as Error).message).toMatch(/controller ctl-b \(API 127\.0\.0\.1:7002\), did not answer within 300 ms/);
    silent.unsubscribe();
    expect(held).toHaveLength(1);

    // The owner wakes up and finds that request in its socket (its reply subject is the caller's, given up):
    // it says accepted to nobody, no go comes, and it runs nothing.
    const ran: string[] = [];
    const lines: string[] = [];
    const b = new Forwarder(
      ncB,
      { self: 'ctl-b', subjects, timeoutMs: 300 },
      pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
    );
    forwarders.push(b);
    b.serve(async (action) => {
      ran.push(action);
      return null as never;
    });
    await ncB.flush();
    ncA.publish(subjects.rpc('ctl-b', 'power-set'), held[0]!, { reply: `${subjects.prefix}.gave-up-inbox` });
    await ncA.flush();
    await new Promise((r) => setTimeout(r, 700));
    expect(ran).toEqual([]);
    expect(lines.join('')).toMatch(
      /dropped a forwarded action its caller gave up on.*"from":"ctl-a"|"from":"ctl-a".*dropped a forwarded action/,
    );
    await b.close();
  });

  it('tells a caller whose owner died while at it that the action may be done in part', async () => {
    const ncDying = await connect({ servers: natsUrl });
    const b = new Forwarder(ncDying, { self: 'ctl-b', subjects, timeoutMs: 300 }, log);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    b.serve(async () => {
      started();
      return new Promise<never>(() => undefined);
    });
    await ncDying.flush();
    const call = forwarder(ncA, 'ctl-a', 300)
      .call(ownerB, 'power-set', { node: NODE, target: 'off' })
      .catch((e: unknown) => e);
    await running;
    // The owner's host goes away mid-action: no more keepalives.
    await ncDying.close();
    const err = await call;
    expect(err).toBeInstanceOf(OwnerUnavailableError);
    expect((err as Error).message).toMatch(/controller ctl-b .* stopped answering while at it .*power-set may be done in part/);
  });

  it('answers a malformed request with a typed error instead of running anything', async () => {
    const ran: string[] = [];
    const b = forwarder(ncB, 'ctl-b');
    b.serve(async (action) => {
      ran.push(action);
      return null as never;
    });
    await ncB.flush();
    const reply = await ncA.request(subjects.rpc('ctl-b', 'provision'), new TextEncoder().encode('{"v":1,"action":"provision"}'), {
      timeout: 2000,
    });
    expect(new TextDecoder().decode(reply.data)).toMatch(/"kind":"error".*"code":"invalid-argument"/);
    expect(ran).toEqual([]);
    await b.close();
  });
});
