/**
 * The options every bmctl command takes (before or after its name). Command
 * files read them through a getter, so they never import the program back.
 */
export interface GlobalOptions {
  readonly url?: string;
  readonly token?: string;
  readonly json: boolean;
}

export type Globals = () => GlobalOptions;

/** The API address bmctl uses when neither --url nor BM_URL says otherwise (DESIGN.md: TCP 6385). */
export const DEFAULT_API_URL = '127.0.0.1:6385';

export function apiUrl(opts: { readonly url?: string }): string {
  return opts.url ?? process.env.BM_URL ?? DEFAULT_API_URL;
}
