/** Joins two sockets both ways; either side ending or failing ends both. */
import type net from 'node:net';

export function splice(a: net.Socket, b: net.Socket, open?: Set<net.Socket>): void {
  for (const s of [a, b]) {
    open?.add(s);
    s.once('close', () => open?.delete(s));
  }
  a.pipe(b);
  b.pipe(a);
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.once('error', end).once('close', end);
  b.once('error', end).once('close', end);
}
