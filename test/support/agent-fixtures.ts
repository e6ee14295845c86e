/** The agent's inventory fixture trees (/proc and /sys as read from real machines; see test/agent/fixtures/README.md). */
import path from 'node:path';
import { repoRoot } from '../../controller/lab/index.ts';

export const fixtureRoot = (name: string): string => path.join(repoRoot, 'test/agent/fixtures', name);
