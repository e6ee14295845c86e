import { describe, expect, it } from 'vitest';
import { ReceivedBytes } from './received-bytes.ts';

const MIB = 1024 * 1024;

describe('received bytes per deploy', () => {
  it('counts as re-sent only the bytes a resumed stream delivers below what earlier streams reached', () => {
    const r = new ReceivedBytes();
    r.beginStream('img/64');
    for (let off = 0; off < 10 * MIB; off += MIB) r.data(off, MIB);
    // The controller died; its peer resumes from an 8 MiB checkpoint although 10 MiB had arrived.
    r.beginStream('img/64');
    for (let off = 8 * MIB; off < 12 * MIB; off += MIB) r.data(off, MIB);
    expect(r.snapshot()).toEqual({ streams: 2, bytesReceived: 14 * MIB, bytesResent: 2 * MIB });
  });

  it('counts a frame that straddles the earlier end by its overlap only', () => {
    const r = new ReceivedBytes();
    r.beginStream('img/64');
    r.data(0, 3 * MIB);
    r.beginStream('img/64');
    r.data(2 * MIB, 4 * MIB);
    expect(r.snapshot().bytesResent).toBe(MIB);
  });

  it('starts a new count for another image, and for the same image once it was finished', () => {
    const r = new ReceivedBytes();
    r.beginStream('a/64');
    r.data(0, 4 * MIB);
    r.beginStream('b/64');
    r.data(0, MIB);
    expect(r.snapshot()).toEqual({ streams: 1, bytesReceived: MIB, bytesResent: 0 });
    r.finished();
    r.beginStream('b/64');
    r.data(0, MIB);
    expect(r.snapshot()).toEqual({ streams: 1, bytesReceived: MIB, bytesResent: 0 });
  });
});
