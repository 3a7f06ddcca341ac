// ctest k8s_negative: the checks must fail on broken manifests. Each case copies k8s/ to a temp
// directory, breaks one thing with a text edit, and expects a specific error from checkTree.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { checkTree, kubectlAvailable } from './lib/check.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(process.argv[2] ?? path.join(here, '..', '..'));
const kubectl = kubectlAvailable();

// [name, file under k8s/, from, to, expected error (regex)]
const CASES = [
  ['unknown field', 'base/deployment.yaml', '          restartPolicy: Always\n', '          restartPolicy: Always\n          bogusField: 1\n', /bogusField: unknown field/],
  ['enum typo medium', 'base/deployment.yaml', 'medium: Memory', 'medium: Memry', /medium: "Memry" is not one of/],
  ['enum typo restartPolicy', 'base/deployment.yaml', '          restartPolicy: Always', '          restartPolicy: Sometimes', /restartPolicy: "Sometimes" is not one of/],
  ['bad quantity', 'base/deployment.yaml', 'memory: 256Mi', 'memory: 256Mx', /memory: must match format "quantity"/],
  ['sidecar not native', 'base/deployment.yaml', '          restartPolicy: Always\n', '', /without restartPolicy: Always blocks the pod/],
  ['no sizeLimit on ring volume', 'base/deployment.yaml', 'sizeLimit: 64Mi', 'sizeLimit: null', /ringside-shm: emptyDir without sizeLimit/],
  ['ring volume on disk', 'base/deployment.yaml', 'medium: Memory', 'medium: ""', /must be emptyDir medium Memory/],
  ['grace period too short', 'base/deployment.yaml', '      terminationGracePeriodSeconds: 50', '      terminationGracePeriodSeconds: 30', /terminationGracePeriodSeconds 30 < drain 30 \+ preStop 5/],
  ['unknown RINGSIDE env', 'base/deployment.yaml', 'name: RINGSIDE_LOG_LEVEL', 'name: RINGSIDE_LOGLEVEL', /RINGSIDE_LOGLEVEL is not a Ringside option/],
  ['readiness on /healthz', 'base/deployment.yaml', 'path: /readyz', 'path: /healthz', /readinessProbe path \/healthz/],
  ['no startup probe', 'base/deployment.yaml', 'startupProbe:', 'x-startupProbe:', /startupProbe missing/],
  ['writable root fs', 'base/deployment.yaml', 'readOnlyRootFilesystem: true', 'readOnlyRootFilesystem: false', /readOnlyRootFilesystem must be true/],
  ['capabilities kept', 'base/deployment.yaml', 'drop: ["ALL"]', 'drop: ["NET_RAW"]', /capabilities.drop must include ALL/],
  ['privilege escalation', 'base/deployment.yaml', 'allowPrivilegeEscalation: false', 'allowPrivilegeEscalation: true', /allowPrivilegeEscalation must be false/],
  ['seccomp unconfined', 'base/deployment.yaml', 'type: RuntimeDefault', 'type: Unconfined', /seccompProfile (must be RuntimeDefault|Unconfined: must be RuntimeDefault)/],
  ['latest tag', 'base/kustomization.yaml', 'newTag: "0.1.0"', 'newTag: latest', /must be pinned/],
  ['octal mode read as decimal', 'base/deployment.yaml', 'defaultMode: 288', 'defaultMode: 440', /looks like an octal literal/],
  ['jwt key missing from Secret', 'base/common/secret-jwt.yaml', 'jwt.key:', 'jwt-key:', /has no key jwt.key/],
  ['redis not via sentinel', 'base/deployment.yaml', 'value: "redis-sentinel://', 'value: "redis://x:6379/0#', /RINGSIDE_REDIS must be redis-sentinel/],
  ['sentinel host does not exist', 'base/deployment.yaml', 'redis-sentinel-2.redis-sentinel-headless', 'redis-sentinel-3.redis-sentinel-headless', /redis-sentinel-3.redis-sentinel-headless: no such StatefulSet pod/],
  ['missing resource file', 'base/kustomization.yaml', '- pdb.yaml', '- pdb-missing.yaml', /resource pdb-missing.yaml does not exist/],
  ['no PDB', 'base/kustomization.yaml', '  - pdb.yaml\n', '', /no PodDisruptionBudget/],
  ['component targets nothing', 'overlays/injected/workload.yaml', 'ringside.io/inject: "true"', 'ringside.io/inject: "no"', /patch matches no object|target matches no object/],
  ['classic keeps restartPolicy', 'overlays/classic/move-sidecar.yaml', '- op: remove\n  path: /spec/template/spec/containers/1/restartPolicy\n', '', /restartPolicy/],
  ['ServiceMonitor unknown field', 'components/servicemonitor/servicemonitor.yaml', 'scrapeTimeout: 5s', 'scrapeTimeout: 5s\n      scrapeTimeOut: 5s', /scrapeTimeOut: unknown field/],
  ['agent limit below ring volume', 'base/deployment.yaml', 'sizeLimit: 64Mi', 'sizeLimit: 512Mi', /does not cover the ring volume/],
  ['duplicate YAML key', 'base/pdb.yaml', 'maxUnavailable: 1', 'maxUnavailable: 1\n  maxUnavailable: 2', /Map keys must be unique/],
];

let passed = 0;
let failed = 0;
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ringside-k8s-neg-'));
try {
  for (const [name, file, from, to, expect] of CASES) {
    const root = path.join(tmpRoot, name.replace(/\W+/g, '-'));
    fs.cpSync(path.join(repo, 'k8s'), path.join(root, 'k8s'), { recursive: true });
    const f = path.join(root, 'k8s', file);
    const text = fs.readFileSync(f, 'utf8');
    if (!text.includes(from)) {
      failed++;
      console.log(`FAIL ${name}: '${from}' not found in ${file} (update the case)`);
      continue;
    }
    fs.writeFileSync(f, text.replace(from, to));
    // The negative cases only need our renderer; kubectl is exercised by k8s_manifests.
    const results = await checkTree(path.join(root, 'k8s'), repo, { kubectl: false });
    const all = results.flatMap((r) => r.errs);
    if (all.some((e) => expect.test(e))) {
      passed++;
      console.log(`ok   ${name}`);
    } else {
      failed++;
      console.log(`FAIL ${name}: expected ${expect}, got:\n  ${all.slice(0, 8).join('\n  ') || '(no error)'}`);
    }
  }
  // Dockerfile: each broken copy must make check-dockerfile.mjs fail on the named check.
  const DOCKER_CASES = [
    ['Dockerfile root user', 'USER 65532:65532', 'USER root', /FAIL final USER/],
    ['Dockerfile latest base', 'FROM debian:${DEBIAN_TAG}-slim', 'FROM debian:latest', /FAIL base image debian:latest/],
    ['Dockerfile missing runtime lib', ' libjwt0 ', ' ', /FAIL runtime stage has the library of every -dev package|FAIL every package/],
    ['Dockerfile misspelt package', 'libjansson4', 'libjanson4', /FAIL (every package exists|runtime stage has the library)/],
    ['Dockerfile shell entrypoint', 'ENTRYPOINT ["ringside"]', 'ENTRYPOINT ringside', /FAIL ENTRYPOINT/],
  ];
  const aptOk = spawnSync('apt-cache', ['show', '--no-all-versions', 'dpkg'], { stdio: 'ignore' }).status === 0;
  for (const [name, from, to, expect] of DOCKER_CASES) {
    if (!aptOk && /runtime lib|misspelt/.test(name)) { console.log(`skip ${name}: apt-cache has no package lists`); continue; }
    const dir = path.join(tmpRoot, name.replace(/\W+/g, '-'));
    fs.mkdirSync(dir, { recursive: true });
    const text = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8');
    if (!text.includes(from)) { failed++; console.log(`FAIL ${name}: '${from}' not in Dockerfile`); continue; }
    fs.writeFileSync(path.join(dir, 'Dockerfile'), text.replace(from, to));
    fs.copyFileSync(path.join(repo, '.dockerignore'), path.join(dir, '.dockerignore'));
    const r = spawnSync(process.execPath, [path.join(here, 'check-dockerfile.mjs'), repo, path.join(dir, 'Dockerfile')],
      { encoding: 'utf8', timeout: 120000 });
    if (r.status !== 0 && expect.test(r.stdout)) { passed++; console.log(`ok   ${name}`); }
    else { failed++; console.log(`FAIL ${name}: exit ${r.status}, expected ${expect}\n${r.stdout}`); }
  }
} finally {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
}
void kubectl;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || passed === 0 ? 1 : 0);
