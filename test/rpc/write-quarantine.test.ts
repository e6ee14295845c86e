/**
 * The quarantine (proto/rpc/write-quarantine.ts) holds a buffer for its
 * time and then lets it go, without keeping the process alive meanwhile.
 */
import { describe, expect, it } from 'vitest';
import { quarantine, quarantinedCount } from '../../proto/rpc/write-quarantine.ts';

describe('write quarantine', () => {
  it('holds each buffer until its time is up, then drops it', async () => {
    const before = quarantinedCount();
    quarantine(Buffer.alloc(16), 40);
    quarantine(Buffer.alloc(16), 400);
    expect(quarantinedCount()).toBe(before + 2);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(quarantinedCount()).toBe(before + 1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(quarantinedCount()).toBe(before);
  });
});
