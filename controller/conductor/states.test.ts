import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PROVISION_STATES } from '../nodes/types.ts';
import { FAILED_STATES, InvalidTransitionError, nextState, renderStatesMarkdown, TRANSITIONS } from './states.ts';

describe('provision state machine', () => {
  it('follows the DESIGN.md lifecycle', () => {
    expect(nextState('n', 'enroll', 'manage')).toBe('verifying');
    expect(nextState('n', 'verifying', 'done')).toBe('manageable');
    expect(nextState('n', 'manageable', 'provide')).toBe('cleaning');
    expect(nextState('n', 'cleaning', 'done')).toBe('available');
    expect(nextState('n', 'available', 'deploy')).toBe('deploying');
    expect(nextState('n', 'deploying', 'wait')).toBe('wait-callback');
    expect(nextState('n', 'wait-callback', 'resume')).toBe('deploying');
    expect(nextState('n', 'deploying', 'done')).toBe('active');
    expect(nextState('n', 'active', 'undeploy')).toBe('deleting');
    expect(nextState('n', 'deleting', 'done')).toBe('cleaning');
  });

  it('refuses an edge that is not in the table, listing what is possible', () => {
    expect(() => nextState('node-1', 'enroll', 'deploy')).toThrow(InvalidTransitionError);
    expect(() => nextState('node-1', 'enroll', 'deploy')).toThrow(/node-1 is enroll: cannot deploy \(possible: manage\)/);
  });

  it('uses only known states, has no duplicate edges, and reaches every state', () => {
    const keys = TRANSITIONS.map((t) => `${t.from}/${t.event}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const t of TRANSITIONS) {
      expect(PROVISION_STATES).toContain(t.from);
      expect(PROVISION_STATES).toContain(t.to);
    }
    const reached = new Set<string>(['enroll']);
    for (let changed = true; changed; ) {
      changed = false;
      for (const t of TRANSITIONS) if (reached.has(t.from) && !reached.has(t.to)) changed = reached.add(t.to) !== null;
    }
    expect([...reached].sort()).toEqual([...PROVISION_STATES].sort());
  });

  it('gives every failure state a way back', () => {
    for (const failed of FAILED_STATES) expect(TRANSITIONS.some((t) => t.from === failed)).toBe(true);
  });

  it('matches the generated docs page', async () => {
    const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/states.md');
    expect(await readFile(docs, 'utf8')).toBe(renderStatesMarkdown());
  });
});
