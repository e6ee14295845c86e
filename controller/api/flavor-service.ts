/** FlavorService: thin handlers over the flavor catalog; changing flavors is the fleet's business (admin). */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { FlavorSchema, FlavorService, type Flavor } from '../../proto/gen/bm/v1/flavor_pb.js';
import { callerOf, requireAdmin } from '../auth/index.ts';
import type { FlavorCatalog, FlavorRecord } from '../flavors/index.ts';

export function flavorMessage(f: FlavorRecord): Flavor {
  return create(FlavorSchema, {
    uuid: f.uuid,
    name: f.name,
    ramMb: f.ramMb,
    diskGb: f.diskGb,
    cpus: f.cpus,
    extraSpecs: { ...f.extraSpecs },
    createdAt: timestampFromDate(f.createdAt),
  });
}

export function flavorHandlers(flavors: FlavorCatalog): ServiceHandlers<typeof FlavorService> {
  return {
    async createFlavor(req, ctx) {
      requireAdmin(ctx, 'creating a flavor');
      return flavorMessage(
        await flavors.create({
          name: req.name,
          ramMb: req.ramMb,
          diskGb: req.diskGb,
          cpus: req.cpus,
          cpuArch: req.cpuArch,
          resourceClass: req.resourceClass,
        }),
      );
    },
    async getFlavor(req, ctx) {
      callerOf(ctx);
      return flavorMessage(await flavors.get(req.id));
    },
    async listFlavors(_req, ctx) {
      callerOf(ctx);
      return { flavors: (await flavors.list()).map(flavorMessage) };
    },
    async deleteFlavor(req, ctx) {
      requireAdmin(ctx, 'deleting a flavor');
      await flavors.delete(req.id);
      return {};
    },
    async setFlavorKeys(req, ctx) {
      requireAdmin(ctx, 'changing a flavor');
      return flavorMessage(await flavors.setKeys(req.id, req.keys));
    },
    async unsetFlavorKeys(req, ctx) {
      requireAdmin(ctx, 'changing a flavor');
      return flavorMessage(await flavors.unsetKeys(req.id, req.keys));
    },
  };
}
