// Ringside's own manifest policy: the properties REQUIREMENTS F4 asks for, checked on rendered
// objects. Each check returns error strings naming the object and field.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);
const DEFAULT_DRAIN = 30; // DESIGN.md --drain-timeout default
// Options the daemon and CLIs accept, used only when neither DESIGN.md nor a built binary is found.
const FALLBACK_OPTIONS = [
  'listen', 'shm-dir', 'redis', 'instance-id', 'jwt-key', 'jwt-alg', 'no-auth', 'allowed-origins',
  'dashboard', 'log-level', 'heartbeat-interval', 'heartbeat-misses', 'drain-timeout',
  'replay-window', 'max-message', 'send-queue', 'conn-msg-rate', 'global-msg-rate', 'conn-rate',
  'max-connections', 'user-conns', 'agent', 'project', 'task',
];

/** The RINGSIDE_* names every option maps to (DESIGN.md: upper case, '-' → '_'). Sources, in order:
 *  $RINGSIDE_DESIGN_MD, ../shared/DESIGN.md next to the repository, the built binaries' --help. */
export function knownEnv(repo) {
  const opts = new Set();
  const sources = [];
  const candidates = [process.env.RINGSIDE_DESIGN_MD, path.join(repo, '..', 'shared', 'DESIGN.md'),
    path.join(repo, 'shared', 'DESIGN.md')].filter(Boolean);
  for (const f of candidates) {
    if (!fs.existsSync(f)) continue;
    const text = fs.readFileSync(f, 'utf8');
    const m = /## The daemon \(contract\)([\s\S]*?)\n## /.exec(text);
    for (const o of (m ? m[1] : text).matchAll(/--([a-z][a-z0-9-]*)/g)) opts.add(o[1]);
    sources.push(f);
    break;
  }
  const bin = process.env.RINGSIDE_BIN;
  for (const b of ['ringside', 'ringside-pub', 'ringside-run']) {
    const p = bin && path.join(bin, b);
    if (!p || !fs.existsSync(p)) continue;
    try {
      const help = execFileSync(p, ['--help'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
      for (const o of help.matchAll(/--([a-z][a-z0-9-]*)/g)) opts.add(o[1]);
      sources.push(`${b} --help`);
    } catch { /* a binary without --help yet adds nothing */ }
  }
  if (!opts.size) { FALLBACK_OPTIONS.forEach((o) => opts.add(o)); sources.push('built-in list'); }
  return { names: new Set([...opts].map((o) => `RINGSIDE_${o.toUpperCase().replace(/-/g, '_')}`)), sources };
}

const id = (o) => `${o.kind}/${o.metadata?.name}`;

function podTemplate(o) {
  if (o.kind === 'Job') return o.spec?.template;
  return o.spec?.template;
}

function matches(selector, labels) {
  if (!selector) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function quantityBytes(q) {
  if (q === undefined) return undefined;
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) return NaN;
  const mult = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
}

function isRingside(c) {
  // The daemon: the ringside image with its own entrypoint (no command override).
  const repo = (c.image ?? '').split('@')[0].replace(/:[^/]*$/, '');
  return repo.split('/').pop() === 'ringside' && !c.command;
}

function envValue(c, name) {
  return c.env?.find((e) => e.name === name)?.value;
}

function preStopSeconds(c) {
  const ps = c.lifecycle?.preStop;
  if (!ps) return 0;
  if (ps.sleep) return Number(ps.sleep.seconds);
  const cmd = ps.exec?.command ?? [];
  if (cmd.length === 2 && /(^|\/)sleep$/.test(cmd[0]) && /^\d+$/.test(cmd[1])) return Number(cmd[1]);
  return NaN;
}

const OCTAL_LOOKING = new Set([400, 440, 444, 600, 640, 644, 660, 664, 700, 750, 755, 770, 775, 777, 555]);

export function checkPolicy(objs, repo) {
  const errs = [];
  const err = (o, msg) => errs.push(`${id(o)}: ${msg}`);
  const env = knownEnv(repo);
  const services = objs.filter((o) => o.kind === 'Service');
  const netpols = objs.filter((o) => o.kind === 'NetworkPolicy');
  const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget');
  const secrets = objs.filter((o) => o.kind === 'Secret');
  let sidecars = 0;

  for (const o of objs) {
    if (!o.metadata?.name) err(o, 'metadata.name missing');
    if (!o.metadata?.labels || !Object.keys(o.metadata.labels).length) err(o, 'no labels');
    if (o.kind === 'Namespace') {
      if (o.metadata?.labels?.['pod-security.kubernetes.io/enforce'] !== 'restricted') {
        err(o, 'namespace must enforce the restricted Pod Security Standard');
      }
    }
    if (!WORKLOADS.has(o.kind)) continue;
    const tpl = podTemplate(o);
    const spec = tpl?.spec;
    if (!spec) { err(o, 'no pod template'); continue; }
    const labels = tpl.metadata?.labels ?? {};
    const where = (c) => `${c.name}`;
    if (spec.hostNetwork || spec.hostPID || spec.hostIPC) err(o, 'host namespaces are not allowed');
    if (spec.shareProcessNamespace) err(o, 'shareProcessNamespace must stay false');
    const psc = spec.securityContext ?? {};
    if (psc.seccompProfile && psc.seccompProfile.type !== 'RuntimeDefault') {
      err(o, `pod seccompProfile ${psc.seccompProfile.type}: must be RuntimeDefault`);
    }
    if (psc.runAsNonRoot === false || psc.runAsUser === 0) err(o, 'pod securityContext runs as root');
    const vols = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
    for (const t of o.spec.volumeClaimTemplates ?? []) vols.set(t.metadata?.name, { pvc: t });
    for (const v of spec.volumes ?? []) {
      if (v.hostPath) err(o, `volume ${v.name}: hostPath is not allowed`);
      if (v.emptyDir && v.emptyDir.sizeLimit == null) err(o, `volume ${v.name}: emptyDir without sizeLimit`);
      const mode = v.secret?.defaultMode ?? v.configMap?.defaultMode;
      if (mode !== undefined && (mode > 0o777 || OCTAL_LOOKING.has(mode))) {
        err(o, `volume ${v.name}: defaultMode ${mode} looks like an octal literal read as decimal (write 0o${mode} as ${parseInt(String(mode), 8)})`);
      }
    }
    const all = [...(spec.initContainers ?? []).map((c) => ({ c, init: true })),
      ...(spec.containers ?? []).map((c) => ({ c, init: false }))];
    for (const { c, init } of all) {
      const w = where(c);
      if (!c.image) err(o, `${w}: no image`);
      else if (/:latest$/.test(c.image) || !/[:@]/.test(c.image.split('/').pop())) {
        err(o, `${w}: image ${c.image} must be pinned (a tag other than latest, or a digest)`);
      }
      for (const kind of ['requests', 'limits']) {
        for (const r of ['cpu', 'memory']) {
          if (c.resources?.[kind]?.[r] === undefined) err(o, `${w}: resources.${kind}.${r} missing`);
        }
      }
      const sc = c.securityContext ?? {};
      if (sc.allowPrivilegeEscalation !== false) err(o, `${w}: allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) err(o, `${w}: readOnlyRootFilesystem must be true`);
      if (sc.privileged === true) err(o, `${w}: privileged`);
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) err(o, `${w}: capabilities.drop must include ALL`);
      if ((sc.capabilities?.add ?? []).some((x) => x !== 'NET_BIND_SERVICE')) err(o, `${w}: capabilities.add beyond NET_BIND_SERVICE`);
      if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) err(o, `${w}: runAsNonRoot must be true`);
      if ((sc.runAsUser ?? psc.runAsUser) === 0) err(o, `${w}: runAsUser 0`);
      if ((sc.seccompProfile?.type ?? psc.seccompProfile?.type) !== 'RuntimeDefault') {
        err(o, `${w}: seccompProfile must be RuntimeDefault`);
      }
      if (!init && c.restartPolicy !== undefined) err(o, `${w}: restartPolicy on a regular container`);
      for (const e of c.env ?? []) {
        if (e.name.startsWith('RINGSIDE_') && !env.names.has(e.name)) {
          err(o, `${w}: env ${e.name} is not a Ringside option (known from ${env.sources.join(', ')})`);
        }
        if (e.valueFrom?.secretKeyRef) err(o, `${w}: env ${e.name} from a Secret; mount secrets as files`);
      }
      if ((c.envFrom ?? []).some((e) => e.secretRef)) err(o, `${w}: envFrom a Secret; mount secrets as files`);
      for (const m of c.volumeMounts ?? []) {
        if (!vols.has(m.name)) err(o, `${w}: volumeMount ${m.name} has no volume`);
        if (m.subPath && vols.get(m.name)?.secret) err(o, `${w}: Secret mounted with subPath never updates`);
      }
    }

    const rs = all.filter(({ c }) => isRingside(c));
    if (!rs.length) continue;
    if (rs.length > 1) err(o, 'more than one ringside container');
    sidecars++;
    const { c, init } = rs[0];
    const w = `${c.name}`;
    if (init && c.restartPolicy !== 'Always') err(o, `${w}: an init container without restartPolicy: Always blocks the pod`);
    if (!init && spec.containers.length < 2) err(o, `${w}: a sidecar needs an agent container next to it`);
    if (c.args?.length && c.args[0] !== 'serve') err(o, `${w}: first argument must be serve`);
    if (envValue(c, 'RINGSIDE_NO_AUTH') !== undefined || (c.args ?? []).includes('--no-auth')) {
      err(o, `${w}: --no-auth is for local development only`);
    }
    // Listener and probes.
    const listen = envValue(c, 'RINGSIDE_LISTEN') ?? '0.0.0.0:8765';
    const port = Number(listen.split(':').pop());
    const cport = (c.ports ?? []).find((p) => p.containerPort === port);
    if (!cport) err(o, `${w}: no containerPort ${port} (RINGSIDE_LISTEN ${listen})`);
    const probe = (name, paths) => {
      const p = c[name];
      if (!p) { err(o, `${w}: ${name} missing`); return; }
      const g = p.httpGet;
      if (!g) { err(o, `${w}: ${name} must be an httpGet`); return; }
      if (!paths.includes(g.path)) err(o, `${w}: ${name} path ${g.path}, expected ${paths.join(' or ')}`);
      if (g.port !== port && g.port !== cport?.name) err(o, `${w}: ${name} port ${g.port} is not the listener`);
    };
    probe('startupProbe', ['/healthz', '/livez']);
    probe('livenessProbe', ['/healthz', '/livez']);
    probe('readinessProbe', ['/readyz']);
    // Drain budget.
    const drainRaw = envValue(c, 'RINGSIDE_DRAIN_TIMEOUT');
    const drain = drainRaw === undefined ? DEFAULT_DRAIN : Number(drainRaw);
    if (!Number.isInteger(drain) || drain <= 0) err(o, `${w}: RINGSIDE_DRAIN_TIMEOUT ${drainRaw} is not a positive integer`);
    const pre = preStopSeconds(c);
    if (!c.lifecycle?.preStop) err(o, `${w}: preStop missing`);
    else if (Number.isNaN(pre)) err(o, `${w}: preStop must be a sleep (exec sleep N or sleep action)`);
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    if (!(grace >= drain + pre)) {
      err(o, `terminationGracePeriodSeconds ${grace} < drain ${drain} + preStop ${pre}`);
    }
    // Shared memory.
    const shm = envValue(c, 'RINGSIDE_SHM_DIR');
    if (!shm) err(o, `${w}: RINGSIDE_SHM_DIR not set (the default /dev/shm is one fixed 64 MiB per pod)`);
    const shmMount = (c.volumeMounts ?? []).find((m) => m.mountPath === shm);
    const shmVol = shmMount && vols.get(shmMount.name);
    if (!shmVol) err(o, `${w}: RINGSIDE_SHM_DIR ${shm} is not a mounted volume`);
    else if (shmVol.emptyDir?.medium !== 'Memory') err(o, `volume ${shmVol.name}: ring volume must be emptyDir medium Memory`);
    else if (shmVol.emptyDir.sizeLimit === undefined) err(o, `volume ${shmVol.name}: sizeLimit missing`);
    const agents = spec.containers.filter((x) => x !== c);
    for (const a of agents) {
      const ae = envValue(a, 'RINGSIDE_SHM_DIR');
      const am = (a.volumeMounts ?? []).find((m) => m.name === shmMount?.name);
      if (ae !== shm) err(o, `${a.name}: RINGSIDE_SHM_DIR ${ae} differs from the sidecar's ${shm}`);
      if (!am || am.mountPath !== shm) err(o, `${a.name}: ring volume not mounted at ${shm}`);
      // Ring pages are charged to the container that creates them: the agent.
      const lim = quantityBytes(a.resources?.limits?.memory);
      const size = quantityBytes(shmVol?.emptyDir?.sizeLimit);
      if (lim !== undefined && size !== undefined && !(lim > size)) {
        err(o, `${a.name}: memory limit ${a.resources.limits.memory} does not cover the ring volume ${shmVol.emptyDir.sizeLimit}`);
      }
    }
    if (!agents.length) err(o, 'no agent container shares the rings');
    if (psc.fsGroup === undefined) err(o, 'pod securityContext.fsGroup missing (rings are shared through the group)');
    // JWT key from a mounted Secret.
    const key = envValue(c, 'RINGSIDE_JWT_KEY');
    if (!key) err(o, `${w}: RINGSIDE_JWT_KEY not set`);
    else {
      const m = (c.volumeMounts ?? []).find((x) => key.startsWith(`${x.mountPath}/`));
      const v = m && vols.get(m.name);
      if (!v?.secret) err(o, `${w}: RINGSIDE_JWT_KEY ${key} is not in a mounted Secret`);
      else {
        const s = secrets.find((x) => x.metadata.name === v.secret.secretName);
        const file = key.slice(m.mountPath.length + 1);
        if (!s) err(o, `Secret ${v.secret.secretName} is not rendered`);
        else if (!(file in { ...s.data, ...s.stringData })) err(o, `Secret ${s.metadata.name} has no key ${file}`);
      }
    }
    // Redis through Sentinel: every sentinel host is a pod of a rendered headless Service.
    const redis = envValue(c, 'RINGSIDE_REDIS');
    const rm = /^redis-sentinel:\/\/([^/]+)\/([\w.-]+)$/.exec(redis ?? '');
    if (!rm) err(o, `${w}: RINGSIDE_REDIS must be redis-sentinel://h1:p1,.../master, got ${redis}`);
    else {
      for (const hp of rm[1].split(',')) {
        const [host, p] = hp.split(':');
        const [pod, svc] = host.split('.');
        const s = services.find((x) => x.metadata.name === svc);
        const sts = objs.find((x) => x.kind === 'StatefulSet' && x.spec.serviceName === svc);
        const ordinal = Number(pod.slice((sts?.metadata.name.length ?? 0) + 1));
        if (!s || s.spec.clusterIP !== 'None') err(o, `${w}: sentinel ${host}: no headless Service ${svc}`);
        else if (!s.spec.ports.some((x) => String(x.port) === p)) err(o, `${w}: Service ${svc} has no port ${p}`);
        if (!sts || !pod.startsWith(`${sts.metadata.name}-`) || !(ordinal < sts.spec.replicas)) {
          err(o, `${w}: sentinel ${host}: no such StatefulSet pod`);
        }
      }
    }
    // Scrape annotations, Service, NetworkPolicy, PDB.
    const ann = tpl.metadata?.annotations ?? {};
    if (ann['prometheus.io/scrape'] !== 'true' || ann['prometheus.io/port'] !== String(port)
      || ann['prometheus.io/path'] !== '/metrics') {
      err(o, 'pod template needs prometheus.io/scrape "true", port and path /metrics annotations');
    }
    const svc = services.find((s) => matches(s.spec.selector, labels));
    if (!svc) err(o, 'no Service selects the pods');
    else if (!svc.spec.ports.some((p) => p.targetPort === cport?.name || p.targetPort === port)) {
      err(o, `Service ${svc.metadata.name} does not target the sidecar port`);
    }
    const np = netpols.find((n) => matches(n.spec.podSelector?.matchLabels, labels));
    if (!np) err(o, 'no NetworkPolicy selects the pods');
    else {
      const ingressPorts = (np.spec.ingress ?? []).flatMap((r) => r.ports ?? []).map((p) => p.port);
      if (!ingressPorts.includes(port)) err(o, `NetworkPolicy ${np.metadata.name}: no ingress on ${port}`);
      const egressPorts = (np.spec.egress ?? []).flatMap((r) => r.ports ?? []).map((p) => p.port);
      for (const p of [6379, 26379, 53]) {
        if (!egressPorts.includes(p)) err(o, `NetworkPolicy ${np.metadata.name}: no egress to port ${p}`);
      }
    }
    if (!pdbs.some((p) => matches(p.spec.selector?.matchLabels, labels))) err(o, 'no PodDisruptionBudget');
  }
  // ServiceMonitors select a Service and one of its named ports.
  for (const sm of objs.filter((o) => o.kind === 'ServiceMonitor')) {
    const s = services.find((x) => matches(sm.spec.selector?.matchLabels, x.metadata.labels));
    if (!s) err(sm, 'selects no Service');
    for (const ep of sm.spec.endpoints ?? []) {
      if (s && !s.spec.ports.some((p) => p.name === ep.port)) err(sm, `Service ${s.metadata.name} has no port ${ep.port}`);
    }
  }
  for (const p of pdbs) {
    if (!objs.some((o) => WORKLOADS.has(o.kind) && matches(p.spec.selector?.matchLabels, podTemplate(o)?.metadata?.labels))) {
      err(p, 'selects no workload');
    }
  }
  return { errs, sidecars };
}
