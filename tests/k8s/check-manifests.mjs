// ctest k8s_manifests: render and check every kustomization under k8s/.
// Usage: node check-manifests.mjs [REPO_ROOT]   (default: two levels up)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTree, kubectlAvailable } from './lib/check.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(process.argv[2] ?? path.join(here, '..', '..'));
const kubectl = kubectlAvailable();
console.log(`renderer: built-in kustomize subset${kubectl ? ' + kubectl kustomize cross-check' : ' (kubectl not found: no cross-check)'}`);
const results = await checkTree(path.join(repo, 'k8s'), repo, { kubectl });
let failed = 0;
for (const r of results) {
  const name = path.relative(repo, r.dir);
  if (r.errs.length) {
    failed++;
    console.log(`FAIL ${name}`);
    for (const e of r.errs) console.log(`  ${e}`);
  } else {
    console.log(`ok   ${name} (${r.objs.length} objects: ${[...new Set(r.objs.map((o) => o.kind))].join(', ')})`);
  }
}
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed || results.length === 0 ? 1 : 0);
