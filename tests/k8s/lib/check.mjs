// Renders every kustomization under k8s/ (base and each overlay) and checks the result:
// kubectl cross-check (when kubectl is installed), kubernetes-models schemas, the strict structural
// pass, and the Ringside policy. Returns one result per kustomization.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import assert from 'node:assert';
import { render, canonical, parseYamlDocs } from './kustomize.mjs';
import { strictCheck, modelCheck } from './schema.mjs';
import { checkPolicy } from './policy.mjs';

export function kubectlAvailable() {
  if (process.env.RINGSIDE_K8S_NO_KUBECTL) return false;
  return spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 10000 }).status === 0;
}

export function kustomizations(k8sDir) {
  const out = [path.join(k8sDir, 'base')];
  const ov = path.join(k8sDir, 'overlays');
  if (fs.existsSync(ov)) {
    for (const d of fs.readdirSync(ov).sort()) out.push(path.join(ov, d));
  }
  return out;
}

function firstDiff(a, b, at = '') {
  if (JSON.stringify(a) === JSON.stringify(b)) return null;
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDiff(a[k], b[k], `${at}/${k}`);
      if (d) return d;
    }
  }
  return `${at}: ours ${JSON.stringify(a)?.slice(0, 200)} vs kubectl ${JSON.stringify(b)?.slice(0, 200)}`;
}

export async function checkOne(dir, repo, { kubectl }) {
  const errs = [];
  let objs;
  try {
    objs = render(dir);
  } catch (e) {
    return { dir, errs: [`render: ${e.message}`], objs: [] };
  }
  if (kubectl) {
    const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) errs.push(`kubectl kustomize: ${r.stderr.trim()}`);
    else {
      const theirs = canonical(parseYamlDocs(r.stdout, 'kubectl output'));
      const ours = canonical(objs);
      if (theirs.length !== ours.length) errs.push(`kubectl renders ${theirs.length} objects, ours ${ours.length}`);
      else {
        const d = firstDiff(ours, theirs);
        if (d) errs.push(`renderers disagree at ${d}`);
      }
    }
  }
  for (const o of objs) {
    errs.push(...strictCheck(o).map((e) => `schema(strict) ${o.metadata?.name}: ${e}`));
    errs.push(...(await modelCheck(o)).map((e) => `schema ${o.metadata?.name}: ${e}`));
  }
  const pol = checkPolicy(objs, repo);
  errs.push(...pol.errs.map((e) => `policy: ${e}`));
  if (pol.sidecars === 0) errs.push('policy: no workload carries the ringside sidecar');
  return { dir, errs, objs };
}

export async function checkTree(k8sDir, repo, opts) {
  const results = [];
  for (const d of kustomizations(k8sDir)) results.push(await checkOne(d, repo, opts));
  return results;
}
