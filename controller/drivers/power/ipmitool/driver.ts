/**
 * The seed's way of driving a BMC: `ipmitool -I lanplus` as a subprocess per
 * call. Kept for BMCs the native client does not get along with. The password
 * goes through the environment (`-E` reads IPMI_PASSWORD), never the command
 * line, where `ps` would show it to every user of the host.
 */
import { execFile } from 'node:child_process';
import type { BmcTarget, BootDevice, BootDeviceSetting, PowerControl, PowerState, PowerTarget } from '../types.ts';
import { BmcAuthError, BmcCommandError, BmcTimeoutError, type BmcContext } from '../errors.ts';
import { classifyFailure, parseBootFlags, parsePowerStatus } from './parse.ts';

export interface IpmitoolOptions {
  readonly binary?: string;
  /** Cipher suite (3: HMAC-SHA1/AES; 17: HMAC-SHA256/AES). */
  readonly cipherSuite?: number;
  readonly privilege?: 'ADMINISTRATOR' | 'OPERATOR';
  /** Retransmissions and seconds between them (ipmitool -R/-N). */
  readonly retries?: number;
  readonly intervalSeconds?: number;
  /** Hard cap on one ipmitool run. */
  readonly timeoutMs?: number;
}

const CONTROL: Readonly<Record<PowerTarget, string>> = { on: 'on', off: 'off', reboot: 'cycle', 'soft-off': 'soft' };

export class IpmitoolDriver implements PowerControl {
  readonly #target: BmcTarget;
  readonly #opts: Required<IpmitoolOptions>;
  readonly #context: BmcContext;

  constructor(target: BmcTarget, options: IpmitoolOptions = {}) {
    this.#target = target;
    this.#opts = {
      binary: 'ipmitool',
      cipherSuite: 3,
      privilege: 'ADMINISTRATOR',
      retries: 1,
      intervalSeconds: 1,
      timeoutMs: 15_000,
      ...options,
    };
    this.#context = { node: target.nodeUuid, bmc: `${target.address}:${target.port}` };
  }

  #run(args: readonly string[]): Promise<string> {
    const t = this.#target;
    const argv = [
      '-I',
      'lanplus',
      '-H',
      t.address,
      '-p',
      String(t.port),
      '-U',
      t.username,
      '-E',
      '-L',
      this.#opts.privilege,
      '-C',
      String(this.#opts.cipherSuite),
      '-R',
      String(this.#opts.retries),
      '-N',
      String(this.#opts.intervalSeconds),
      '-v',
      ...args,
    ];
    return new Promise((resolve, reject) => {
      execFile(
        this.#opts.binary,
        argv,
        {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', IPMI_PASSWORD: t.password },
          timeout: this.#opts.timeoutMs,
          maxBuffer: 1024 * 1024,
        },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          if ((err as NodeJS.ErrnoException).code === 'ENOENT')
            return reject(new BmcCommandError(this.#context, `${this.#opts.binary} is not installed (apt-get install ipmitool)`));
          if (err.killed) return reject(new BmcTimeoutError(this.#context, `ipmitool ran longer than ${this.#opts.timeoutMs} ms`));
          const lastLine =
            stderr
              .trim()
              .split('\n')
              .filter((l) => !/IANA PEN/.test(l))
              .pop() ?? `exit ${String(err.code)}`;
          switch (classifyFailure(stderr)) {
            case 'auth':
              return reject(new BmcAuthError(this.#context, lastLine));
            case 'timeout':
              return reject(new BmcTimeoutError(this.#context, lastLine));
            default:
              return reject(new BmcCommandError(this.#context, lastLine));
          }
        },
      );
    });
  }

  async getPowerState(): Promise<PowerState> {
    const out = await this.#run(['power', 'status']);
    const state = parsePowerStatus(out);
    if (!state) throw new BmcCommandError(this.#context, `unexpected power status output: ${out.trim().slice(0, 120)}`);
    return state;
  }

  async setPowerState(target: PowerTarget): Promise<void> {
    await this.#run(['power', CONTROL[target]]);
  }

  async setBootDevice(device: BootDevice, options: { persistent: boolean; uefi: boolean }): Promise<void> {
    const flags = [options.persistent ? 'persistent' : '', options.uefi ? 'efiboot' : ''].filter(Boolean);
    await this.#run(['chassis', 'bootdev', device, ...(flags.length > 0 ? [`options=${flags.join(',')}`] : [])]);
  }

  async getBootDevice(): Promise<BootDeviceSetting> {
    const out = await this.#run(['chassis', 'bootparam', 'get', '5']);
    const flags = parseBootFlags(out);
    if (!flags) throw new BmcCommandError(this.#context, 'unexpected boot parameter output');
    return flags;
  }

  async close(): Promise<void> {
    // Every call is its own process and session: nothing to close.
  }
}
