// A small, strict kustomize renderer for the subset of kustomize that k8s/ uses, so the manifests can
// be rendered and checked offline on machines without kubectl (kubectl is not packaged by Debian).
//
// Supported kustomization fields: apiVersion, kind (Kustomization | Component), namespace, resources
// (files and directories), components, patches (path or inline patch; strategic merge or JSON 6902;
// optional target with group/version/kind/name regexes and an equality labelSelector), images
// (name, newName, newTag, digest). Anything else is an error, not silently ignored: if k8s/ starts
// using another kustomize feature, this renderer must learn it (or the check fails loudly).
// When kubectl is present, check-manifests.mjs also renders with `kubectl kustomize` and compares.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

export class RenderError extends Error {}

const KUSTOMIZATION_FIELDS = new Set([
  'apiVersion', 'kind', 'namespace', 'resources', 'components', 'patches', 'images',
]);
const PATCH_FIELDS = new Set(['path', 'patch', 'target', 'options']);
const TARGET_FIELDS = new Set(['group', 'version', 'kind', 'name', 'namespace', 'labelSelector']);
const IMAGE_FIELDS = new Set(['name', 'newName', 'newTag', 'digest']);
const CLUSTER_SCOPED = new Set([
  'Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume',
  'StorageClass', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration',
]);

/** Parses every YAML document of a file; fails on YAML errors, duplicate keys and warnings. */
export function parseYamlDocs(text, file) {
  const docs = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new RenderError(`${file}: ${d.errors[0].message}`);
    if (d.warnings.length) throw new RenderError(`${file}: ${d.warnings[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function readKustomization(dir) {
  for (const n of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const p = path.join(dir, n);
    if (fs.existsSync(p)) {
      const docs = parseYamlDocs(fs.readFileSync(p, 'utf8'), p);
      if (docs.length !== 1) throw new RenderError(`${p}: expected one document`);
      return { file: p, k: docs[0] };
    }
  }
  throw new RenderError(`${dir}: no kustomization.yaml`);
}

function checkKeys(obj, allowed, where) {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) throw new RenderError(`${where}: unsupported field '${key}'`);
  }
}

/** Renders a kustomization directory into a list of objects (the same order kustomize emits is not
 *  guaranteed; compare canonically). */
export function render(dir) {
  return renderDir(path.resolve(dir), 'Kustomization', []);
}

function renderDir(dir, expectKind, stack) {
  if (stack.includes(dir)) throw new RenderError(`${dir}: cycle through ${stack.join(' -> ')}`);
  const { file, k } = readKustomization(dir);
  checkKeys(k, KUSTOMIZATION_FIELDS, file);
  const kind = k.kind ?? 'Kustomization';
  if (kind !== expectKind) throw new RenderError(`${file}: kind ${kind}, expected ${expectKind}`);
  const wantApi = kind === 'Component' ? 'kustomize.config.k8s.io/v1alpha1'
    : 'kustomize.config.k8s.io/v1beta1';
  if (k.apiVersion !== undefined && k.apiVersion !== wantApi) {
    throw new RenderError(`${file}: apiVersion ${k.apiVersion}, expected ${wantApi}`);
  }
  const next = [...stack, dir];
  let objs = [];
  for (const r of k.resources ?? []) {
    const p = path.resolve(dir, r);
    if (!fs.existsSync(p)) throw new RenderError(`${file}: resource ${r} does not exist`);
    if (fs.statSync(p).isDirectory()) {
      objs.push(...renderDir(p, 'Kustomization', next));
    } else {
      if (path.relative(dir, p).startsWith('..')) {
        throw new RenderError(`${file}: file ${r} is outside the kustomization root`);
      }
      objs.push(...parseYamlDocs(fs.readFileSync(p, 'utf8'), p));
    }
  }
  for (const c of k.components ?? []) {
    objs = applyComponent(path.resolve(dir, c), objs, next);
  }
  objs = applyTransforms(dir, file, k, objs);
  const seen = new Set();
  for (const o of objs) {
    const id = objId(o);
    if (seen.has(id)) throw new RenderError(`${file}: duplicate object ${id}`);
    seen.add(id);
  }
  return objs;
}

function applyComponent(dir, objs, stack) {
  const { file, k } = readKustomization(dir);
  if (k.kind !== 'Component') throw new RenderError(`${file}: components must be kind Component`);
  const own = renderDirResourcesOnly(dir, file, k, stack);
  return applyTransforms(dir, file, k, [...objs, ...own]);
}

function renderDirResourcesOnly(dir, file, k, stack) {
  checkKeys(k, KUSTOMIZATION_FIELDS, file);
  const out = [];
  for (const r of k.resources ?? []) {
    const p = path.resolve(dir, r);
    if (!fs.existsSync(p)) throw new RenderError(`${file}: resource ${r} does not exist`);
    if (fs.statSync(p).isDirectory()) out.push(...renderDir(p, 'Kustomization', [...stack, dir]));
    else out.push(...parseYamlDocs(fs.readFileSync(p, 'utf8'), p));
  }
  if (k.components?.length) throw new RenderError(`${file}: nested components are not supported`);
  return out;
}

function applyTransforms(dir, file, k, objs) {
  for (const [i, p] of (k.patches ?? []).entries()) {
    checkKeys(p, PATCH_FIELDS, `${file} patches[${i}]`);
    if (p.target) checkKeys(p.target, TARGET_FIELDS, `${file} patches[${i}].target`);
    let text;
    let where;
    if (p.path !== undefined) {
      where = path.resolve(dir, p.path);
      if (!fs.existsSync(where)) throw new RenderError(`${file}: patch ${p.path} does not exist`);
      text = fs.readFileSync(where, 'utf8');
    } else if (p.patch !== undefined) {
      text = p.patch;
      where = `${file} patches[${i}]`;
    } else {
      throw new RenderError(`${file} patches[${i}]: needs path or patch`);
    }
    const docs = parseYamlDocs(text, where);
    if (docs.length !== 1) throw new RenderError(`${where}: expected one patch document`);
    const patch = docs[0];
    if (Array.isArray(patch)) {
      if (!p.target) throw new RenderError(`${where}: a JSON 6902 patch needs a target`);
      const targets = objs.filter((o) => matchTarget(o, p.target));
      if (!targets.length) throw new RenderError(`${where}: target matches no object`);
      objs = objs.map((o) => (targets.includes(o) ? jsonPatch(o, patch, where) : o));
    } else {
      const sel = p.target ?? {
        kind: patch.kind, name: patch.metadata?.name, exactMatch: true,
      };
      const targets = objs.filter((o) => matchTarget(o, sel));
      if (!targets.length) throw new RenderError(`${where}: patch matches no object`);
      objs = objs.map((o) => {
        if (!targets.includes(o)) return o;
        const pp = structuredClone(patch);
        if (pp.metadata) pp.metadata.name = o.metadata.name;
        return smpMerge(o, pp, '');
      });
    }
  }
  if (k.images) {
    for (const [i, im] of k.images.entries()) checkKeys(im, IMAGE_FIELDS, `${file} images[${i}]`);
    objs = objs.map((o) => setImages(o, k.images));
  }
  if (k.namespace) {
    objs = objs.map((o) => {
      if (CLUSTER_SCOPED.has(o.kind)) return o;
      const c = structuredClone(o);
      c.metadata = { ...c.metadata, namespace: k.namespace };
      return c;
    });
  }
  return objs;
}

export function objId(o) {
  return `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
}

function anchored(re, value) {
  return new RegExp(`^(?:${re})$`).test(value ?? '');
}

function matchTarget(o, t) {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  if (t.exactMatch) return o.kind === t.kind && o.metadata?.name === t.name;
  if (t.group !== undefined && !anchored(t.group, group)) return false;
  if (t.version !== undefined && !anchored(t.version, version)) return false;
  if (t.kind !== undefined && !anchored(t.kind, o.kind)) return false;
  if (t.name !== undefined && !anchored(t.name, o.metadata?.name)) return false;
  if (t.namespace !== undefined && !anchored(t.namespace, o.metadata?.namespace)) return false;
  if (t.labelSelector !== undefined) {
    const labels = o.metadata?.labels ?? {};
    for (const term of t.labelSelector.split(',').map((s) => s.trim())) {
      const m = /^([^=!]+)==?(.*)$/.exec(term);
      if (!m) throw new RenderError(`labelSelector '${term}': only key=value terms are supported`);
      if (labels[m[1].trim()] !== m[2].trim()) return false;
    }
  }
  return true;
}

// Strategic merge: maps merge, null deletes, lists under these keys merge by the given key, other
// lists are replaced. The keys are those of the Kubernetes API types used in k8s/.
const MERGE_KEYS = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name', volumes: 'name',
  env: 'name', volumeMounts: 'mountPath', imagePullSecrets: 'name', volumeClaimTemplates: null,
};

function listMergeKey(field, list) {
  if (field === 'ports') {
    if (list.every((x) => x && typeof x === 'object' && 'containerPort' in x)) return 'containerPort';
    if (list.every((x) => x && typeof x === 'object' && 'port' in x)) return 'port';
    return null;
  }
  return MERGE_KEYS[field] ?? null;
}

export function smpMerge(orig, patch, field) {
  if (Array.isArray(patch)) {
    const key = Array.isArray(orig) ? listMergeKey(field, [...orig, ...patch]) : null;
    if (!key) return structuredClone(patch);
    const out = orig.map((x) => structuredClone(x));
    for (const item of patch) {
      const idx = out.findIndex((x) => x[key] === item[key]);
      if (item.$patch === 'delete') {
        if (idx >= 0) out.splice(idx, 1);
      } else if (idx >= 0) {
        out[idx] = smpMerge(out[idx], item, '');
      } else {
        out.push(stripDirectives(item));
      }
    }
    return out;
  }
  if (patch && typeof patch === 'object') {
    if (patch.$patch === 'replace') return stripDirectives(patch);
    if (patch.$patch === 'delete') return undefined;
    if (!orig || typeof orig !== 'object' || Array.isArray(orig)) return stripDirectives(patch);
    const out = structuredClone(orig);
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith('$')) throw new RenderError(`unsupported patch directive ${k}`);
      if (v === null) delete out[k];
      else {
        const m = smpMerge(out[k], v, k);
        if (m === undefined) delete out[k];
        else out[k] = m;
      }
    }
    return out;
  }
  return patch;
}

function stripDirectives(v) {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) o[k] = stripDirectives(x);
    return o;
  }
  return v;
}

function pointer(p) {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new RenderError(`bad JSON pointer '${p}'`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function walk(doc, parts, where) {
  let cur = doc;
  for (const part of parts) {
    if (cur === null || typeof cur !== 'object' || !(part in cur)) {
      throw new RenderError(`${where}: path /${parts.join('/')} does not exist`);
    }
    cur = cur[part];
  }
  return cur;
}

/** RFC 6902 on a copy of doc. */
export function jsonPatch(doc, ops, where) {
  const out = structuredClone(doc);
  const get = (p) => walk(out, pointer(p), where);
  const remove = (p) => {
    const parts = pointer(p);
    const parent = walk(out, parts.slice(0, -1), where);
    const last = parts.at(-1);
    if (Array.isArray(parent)) {
      const i = Number(last);
      if (!Number.isInteger(i) || i < 0 || i >= parent.length) {
        throw new RenderError(`${where}: remove ${p}: no such index`);
      }
      return parent.splice(i, 1)[0];
    }
    if (!(last in parent)) throw new RenderError(`${where}: remove ${p}: no such member`);
    const v = parent[last];
    delete parent[last];
    return v;
  };
  const add = (p, value) => {
    const parts = pointer(p);
    const parent = walk(out, parts.slice(0, -1), where);
    const last = parts.at(-1);
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) {
        throw new RenderError(`${where}: add ${p}: bad index`);
      }
      parent.splice(i, 0, value);
    } else if (parent && typeof parent === 'object') {
      parent[last] = value;
    } else {
      throw new RenderError(`${where}: add ${p}: parent is not a container`);
    }
  };
  for (const [i, op] of ops.entries()) {
    const w = `${where} [op ${i}: ${op.op} ${op.path}]`;
    switch (op.op) {
      case 'add': add(op.path, structuredClone(op.value)); break;
      case 'remove': remove(op.path); break;
      case 'replace': remove(op.path); add(op.path, structuredClone(op.value)); break;
      case 'move': { const v = remove(op.from); add(op.path, v); break; }
      case 'copy': add(op.path, structuredClone(get(op.from))); break;
      case 'test':
        if (JSON.stringify(get(op.path)) !== JSON.stringify(op.value)) {
          throw new RenderError(`${w}: test failed`);
        }
        break;
      default: throw new RenderError(`${w}: unknown op`);
    }
  }
  return out;
}

function splitImage(image) {
  let rest = image;
  let digest;
  const at = rest.indexOf('@');
  if (at >= 0) { digest = rest.slice(at + 1); rest = rest.slice(0, at); }
  let tag;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) { tag = rest.slice(colon + 1); rest = rest.slice(0, colon); }
  return { name: rest, tag, digest };
}

function setImages(o, images) {
  const visit = (v, key) => {
    if (Array.isArray(v)) {
      if (key === 'containers' || key === 'initContainers') {
        return v.map((c) => {
          if (typeof c?.image !== 'string') return visit(c, '');
          const im = splitImage(c.image);
          const rule = images.find((r) => r.name === im.name);
          if (!rule) return c;
          let s = rule.newName ?? im.name;
          if (rule.digest) s += `@${rule.digest}`;
          else if (rule.newTag) s += `:${rule.newTag}`;
          else if (im.tag) s += `:${im.tag}`;
          return { ...c, image: s };
        });
      }
      return v.map((x) => visit(x, ''));
    }
    if (v && typeof v === 'object') {
      const out = {};
      for (const [k, x] of Object.entries(v)) out[k] = visit(x, k);
      return out;
    }
    return v;
  };
  return visit(o, '');
}

/** Canonical form for comparing two renderings: documents sorted by id, maps by key, and lists
 *  whose items are all named (name / mountPath / containerPort) sorted by that key. */
export function canonical(objs) {
  const canon = (v) => {
    if (Array.isArray(v)) {
      const items = v.map(canon);
      for (const key of ['name', 'mountPath', 'containerPort']) {
        if (items.length && items.every((x) => x && typeof x === 'object' && key in x)) {
          return items.sort((a, b) => String(a[key]).localeCompare(String(b[key])));
        }
      }
      return items;
    }
    if (v && typeof v === 'object') {
      const out = {};
      for (const k of Object.keys(v).sort()) out[k] = canon(v[k]);
      return out;
    }
    return v;
  };
  return [...objs].sort((a, b) => objId(a).localeCompare(objId(b))).map(canon);
}
