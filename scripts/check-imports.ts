/**
 * Fails when an import reaches past a folder's public face (STYLE.md rule 11).
 * Run by `npm run check:imports` and by scripts/test.sh.
 *
 * What counts as a folder: every directory of the repository's own sources.
 * For an import of file T from file F (relative specifiers only; packages
 * and node: are not ours to police), it is fine when
 *   1. T lies in F's folder or one of its subfolders (a folder owns its insides);
 *   2. T lies directly in a folder that encloses F (the shared vocabulary of
 *      an enclosing folder, e.g. controller/errors.ts);
 *   3. T is a folder's index.ts: its public face (nested folders have faces
 *      of their own, e.g. drivers/power/ipmi/index.ts);
 *   4. T is generated code (proto/gen/: no hand-written face to put there).
 * Anything else reaches past a face and is reported with the face to use.
 *
 * Tests (test/, *.test.ts) may import deep: they pin down internals on
 * purpose, and widening a face only for a test would make it lie about what
 * is public. The other way is refused: code outside test/ never imports
 * test/ (STYLE.md rule 12).
 *
 * Layering rules on top (tests exempt): agent/ and controller/ never import
 * each other (they run on different machines and meet only over proto/),
 * db/ imports neither, proto/ imports none of the three; and from issue 11,
 * the conductor imports nothing from a specific power driver (only
 * controller/drivers/power's face, which itself re-exports no driver's
 * folder), and no driver imports upward (files under controller/drivers/
 * import only controller/drivers/, the loose files of controller/ such as
 * errors.ts, proto/ and packages).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Not the project's hand-written sources, or not sources at all. */
const SKIPPED_DIRS = new Set([
  'node_modules',
  '.git',
  'dist',
  'coverage',
  'bench-results',
  '.lab',
  'ramdisk/out',
  'ramdisk/cache',
  'proto/gen',
]);
const GENERATED = 'proto/gen/';
const FACE = 'index.ts';
const DRIVERS = 'controller/drivers/';
const POWER = 'controller/drivers/power/';
const CONDUCTOR = 'controller/conductor/';

/** Top-level folders that must not import others (what each may not reach, and why). */
const LAYERS: readonly { readonly from: string; readonly not: readonly string[]; readonly why: string }[] = [
  { from: 'agent/', not: ['controller/', 'db/'], why: 'the agent runs in the ramdisk and shares only proto/ with the controller' },
  { from: 'controller/', not: ['agent/'], why: 'the controller talks to the agent over proto/, never through its code' },
  { from: 'db/', not: ['controller/', 'agent/'], why: 'the schema sits below every user of it' },
  { from: 'proto/', not: ['controller/', 'agent/', 'db/'], why: 'the contracts and the adapter sit below both ends' },
];

export interface Violation {
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  readonly message: string;
}

function sourceFiles(dir = ''): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(rel) && !SKIPPED_DIRS.has(entry.name)) files.push(...sourceFiles(rel));
    } else if (/\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
      files.push(rel);
    }
  }
  return files;
}

const isTest = (file: string): boolean => file.startsWith('test/') || /\.test\.m?ts$/.test(file);
/** a is b or a folder enclosing b (folders as repository-relative paths, '' the root). */
const encloses = (a: string, b: string): boolean => a === '' || b === a || b.startsWith(`${a}/`);
const dirOf = (file: string): string => {
  const dir = path.posix.dirname(file);
  return dir === '.' ? '' : dir;
};

/** The repository-relative file a relative specifier names, or undefined when it is not one of ours. */
function resolve(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const target = path.posix.normalize(path.posix.join(dirOf(from), specifier));
  if (target.startsWith('..')) return undefined;
  for (const candidate of [target, target.replace(/\.js$/, '.ts'), target.replace(/\.js$/, '.d.ts'), `${target}.ts`, `${target}/${FACE}`]) {
    const full = path.join(root, candidate);
    if (existsSync(full) && statSync(full).isFile()) return candidate;
  }
  return target;
}

/** The folders T lies in that do not enclose F, outermost first: the faces an import from F has to pass. */
function foldersCrossed(from: string, target: string): string[] {
  const fromDir = dirOf(from);
  const crossed: string[] = [];
  let dir = dirOf(target);
  while (!encloses(dir, fromDir)) {
    crossed.unshift(dir);
    dir = dirOf(dir);
  }
  return crossed;
}

function relativeSpecifier(from: string, target: string): string {
  const rel = path.posix.relative(dirOf(from) || '.', target);
  return rel.startsWith('.') ? rel : `./${rel}`;
}

const hasFace = (dir: string): boolean => existsSync(path.join(root, dir, FACE));

/**
 * The face an import of `target` from `from` should use: a power driver's own
 * (the power face names no driver), else the outermost crossed folder that
 * has one; failing that, the part to give one (below agent/, controller/, proto/).
 */
function faceFor(from: string, target: string): { face: string; exists: boolean } {
  const driver = powerDriverFolder(target);
  if (driver) return { face: `${driver}/${FACE}`, exists: hasFace(driver) };
  const crossed = foldersCrossed(from, target);
  const withFace = crossed.find(hasFace);
  if (withFace) return { face: `${withFace}/${FACE}`, exists: true };
  const part = crossed.find((dir) => dir.includes('/')) ?? crossed[0] ?? dirOf(target);
  return { face: `${part}/${FACE}`, exists: false };
}

/** A specific driver's folder under controller/drivers/power/ (ipmi, ipmitool, fake, ...). */
function powerDriverFolder(target: string): string | undefined {
  if (!target.startsWith(POWER)) return undefined;
  const rest = target.slice(POWER.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? POWER + rest.slice(0, slash) : undefined;
}

export function checkFile(file: string, text: string): Violation[] {
  const violations: Violation[] = [];
  const info = ts.preProcessFile(text, true, true);
  const lineOf = (pos: number): number => text.slice(0, pos).split('\n').length;
  for (const ref of info.importedFiles) {
    const specifier = ref.fileName;
    const target = resolve(file, specifier);
    if (target === undefined) continue;
    const at = { file, line: lineOf(ref.pos), specifier };
    const fail = (message: string): void => {
      violations.push({ ...at, message });
    };

    if (!isTest(file) && target.startsWith('test/')) {
      fail(`imports test code (${target}); what the product runs lives outside test/`);
      continue;
    }

    const layer = isTest(file) ? undefined : LAYERS.find((l) => file.startsWith(l.from) && l.not.some((n) => target.startsWith(n)));
    if (layer) {
      fail(`imports ${target}, but ${layer.from} never imports ${layer.not.join(' or ')}: ${layer.why}`);
      continue;
    }

    if (!isTest(file) && file.startsWith(CONDUCTOR) && powerDriverFolder(target)) {
      fail(
        `is the conductor importing a specific power driver (${target}); import the driver interface from '${relativeSpecifier(file, `${POWER}${FACE}`)}'`,
      );
      continue;
    }

    if (file === `${POWER}${FACE}` && powerDriverFolder(target)) {
      fail(
        `re-exports a specific driver (${target}) from the power drivers' face, which the conductor imports; drivers are reached through the factory`,
      );
      continue;
    }

    if (
      file.startsWith(DRIVERS) &&
      !isTest(file) &&
      target.startsWith('controller/') &&
      !target.startsWith(DRIVERS) &&
      dirOf(target) !== 'controller'
    ) {
      fail(`is a driver importing upward (${target}); drivers import only controller/drivers/ and controller/*.ts (errors)`);
      continue;
    }

    if (isTest(file) || target.startsWith(GENERATED)) continue;
    const fromDir = dirOf(file);
    const targetDir = dirOf(target);
    if (encloses(fromDir, targetDir) || encloses(targetDir, fromDir) || path.posix.basename(target) === FACE) continue;
    const { face, exists } = faceFor(file, target);
    fail(
      exists
        ? `reaches past ${face}: import from '${relativeSpecifier(file, face)}' instead (export what is needed there if it is missing)`
        : `reaches into ${path.posix.dirname(face)}/, which has no public face: add ${face} exporting what others use, and import from '${relativeSpecifier(file, face)}'`,
    );
  }
  return violations;
}

export function checkRepository(): Violation[] {
  const violations: Violation[] = [];
  for (const file of sourceFiles()) violations.push(...checkFile(file, readFileSync(path.join(root, file), 'utf8')));
  return violations;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const violations = checkRepository();
  for (const v of violations) process.stderr.write(`${v.file}:${v.line}: '${v.specifier}' ${v.message}\n`);
  if (violations.length > 0) {
    process.stderr.write(`check-imports: ${violations.length} import(s) reach past a public face (rules: scripts/check-imports.ts)\n`);
    process.exit(1);
  }
  process.stdout.write('check-imports: every cross-folder import goes through a public face\n');
}
