import { describe, expect, it } from 'vitest';
import { FeedEndedError, ImageFeed } from './image-feed.ts';

const MIB = 1024 * 1024;

describe('the image feed a relay reads', () => {
  it('merges frames into data and zero runs and clips them to a range', () => {
    const feed = new ImageFeed('img', 10 * MIB, '/dev/null', 0);
    feed.record(0, MIB, true);
    feed.record(MIB, MIB, true);
    feed.record(2 * MIB, 3 * MIB, false);
    feed.record(5 * MIB, MIB, true);
    expect([...feed.runs(0, 6 * MIB)]).toEqual([
      { offset: 0, length: 2 * MIB, data: true },
      { offset: 2 * MIB, length: 3 * MIB, data: false },
      { offset: 5 * MIB, length: MIB, data: true },
    ]);
    expect([...feed.runs(MIB + 5, 3 * MIB)]).toEqual([
      { offset: MIB + 5, length: MIB - 5, data: true },
      { offset: 2 * MIB, length: MIB, data: false },
    ]);
  });

  it('forwards what lay before its resume offset as data, and truncates to a later resume of the same image', () => {
    const feed = new ImageFeed('img', 10 * MIB, '/dev/null', 2 * MIB);
    expect(feed.committedOffset).toBe(2 * MIB);
    feed.record(2 * MIB, 2 * MIB, false);
    feed.record(4 * MIB, 2 * MIB, true);
    feed.commit(6 * MIB);
    feed.restart(5 * MIB);
    expect(feed.committedOffset).toBe(5 * MIB);
    expect([...feed.runs(0, 10 * MIB)]).toEqual([
      { offset: 0, length: 2 * MIB, data: true },
      { offset: 2 * MIB, length: 2 * MIB, data: false },
      { offset: 4 * MIB, length: MIB, data: true },
    ]);
    expect(feed.sameImage('img', 10 * MIB, '/dev/null')).toBe(true);
    expect(feed.sameImage('other', 10 * MIB, '/dev/null')).toBe(false);
  });

  it('wakes a waiting relay on a commit past its position, and fails it when the feed ends or stalls', async () => {
    const feed = new ImageFeed('img', 10 * MIB, '/dev/null', 0);
    const signal = new AbortController().signal;
    const waiting = feed.waitPast(0, signal, 10_000);
    feed.commit(4 * MIB);
    expect(await waiting).toBe(4 * MIB);
    await expect(feed.waitPast(4 * MIB, signal, 30)).rejects.toBeInstanceOf(FeedEndedError);
    const ending = feed.waitPast(4 * MIB, signal, 10_000);
    feed.end('the disk is being erased');
    await expect(ending).rejects.toThrow(/the disk is being erased/);
    expect(feed.sameImage('img', 10 * MIB, '/dev/null')).toBe(false);
  });

  it('gives up waiting when the relay call is cancelled', async () => {
    const feed = new ImageFeed('img', 10 * MIB, '/dev/null', 0);
    const abort = new AbortController();
    const waiting = feed.waitPast(0, abort.signal, 10_000);
    abort.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
  });
});
