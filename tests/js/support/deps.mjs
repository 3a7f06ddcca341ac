// Resolve the npm packages installed for the browser tests (tests/e2e/node_modules, see
// tests/e2e/package.json); the JS unit tests share them instead of keeping a second install.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const requireE2e = createRequire(path.join(repoRoot, 'tests', 'e2e', 'package.json'));

export function loadWs() {
  return requireE2e('ws');
}
