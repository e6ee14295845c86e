/** grpc.health.v1: SERVING while the controller accepts work, NOT_SERVING while it stops. */
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { Health, HealthCheckResponse_ServingStatus as Serving } from '../../proto/gen/grpc/health/v1/health_pb.js';

export class HealthState {
  #serving = true;
  readonly #waiters = new Set<() => void>();

  get serving(): boolean {
    return this.#serving;
  }

  set(serving: boolean): void {
    this.#serving = serving;
    for (const wake of this.#waiters) wake();
  }

  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.#waiters.delete(wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
  }
}

export function healthHandlers(state: HealthState): ServiceHandlers<typeof Health> {
  const statusOf = (): Serving => (state.serving ? Serving.SERVING : Serving.NOT_SERVING);
  return {
    check: () => ({ status: statusOf() }),
    async *watch(_req, ctx) {
      while (!ctx.signal.aborted) {
        yield { status: statusOf() };
        await state.changed(ctx.signal);
      }
    },
  };
}
