/** The scheduler's vocabulary shared by its files and its callers. */
import type { Database } from '../../db/index.ts';

/** A transaction handle: what a claim's binding writes with, so it commits (or rolls back) with the claim. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

/** Whose reservation a claimed node gets: one controller, or per node (the node's owner on the hash ring, who then runs its deploy). */
export type ClaimHolder = string | ((node: { readonly uuid: string; readonly group: string }) => string);
