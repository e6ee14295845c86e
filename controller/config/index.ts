/** The public face of controller/config/: what other folders import (scripts/check-imports.ts). */
export { applyEnv, ConfigError, loadConfig, validateConfig } from './load.ts';
export type { Config } from './schema.ts';
