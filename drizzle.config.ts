import { defineConfig } from 'drizzle-kit';

// Only `drizzle-kit generate` uses this (it needs no database); migrations are
// applied by `bmctl db sync`, which reads the committed SQL in db/migrations.
export default defineConfig({
  dialect: 'mysql',
  schema: './db/schema.ts',
  out: './db/migrations',
});
