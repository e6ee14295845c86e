import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BmError } from '../errors.ts';
import {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  errorBody,
  ForwardCodecError,
  RemoteError,
  type ForwardRequest,
} from './forward-codec.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const NODE = '0190c0de-0000-7000-8000-000000000001';

describe('forward codec', () => {
  it('encodes a request as versioned JSON, with ids and the verb only', () => {
    const req: ForwardRequest<'power-set'> = {
      action: 'power-set',
      args: { node: NODE, target: 'on' },
      from: 'ctl-a',
    };
    expect(new TextDecoder().decode(encodeRequest(req))).toBe(
      `{"v":1,"action":"power-set","args":{"node":"${NODE}","target":"on"},"from":"ctl-a"}`,
    );
    expect(decodeRequest(encodeRequest(req))).toEqual(req);
  });

  it('keeps only the fields an action defines: anything extra (a password, say) never reaches the owner', () => {
    const decoded = decodeRequest(
      bytes(
        `{"v":1,"action":"boot-device-set","args":{"node":"${NODE}","device":"pxe","persistent":false,"uefi":true,"pmPassword":"x"},"from":"ctl-a"}`,
      ),
    );
    expect(decoded.args).toEqual({ node: NODE, device: 'pxe', persistent: false, uefi: true });
  });

  it('refuses frames that are not ours, naming what is wrong', () => {
    const bad: [string, RegExp][] = [
      ['not json', /UTF-8 JSON/],
      ['[1]', /not an object/],
      ['{"v":2,"action":"provision"}', /version 2/],
      ['{"v":1,"action":"format-disk","args":{},"from":"a"}', /unknown action/],
      ['{"v":1,"action":"provision","args":{"node":"n"},"from":"a"}', /args\.verb/],
      ['{"v":1,"action":"provision","args":{"node":"n","verb":"manage"},"from":""}', /from/],
      ['{"v":1,"action":"boot-device-set","args":{"node":"n","device":"pxe","persistent":"yes","uefi":false},"from":"a"}', /persistent/],
    ];
    for (const [text, why] of bad) {
      expect(() => decodeRequest(bytes(text))).toThrow(ForwardCodecError);
      expect(() => decodeRequest(bytes(text))).toThrow(why);
    }
    expect(() => decodeReply(bytes('{"v":1,"kind":"maybe"}'))).toThrow(/unknown reply kind/);
    expect(() => decodeReply(bytes('{"v":1,"kind":"accepted"}'))).toThrow(/confirm subject/);
    expect(() => decodeReply(bytes('{"v":1,"kind":"error","error":{"code":"teapot","message":"x"}}'))).toThrow(/code, message/);
  });

  it('carries a typed error back with its code, message and context; anything else as a bare internal error', () => {
    const typed = new BmError('conflict', 'node n is locked by controller ctl-c', { node: 'n', holder: 'ctl-c' });
    const reply = decodeReply(encodeReply({ kind: 'error', error: errorBody(typed) }));
    expect(reply).toEqual({
      kind: 'error',
      error: {
        code: 'conflict',
        message: 'node n is locked by controller ctl-c',
        context: { node: 'n', holder: 'ctl-c' },
        name: 'BmError',
      },
    });
    if (reply.kind !== 'error') throw new Error('unreachable');
    const remote = new RemoteError(reply.error, 'ctl-b');
    expect(remote).toBeInstanceOf(BmError);
    expect(remote).toMatchObject({ code: 'conflict', message: 'node n is locked by controller ctl-c', context: { owner: 'ctl-b' } });
    expect(errorBody(new Error('ECONNREFUSED 10.0.0.9 secret stuff'))).toEqual({
      code: 'internal',
      message: 'internal error',
      context: {},
      name: 'Error',
    });
  });

  it('round-trips every reply kind', () => {
    for (const r of [
      { kind: 'accepted', confirm: '_INBOX.abc' },
      { kind: 'working' },
      { kind: 'ok', result: null },
      { kind: 'ok', result: { powerState: 'on' } },
    ] as const)
      expect(decodeReply(encodeReply(r))).toEqual(r);
  });

  it('answers any bytes with a frame or a ForwardCodecError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (data) => {
        for (const decode of [decodeRequest, decodeReply]) {
          try {
            decode(data);
          } catch (err) {
            if (!(err instanceof ForwardCodecError)) throw err;
          }
        }
      }),
    );
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const data = bytes(JSON.stringify({ v: 1, action: 'provision', args: value, from: 'a' }));
        try {
          decodeRequest(data);
        } catch (err) {
          if (!(err instanceof ForwardCodecError)) throw err;
        }
      }),
    );
  });
});
