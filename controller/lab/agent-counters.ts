/**
 * The deploy agent's byte counters, read from its log: each finished image
 * write logs what every stream of that deploy delivered, re-sent bytes
 * included (agent/server/received-bytes.ts). A resumed deploy's cost lives
 * on the agent because the controller that streamed the first part may be
 * dead; tests and the takeover benchmark read it here.
 */
/** The counters the agent logs (its ReceivedBytesSnapshot); read from the log line, not imported, as controller/ never imports agent/. */
export interface AgentStreamCounters {
  /** Streams of this deploy so far, the first included. */
  readonly streams: number;
  /** Data bytes received (zero runs travel as a length and are not counted). */
  readonly bytesReceived: number;
  /** Data bytes received at offsets an earlier stream of this deploy had already delivered. */
  readonly bytesResent: number;
}

/** One entry per finished image write, in order, from an agent's stderr (AgentProcess.output()). */
export function agentStreamCounters(output: string): AgentStreamCounters[] {
  const found: AgentStreamCounters[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"write-image finished"')) continue;
    const entry = JSON.parse(line) as Partial<Record<keyof AgentStreamCounters, unknown>>;
    const { streams, bytesReceived, bytesResent } = entry;
    if (typeof streams !== 'number' || typeof bytesReceived !== 'number' || typeof bytesResent !== 'number')
      throw new Error(`an agent's write-image line lacks its counters: ${line.slice(0, 300)}`);
    found.push({ streams, bytesReceived, bytesResent });
  }
  return found;
}

/** A write-image stream as the agent saw it begin: when, where it was asked to start, where it continued. */
export interface AgentStreamStart {
  /** The agent's clock, in ms since the epoch. */
  readonly at: number;
  readonly resumeOffset: number;
  readonly startOffset: number;
}

/** Every write-image stream an agent began, in order. */
export function agentStreamStarts(output: string): AgentStreamStart[] {
  const found: AgentStreamStart[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"write-image started"')) continue;
    const entry = JSON.parse(line) as { time?: unknown; resumeOffset?: unknown; startOffset?: unknown };
    if (typeof entry.time !== 'string' || typeof entry.resumeOffset !== 'number' || typeof entry.startOffset !== 'number')
      throw new Error(`an agent's write-image start line lacks its fields: ${line.slice(0, 300)}`);
    found.push({ at: Date.parse(entry.time), resumeOffset: entry.resumeOffset, startOffset: entry.startOffset });
  }
  return found;
}
