import { writeFile } from 'node:fs/promises';
import { renderStatesMarkdown } from '../controller/conductor/index.ts';

await writeFile(new URL('../docs/states.md', import.meta.url), renderStatesMarkdown());
