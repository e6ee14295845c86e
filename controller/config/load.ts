/**
 * Reads bm.toml, applies BM_<SECTION>_<KEY> environment overrides and
 * validates the result once. Errors name the key, the value and what was
 * expected; secret values are never echoed.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { BmError } from '../errors.ts';
import { configSchema, secretKeys, type Config } from './schema.ts';

export class ConfigError extends BmError {
  constructor(message: string, context: Record<string, string> = {}) {
    super('invalid-argument', message, context);
  }
}

type Raw = Record<string, Record<string, unknown>>;

function sectionsOf(): Map<string, Set<string>> {
  const sections = new Map<string, Set<string>>();
  for (const [section, schema] of Object.entries(configSchema.shape)) {
    const inner = (schema as unknown as { unwrap?: () => z.ZodObject }).unwrap?.() ?? schema;
    const shape = (inner as unknown as { shape?: Record<string, unknown> }).shape ?? {};
    sections.set(section, new Set(Object.keys(shape)));
  }
  return sections;
}

/** Applies BM_<SECTION>_<KEY> overrides; returns the names of the variables used. */
export function applyEnv(raw: Raw, env: Readonly<Record<string, string | undefined>>): { used: string[]; unknown: string[] } {
  const used: string[] = [];
  const unknown: string[] = [];
  const sections = sectionsOf();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('BM_') || value === undefined) continue;
    const rest = name.slice(3).toLowerCase();
    const section = [...sections.keys()].find((s) => rest.startsWith(`${s}_`));
    if (!section) continue;
    const key = rest.slice(section.length + 1);
    if (!sections.get(section)?.has(key)) {
      unknown.push(name);
      continue;
    }
    raw[section] = { ...(raw[section] ?? {}), [key]: value };
    used.push(name);
  }
  return { used, unknown };
}

function describe(value: unknown, key: string): string {
  if (secretKeys.has(key)) return '(hidden)';
  const text = JSON.stringify(value);
  if (text === undefined) return 'nothing';
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export interface LoadedConfig {
  readonly config: Config;
  readonly source: string;
  readonly envUsed: readonly string[];
  readonly envUnknown: readonly string[];
}

export function validateConfig(raw: Raw, envVars: ReadonlySet<string> = new Set(), source = 'config'): Config {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.join('.');
    const [section, field] = issue.path.map(String);
    const envName = section && field ? `BM_${section}_${field}`.toUpperCase() : '';
    const value = section && field ? raw[section]?.[field] : section ? raw[section] : undefined;
    const from = envVars.has(envName) ? ` (from ${envName})` : ` (in ${source})`;
    if (issue.code === 'unrecognized_keys') return `${key ? `${key}: ` : ''}unknown key(s) ${issue.keys.join(', ')}${from}`;
    return `${key}: ${issue.message}, got ${describe(value, key)}${from}`;
  });
  throw new ConfigError(`invalid configuration: ${lines.join('; ')}`, { source });
}

export async function loadConfig(
  path: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<LoadedConfig> {
  let raw: Raw = {};
  const source = path ?? '(defaults)';
  if (path) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { path });
    }
    try {
      raw = parseToml(text) as Raw;
    } catch (err) {
      throw new ConfigError(`config file ${path} is not valid TOML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, {
        path,
      });
    }
  }
  const { used, unknown } = applyEnv(raw, env);
  return { config: validateConfig(raw, new Set(used), source), source, envUsed: used, envUnknown: unknown };
}
