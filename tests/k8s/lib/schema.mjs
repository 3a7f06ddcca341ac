// Schema validation of rendered objects, in two layers:
//  1. kubernetes-models' ajv-compiled validators (types, formats, required fields, K8s 1.34 schemas
//     that know native sidecars). They accept unknown fields and most enum typos.
//  2. A strict structural pass built from the same package's TypeScript declarations (.d.ts): every
//     field must be declared on its type (unknown fields are errors, like kubeconform -strict), literal
//     unions are enforced as enums, and a small table adds enums the OpenAPI schema leaves as strings.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NM = path.resolve(HERE, '..', 'node_modules');

// API group/version → package directory holding <Kind>.d.ts / <Kind>.js.
function modelDir(apiVersion) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (group === 'monitoring.coreos.com') {
    return path.join(NM, '@kubernetes-models/prometheus-operator', group, version);
  }
  return path.join(NM, 'kubernetes-models', group || '', version);
}

// Enums the OpenAPI schema types as plain strings (Interface.field → allowed values).
export const EXTRA_ENUMS = {
  'IEmptyDirVolumeSource.medium': ['', 'Memory', 'HugePages'],
  // Only "Always" is valid on an init container (native sidecar); regular containers keep the pod's.
  'IContainer.restartPolicy': ['Always'],
  'IPodDisruptionBudgetSpec.unhealthyPodEvictionPolicy': ['IfHealthyBudget', 'AlwaysAllow'],
  'INetworkPolicySpec.policyTypes[]': ['Ingress', 'Egress'],
  'INetworkPolicyPort.protocol': ['TCP', 'UDP', 'SCTP'],
  'IPersistentVolumeClaimSpec.accessModes[]':
    ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'],
  'IStatefulSetSpec.podManagementPolicy': ['OrderedReady', 'Parallel'],
  'IEndpoint.scheme': ['http', 'https', 'HTTP', 'HTTPS'],
};

// ---- a minimal parser for the declaration files -------------------------------------------------

const fileCache = new Map();

function tokenize(src) {
  const toks = [];
  const re = /\s+|("(?:[^"\\]|\\.)*")|([A-Za-z_$][\w$]*)|(-?\d+(?:\.\d+)?)|([{}[\]<>()|:;?,=.&*])/gy;
  let m;
  while (re.lastIndex < src.length) {
    const at = re.lastIndex;
    m = re.exec(src);
    if (!m) throw new Error(`d.ts tokenizer stuck at ${JSON.stringify(src.slice(at, at + 40))}`);
    if (m[1]) toks.push({ t: 'str', v: JSON.parse(m[1]) });
    else if (m[2]) toks.push({ t: 'id', v: m[2] });
    else if (m[3]) toks.push({ t: 'num', v: Number(m[3]) });
    else if (m[4]) toks.push({ t: 'p', v: m[4] });
  }
  return toks;
}

class TypeParser {
  constructor(toks) { this.toks = toks; this.i = 0; }
  peek(v) { const t = this.toks[this.i]; return t && (v === undefined || t.v === v) ? t : null; }
  take(v) {
    const t = this.toks[this.i++];
    if (!t || (v !== undefined && t.v !== v)) throw new Error(`d.ts: expected ${v}, got ${t?.v}`);
    return t;
  }
  type() {
    if (this.peek('|')) this.take('|');
    const alts = [this.primary()];
    while (this.peek('|')) { this.take('|'); alts.push(this.primary()); }
    return alts.length === 1 ? alts[0] : { k: 'union', alts };
  }
  primary() {
    const t = this.take();
    let ty;
    if (t.t === 'str' || t.t === 'num') ty = { k: 'lit', v: t.v };
    else if (t.v === '{') { ty = this.members('}'); }
    else if (t.v === '(') { ty = this.type(); this.take(')'); }
    else if (t.t === 'id') {
      if (t.v === 'Array') { this.take('<'); ty = { k: 'array', of: this.type() }; this.take('>'); }
      else if (['string', 'number', 'boolean', 'unknown', 'any', 'object', 'null'].includes(t.v)) {
        ty = { k: 'prim', n: t.v };
      } else if (t.v === 'true' || t.v === 'false') ty = { k: 'lit', v: t.v === 'true' };
      else ty = { k: 'ref', name: t.v };
    } else throw new Error(`d.ts: unexpected ${t.v}`);
    while (this.peek('[') && this.toks[this.i + 1]?.v === ']') {
      this.take('['); this.take(']'); ty = { k: 'array', of: ty };
    }
    return ty;
  }
  members(close) {
    const props = {};
    let index = null;
    while (!this.peek(close)) {
      if (this.peek('[')) {
        this.take('['); this.take(); this.take(':'); this.type(); this.take(']'); this.take(':');
        index = this.type();
      } else {
        const name = this.take().v;
        let optional = false;
        if (this.peek('?')) { this.take('?'); optional = true; }
        this.take(':');
        props[name] = { type: this.type(), optional };
      }
      if (this.peek(';') || this.peek(',')) this.take();
    }
    this.take(close);
    return { k: 'obj', props, index };
  }
}

function loadDts(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const src = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const info = { file, imports: {}, decls: {}, aliases: {} };
  fileCache.set(file, info);
  for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const n of m[1].split(',').map((s) => s.trim()).filter(Boolean)) {
      info.imports[n] = m[2];
    }
  }
  for (const m of src.matchAll(/export\s+type\s*\{([^}]*)\}/g)) {
    for (const part of m[1].split(',').map((s) => s.trim()).filter(Boolean)) {
      const [a, b] = part.split(/\s+as\s+/);
      info.aliases[b ?? a] = a;
    }
  }
  for (const m of src.matchAll(/export\s+interface\s+(\w+)\s*(?:extends[^{]*)?\{/g)) {
    const start = m.index + m[0].length;
    let depth = 1;
    let j = start;
    for (; j < src.length && depth; j++) {
      if (src[j] === '{') depth++;
      else if (src[j] === '}') depth--;
    }
    const p = new TypeParser(tokenize(src.slice(start, j)));
    info.decls[m[1]] = p.members('}');
  }
  for (const m of src.matchAll(/export\s+type\s+(\w+)\s*=\s*([^;]+);/g)) {
    info.decls[m[1]] = new TypeParser(tokenize(m[2])).type();
  }
  return info;
}

function resolveModule(fromFile, spec) {
  let p;
  if (spec.startsWith('.')) p = path.resolve(path.dirname(fromFile), spec);
  else p = path.join(NM, spec);
  p = p.replace(/\.js$/, '');
  return `${p}.d.ts`;
}

/** Resolves a named type as seen from a declaration file to { name, type, file }. */
function resolveRef(info, name, depth = 0) {
  if (depth > 20) throw new Error(`d.ts: alias loop at ${name}`);
  const local = info.aliases[name] ?? name;
  if (info.decls[local]) return { name: local, type: info.decls[local], file: info.file };
  if (info.imports[name]) {
    const target = loadDts(resolveModule(info.file, info.imports[name]));
    return resolveRef(target, name, depth + 1);
  }
  if (local !== name) return resolveRef(info, local, depth + 1);
  return null; // e.g. Model/ModelData from the base package: not data types
}

// ---- strict structural check ---------------------------------------------------------------------

function describe(ty) {
  switch (ty.k) {
    case 'lit': return JSON.stringify(ty.v);
    case 'prim': return ty.n;
    case 'array': return `Array<${describe(ty.of)}>`;
    case 'ref': return ty.name;
    case 'union': return ty.alts.map(describe).join(' | ');
    default: return 'object';
  }
}

function checkValue(value, ty, info, at, errs, owner) {
  switch (ty.k) {
    case 'prim':
      if (ty.n === 'unknown' || ty.n === 'any') return true;
      if (ty.n === 'object') return value !== null && typeof value === 'object';
      if (ty.n === 'null') return value === null;
      if (typeof value !== ty.n) { errs.push(`${at}: expected ${ty.n}, got ${JSON.stringify(value)}`); return false; }
      return true;
    case 'lit':
      if (value !== ty.v) { errs.push(`${at}: expected ${JSON.stringify(ty.v)}, got ${JSON.stringify(value)}`); return false; }
      return true;
    case 'union': {
      if (ty.alts.every((a) => a.k === 'lit')) {
        if (!ty.alts.some((a) => a.v === value)) {
          errs.push(`${at}: ${JSON.stringify(value)} is not one of ${describe(ty)}`);
          return false;
        }
        return true;
      }
      for (const alt of ty.alts) {
        const sub = [];
        if (checkValue(value, alt, info, at, sub, owner)) return true;
      }
      errs.push(`${at}: ${JSON.stringify(value)} does not match ${describe(ty)}`);
      return false;
    }
    case 'array':
      if (!Array.isArray(value)) { errs.push(`${at}: expected a list`); return false; }
      return value.map((v, i) => checkValue(v, ty.of, info, `${at}[${i}]`, errs, owner))
        .every(Boolean);
    case 'ref': {
      const r = resolveRef(info, ty.name);
      if (!r) { errs.push(`${at}: cannot resolve type ${ty.name}`); return false; }
      return checkValue(value, r.type, loadDts(r.file), at, errs, r.name);
    }
    case 'obj': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        errs.push(`${at}: expected an object`);
        return false;
      }
      let ok = true;
      for (const [k, v] of Object.entries(value)) {
        const prop = ty.props[k];
        if (prop) {
          ok = checkValue(v, prop.type, info, `${at}.${k}`, errs, owner) && ok;
          const extra = EXTRA_ENUMS[`${owner}.${k}`];
          const extraItems = EXTRA_ENUMS[`${owner}.${k}[]`];
          if (extra && !extra.includes(v)) {
            errs.push(`${at}.${k}: ${JSON.stringify(v)} is not one of ${extra.join(', ')}`);
            ok = false;
          }
          if (extraItems && Array.isArray(v)) {
            for (const [i, x] of v.entries()) {
              if (!extraItems.includes(x)) {
                errs.push(`${at}.${k}[${i}]: ${JSON.stringify(x)} is not one of ${extraItems.join(', ')}`);
                ok = false;
              }
            }
          }
        } else if (ty.index) {
          ok = checkValue(v, ty.index, info, `${at}.${k}`, errs, owner) && ok;
        } else {
          errs.push(`${at}.${k}: unknown field (not in ${owner ?? 'type'})`);
          ok = false;
        }
      }
      for (const [k, prop] of Object.entries(ty.props)) {
        if (!prop.optional && !(k in value)) {
          errs.push(`${at}: missing required field ${k}`);
          ok = false;
        }
      }
      return ok;
    }
    default:
      errs.push(`${at}: unsupported type`);
      return false;
  }
}

/** Strict structural check of one object; returns a list of error strings. */
export function strictCheck(obj) {
  if (!obj || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') {
    return ['object without apiVersion/kind'];
  }
  const file = path.join(modelDir(obj.apiVersion), `${obj.kind}.d.ts`);
  if (!fs.existsSync(file)) return [`${obj.apiVersion} ${obj.kind}: unknown kind (no schema)`];
  const info = loadDts(file);
  const iface = `I${obj.kind}`;
  if (!info.decls[iface]) return [`${obj.kind}: no interface ${iface} in ${file}`];
  const errs = [];
  checkValue(obj, info.decls[iface], info, obj.kind, errs, iface);
  return errs;
}

/** kubernetes-models validation (ajv); returns a list of error strings. */
export async function modelCheck(obj) {
  const file = path.join(modelDir(obj.apiVersion), `${obj.kind}.js`);
  if (!fs.existsSync(file)) return [`${obj.apiVersion} ${obj.kind}: unknown kind (no model)`];
  const mod = await import(pathToFileURL(file).href);
  const Cls = mod[obj.kind];
  try {
    new Cls(obj).validate();
    return [];
  } catch (e) {
    const details = (e.errors ?? []).map((x) => `${obj.kind}${x.instancePath}: ${x.message ?? x.keyword}`);
    return details.length ? details : [`${obj.kind}: ${e.message}`];
  }
}
