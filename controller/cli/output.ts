/** How bmctl prints: aligned tables for people, JSON for scripts. */
import { toJson, type DescMessage, type MessageShape } from '@bufbuild/protobuf';

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+';
  const fmt = (cells: readonly string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [line, fmt(headers), line, ...rows.map(fmt), line].join('\n');
}

export function messageJson<D extends DescMessage>(schema: D, message: MessageShape<D>): unknown {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** One message: JSON for scripts, a key/value table for people. */
export function printMessage<D extends DescMessage>(json: boolean, schema: D, message: MessageShape<D>): void {
  const value = messageJson(schema, message);
  if (json) printJson(value);
  else process.stdout.write(details(value as Record<string, unknown>) + '\n');
}

/** What a `delete` prints. */
export function printDeleted(json: boolean, kind: string, id: string): void {
  if (json) printJson({ deleted: id });
  else process.stdout.write(`deleted ${kind} ${id}\n`);
}

/** Key/value view of one object, for `show`. */
export function details(obj: Readonly<Record<string, unknown>>): string {
  const rows = Object.entries(obj).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)] as const);
  return table(['Property', 'Value'], rows);
}
