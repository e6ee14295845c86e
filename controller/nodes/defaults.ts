/**
 * What a node gets when its enrollment leaves a field out: the API, bmctl,
 * auto-registration and the config all read these, never a literal of their own.
 * db/schema.ts (which imports nothing of the controller) repeats them as
 * column defaults; defaults.test.ts checks that the two agree.
 */
/** RMCP/IPMI over LAN (IPMI 2.0 section 13.1). */
export const DEFAULT_PM_PORT = 623;
/** The L2 group of a node nobody put elsewhere, and the group a controller serves unless told. */
export const DEFAULT_GROUP = 'default';
/** The native IPMI 2.0 driver. */
export const DEFAULT_POWER_DRIVER = 'ipmi';
