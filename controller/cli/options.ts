/**
 * The options every bmctl command takes (before or after its name). Command
 * files read them through a getter, so they never import the program back.
 */
import { readSavedDefaults } from './saved-defaults.ts';

export interface GlobalOptions {
  readonly url?: string;
  readonly token?: string;
  /** PEM file of the CA the controller's certificate must chain to (BM_CA); implies TLS. */
  readonly ca?: string;
  readonly json: boolean;
}

export type Globals = () => GlobalOptions;

/** The API address bmctl uses when neither --url nor BM_URL says otherwise (DESIGN.md: TCP 6385). */
export const DEFAULT_API_URL = '127.0.0.1:6385';

/**
 * Where bmctl talks, with which token and which CA: flags, then
 * BM_URL/BM_TOKEN/BM_CA; only when none of --url, --token, BM_URL and
 * BM_TOKEN is set, the saved defaults (`bmctl lab up`), so a saved lab token
 * never goes to an address given by hand.
 */
export function apiTarget(
  opts: { readonly url?: string; readonly token?: string; readonly ca?: string },
  env: Readonly<Record<string, string | undefined>> = process.env,
): { url: string; token?: string; ca?: string } {
  const url = opts.url ?? env.BM_URL;
  const token = opts.token ?? env.BM_TOKEN;
  const ca = opts.ca ?? (env.BM_CA || undefined);
  const withCa = <T extends object>(target: T): T & { ca?: string } => (ca === undefined ? target : { ...target, ca });
  if (url === undefined && token === undefined) {
    const saved = readSavedDefaults(env);
    if (saved) return withCa(saved);
  }
  return withCa(token === undefined ? { url: url ?? DEFAULT_API_URL } : { url: url ?? DEFAULT_API_URL, token });
}

export function apiUrl(opts: { readonly url?: string; readonly token?: string }): string {
  return apiTarget(opts).url;
}
