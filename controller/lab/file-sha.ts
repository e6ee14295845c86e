/** SHA-256 of the first `length` bytes of a file, read in 4 MiB pieces (disks in tests are large and sparse). */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

export async function sha256OfFilePrefix(file: string, length: number): Promise<string> {
  const handle = await open(file, 'r');
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(4 * 1024 * 1024);
  try {
    for (let done = 0; done < length; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - done), done);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}
