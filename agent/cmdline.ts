/**
 * What the agent needs to find its controller, read from the kernel command
 * line the controller's iPXE script wrote (controller/boot/ipxe-script.ts):
 *   bm.controller=<url>  bm.node=<uuid>  bm.token=<agent token>  bm.purpose=<deploy|clean|inspect>
 *   bm.ca=<sha256 hex of the controller's CA>  bm.ca_url=<where the boot server serves it> (API TLS on)
 * Flags and environment variables override it (tests run the agent on a
 * machine whose /proc/cmdline is not the ramdisk's).
 */
export interface KernelParams {
  readonly controller?: string;
  readonly nodeUuid?: string;
  readonly token?: string;
  readonly purpose?: string;
  readonly ca?: string;
  readonly caUrl?: string;
}

/** Splits a command line as the kernel does: whitespace-separated, double quotes group. */
export function splitCmdline(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quoted = false;
  for (const char of text) {
    if (char === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && /\s/.test(char)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += char;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

export function parseKernelParams(text: string): KernelParams {
  const values = new Map<string, string>();
  for (const word of splitCmdline(text)) {
    const eq = word.indexOf('=');
    if (eq <= 0) continue;
    // The last occurrence wins, as for kernel parameters appended by a boot loader.
    values.set(word.slice(0, eq), word.slice(eq + 1));
  }
  const pick = (key: string): string | undefined => {
    const value = values.get(key);
    return value === undefined || value === '' ? undefined : value;
  };
  const params: { -readonly [K in keyof KernelParams]: KernelParams[K] } = {};
  const controller = pick('bm.controller');
  const nodeUuid = pick('bm.node');
  const token = pick('bm.token');
  const purpose = pick('bm.purpose');
  if (controller !== undefined) params.controller = controller;
  if (nodeUuid !== undefined) params.nodeUuid = nodeUuid;
  if (token !== undefined) params.token = token;
  if (purpose !== undefined) params.purpose = purpose;
  const ca = pick('bm.ca');
  const caUrl = pick('bm.ca_url');
  if (ca !== undefined) params.ca = ca;
  if (caUrl !== undefined) params.caUrl = caUrl;
  return params;
}

/** Later sources override earlier ones, field by field. */
export function mergeParams(...sources: readonly KernelParams[]): KernelParams {
  const merged: { -readonly [K in keyof KernelParams]: KernelParams[K] } = {};
  for (const source of sources) {
    if (source.controller !== undefined) merged.controller = source.controller;
    if (source.nodeUuid !== undefined) merged.nodeUuid = source.nodeUuid;
    if (source.token !== undefined) merged.token = source.token;
    if (source.purpose !== undefined) merged.purpose = source.purpose;
    if (source.ca !== undefined) merged.ca = source.ca;
    if (source.caUrl !== undefined) merged.caUrl = source.caUrl;
  }
  return merged;
}

/**
 * The gRPC target (host:port) of a controller URL: `http://10.0.0.1:6385`,
 * `grpc://host:6385` or plain `host:6385`; the port defaults to 6385.
 */
export function controllerTarget(url: string): string {
  const withoutScheme = url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '');
  if (withoutScheme === '') throw new Error(`controller URL "${url}" names no host`);
  if (/^\[[^\]]+\]$/.test(withoutScheme) || !/:\d+$/.test(withoutScheme)) return `${withoutScheme}:6385`;
  return withoutScheme;
}
