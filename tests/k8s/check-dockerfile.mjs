// ctest k8s_dockerfile: static lint of the Dockerfile (Docker is not available in CI).
// Checks: a build stage and a runtime stage on Debian bookworm, no `latest`/untagged base image, a
// non-root numeric USER in the final stage, ENTRYPOINT ringside, EXPOSE 8765, the three binaries
// copied, the build stage's -dev packages match scripts/install-deps.sh, every runtime library of
// those -dev packages is installed in the runtime stage, no -dev package at runtime, and (when apt
// has package lists) every package name exists in Debian.
// Usage: node check-dockerfile.mjs [REPO_ROOT] [DOCKERFILE]
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(process.argv[2] ?? path.join(here, '..', '..'));
const dockerfile = process.argv[3] ?? path.join(repo, 'Dockerfile');

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`); }
}

/** Dockerfile → instructions [{ op, args, line }], continuation lines joined, comments dropped. */
export function parseDockerfile(text) {
  const out = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (!buf && /^\s*(#|$)/.test(line)) return;
    if (buf && /^\s*#/.test(line)) return;
    if (!buf) start = i + 1;
    if (/\\\s*$/.test(line)) { buf += `${line.replace(/\\\s*$/, '')} `; return; }
    buf += line;
    const m = /^\s*(\w+)\s+([\s\S]*)$/.exec(buf);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    buf = '';
  });
  return out;
}

const text = fs.readFileSync(dockerfile, 'utf8');
const ins = parseDockerfile(text);
const args = Object.fromEntries(ins.filter((x) => x.op === 'ARG').map((x) => {
  const [k, v] = x.args.split('=');
  return [k.trim(), v?.trim()];
}));
const expand = (s) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? `\${${a ?? b}}`);

// Stages.
const stages = [];
for (const x of ins) {
  if (x.op === 'FROM') {
    const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(x.args);
    stages.push({ image: expand(m[1]), name: m[2], ins: [] });
  } else if (stages.length) stages.at(-1).ins.push(x);
}
check('two or more stages', stages.length >= 2, `${stages.length} FROM`);
const build = stages.find((s) => s.name === 'build');
const runtime = stages.at(-1);
check('a stage named build', !!build);
for (const s of stages) {
  const tag = s.image.includes('@') ? 'digest' : (s.image.split('/').pop().split(':')[1] ?? '');
  check(`base image ${s.image} pinned (no latest, not untagged)`, tag !== '' && tag !== 'latest' && !tag.includes('${'));
}
check('build stage on debian:bookworm', /^debian:bookworm(@|$)/.test(build?.image ?? ''), build?.image);
check('runtime stage on debian:bookworm-slim', /^debian:bookworm-slim(@|$)/.test(runtime.image), runtime.image);

// Packages installed per stage.
function aptPackages(stage) {
  const pk = [];
  for (const x of stage?.ins ?? []) {
    if (x.op !== 'RUN') continue;
    for (const cmd of x.args.split(/&&|;/)) {
      const m = /apt-get\s+install\s+(.*)$/.exec(cmd.trim());
      if (m) pk.push(...m[1].split(/\s+/).filter((w) => w && !w.startsWith('-')));
    }
  }
  return pk;
}
const buildPk = aptPackages(build);
const runPk = aptPackages(runtime);
check('build stage installs packages', buildPk.length > 0);
check('runtime stage installs packages', runPk.length > 0);
check('no -dev package at runtime', !runPk.some((p) => p.endsWith('-dev')), runPk.filter((p) => p.endsWith('-dev')).join(' '));
check('runtime apt lists removed', runtime.ins.some((x) => x.op === 'RUN' && x.args.includes('rm -rf /var/lib/apt/lists')));

// Build packages agree with the project's installer (scripts/install-deps.sh BUILD_PKGS).
const deps = path.join(repo, 'scripts', 'install-deps.sh');
if (fs.existsSync(deps)) {
  const m = /BUILD_PKGS="([^"]*)"/.exec(fs.readFileSync(deps, 'utf8'));
  const want = (m?.[1] ?? '').split(/\s+/).filter(Boolean);
  const missing = want.filter((p) => !buildPk.includes(p));
  check('build stage has every BUILD_PKGS package of scripts/install-deps.sh', m && !missing.length, missing.join(' '));
}

// Debian knows every name; each -dev package's runtime library is in the runtime stage.
const aptOk = spawnSync('apt-cache', ['show', '--no-all-versions', 'dpkg'], { stdio: 'ignore' }).status === 0;
if (!aptOk) {
  console.log('skip package-name checks: apt-cache has no package lists (run apt-get update)');
} else {
  // One apt-cache call for every name (one call per package is slow on a loaded machine).
  const names = [...new Set([...buildPk, ...runPk])];
  const r = spawnSync('apt-cache', ['show', '--no-all-versions', ...names], { encoding: 'utf8', timeout: 60000 });
  const stanzas = new Map();
  for (const st of (r.stdout ?? '').split(/\n\n+/)) {
    const name = /^Package:\s*(\S+)/m.exec(st)?.[1];
    if (name && !stanzas.has(name)) stanzas.set(name, st);
  }
  const unknown = names.filter((p) => !stanzas.has(p));
  check('every package exists in Debian', !unknown.length, unknown.join(' '));
  const missingRt = [];
  for (const p of buildPk.filter((x) => x.endsWith('-dev'))) {
    const dep = /^Depends:\s*(.*)$/m.exec(stanzas.get(p) ?? '')?.[1] ?? '';
    const libs = dep.split(',').map((d) => d.trim().split(/[\s(|]/)[0])
      .filter((d) => d && !d.endsWith('-dev') && /^(lib|zlib)/.test(d) && d !== 'libc6');
    if (libs.length && !libs.some((l) => runPk.includes(l))) missingRt.push(`${p} -> ${libs.join('|')}`);
  }
  check('runtime stage has the library of every -dev package', !missingRt.length, missingRt.join(', '));
}

// Final stage: user, entrypoint, port, binaries.
const users = runtime.ins.filter((x) => x.op === 'USER');
const user = users.at(-1)?.args ?? '';
const uid = user.split(':')[0];
check('final USER is numeric non-root (65532)', uid === '65532', user || '(none)');
const ep = runtime.ins.filter((x) => x.op === 'ENTRYPOINT').at(-1);
let epv = null;
try { epv = JSON.parse(ep?.args ?? 'null'); } catch { /* shell form */ }
check('ENTRYPOINT ["ringside"] (exec form)', Array.isArray(epv) && epv[0] === 'ringside', ep?.args);
check('EXPOSE 8765', runtime.ins.some((x) => x.op === 'EXPOSE' && x.args.split(/\s+/).includes('8765')));
check('no HEALTHCHECK (Kubernetes probes)', !runtime.ins.some((x) => x.op === 'HEALTHCHECK'));
const buildRuns = (build?.ins ?? []).filter((x) => x.op === 'RUN').map((x) => x.args).join(' ');
for (const b of ['ringside', 'ringside-pub', 'ringside-run']) {
  check(`binary ${b} built and copied`, new RegExp(`build/bin/${b}(\\s|$)`).test(buildRuns));
}
check('runtime copies from the build stage', runtime.ins.some((x) => x.op === 'COPY' && /--from=build\b/.test(x.args)));
check('no ADD of remote URLs', !ins.some((x) => x.op === 'ADD' && /https?:/.test(x.args)));
check('no curl|wget downloads', !ins.some((x) => x.op === 'RUN' && /\b(curl|wget)\b/.test(x.args)));

// .dockerignore keeps the context small and out of build trees.
const di = path.join(path.dirname(dockerfile), '.dockerignore');
const ign = fs.existsSync(di) ? fs.readFileSync(di, 'utf8') : '';
check('.dockerignore excludes .git, build dirs and node_modules',
  /^\.git$/m.test(ign) && /^build\*?\/?$/m.test(ign) && /node_modules/.test(ign));

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || passed === 0 ? 1 : 0);
