/** The public face of db/: what other folders import (scripts/check-imports.ts). */
export { type Database, DatabaseUrlError, type DbHandle, openDatabase, parseDatabaseUrl, redactDatabaseUrl } from './connect.ts';
export { dropDatabase, migrationsFolder, syncDatabase } from './migrate.ts';
export {
  type ApiTokenRow,
  apiTokens,
  type ControllerRow,
  controllers,
  dhcpLeases,
  type FlavorRow,
  flavors,
  type ImageRow,
  images,
  type InstanceRow,
  instances,
  type NodeRow,
  nodes,
  type PortRow,
  ports,
} from './schema.ts';
