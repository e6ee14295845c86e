import { getTableColumns } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { nodes } from '../../db/schema.ts';
import { isTransientState, TRANSIENT_STATES } from '../conductor/states.ts';
import { DEFAULT_PM_PORT, DEFAULT_POWER_DRIVER } from './defaults.ts';
import { isUuid, uuidv7 } from './uuid.ts';

describe('one vocabulary', () => {
  it('the database column defaults agree with the node defaults', () => {
    const columns = getTableColumns(nodes);
    expect(columns.pmPort.default).toBe(DEFAULT_PM_PORT);
    expect(columns.powerDriver.default).toBe(DEFAULT_POWER_DRIVER);
    // group_name's default ('' today) moves to DEFAULT_GROUP with the lead's next migration.
  });

  it('derives the states bmctl --wait waits on from the state table', () => {
    expect([...TRANSIENT_STATES].sort()).toEqual([
      'cleaning',
      'deleting',
      'deploying',
      'inspect-wait',
      'inspecting',
      'verifying',
      'wait-callback',
    ]);
    expect(isTransientState('verify-failed')).toBe(false);
    expect(isTransientState('manageable')).toBe(false);
  });

  it('accepts only a canonical lowercase uuid, not 36 dashes', () => {
    expect(isUuid(uuidv7())).toBe(true);
    expect(isUuid('-'.repeat(36))).toBe(false);
    expect(isUuid('0F0E0D0C-0B0A-4908-8706-050403020100')).toBe(false);
    expect(isUuid('0f0e0d0c0b0a49088706050403020100abcd')).toBe(false);
  });
});
