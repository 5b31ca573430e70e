// Strict validation of rendered Kubernetes objects with kubernetes-models (and its
// prometheus-operator, KEDA and Gateway API packages), pinned in package-lock.json.
//
// Input: a JSON file (argv[2]) holding an array of objects. Output (stdout): a JSON array with
// one {kind, name, ok, errors} per object. Exit code 0 even when objects fail: the caller (the
// chart test) decides which objects must pass and which negative controls must fail; exit 2 on
// bad input.
//
// The models' validate() checks types, enums, required fields and formats, but the schemas do
// not set additionalProperties: false, so unknown fields (a typo such as `replica:`) pass it.
// The strict part: the object is validated through a Proxy that records every property the
// schema's compiled validator reads. A key that the validator never read is not in the schema
// (properties are read by name; maps, i.e. additionalProperties schemas, are iterated and every
// key read), so it is reported as an unknown field. Free-form objects (no properties in the
// schema) would be reported too: stricter than the API server, never looser.
import fs from "node:fs";

const PACKAGES = [
  [/^monitoring\.coreos\.com\//, "@kubernetes-models/prometheus-operator"],
  [/^keda\.sh\//, "@kubernetes-models/keda"],
  [/^gateway\.networking\.k8s\.io\//, "@kubernetes-models/gateway-api"],
  [/./, "kubernetes-models"],
];

async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9.\/-]+$/.test(apiVersion) ||
      !/^[A-Za-z]+$/.test(kind)) {
    throw new Error(`bad apiVersion/kind ${apiVersion}/${kind}`);
  }
  const pkg = PACKAGES.find(([re]) => re.test(apiVersion))[1];
  let mod;
  try {
    mod = await import(`${pkg}/${apiVersion}/${kind}`);
  } catch (e) {
    throw new Error(`no model for ${apiVersion} ${kind} in ${pkg}: ${e.message}`);
  }
  if (typeof mod[kind] !== "function") throw new Error(`no model for ${apiVersion} ${kind} in ${pkg}`);
  return mod[kind];
}

// Proxies that record which keys of which object the validator read.
function tracker() {
  const read = new WeakMap();
  const proxies = new WeakMap();
  const wrap = (target) => {
    if (target === null || typeof target !== "object") return target;
    if (proxies.has(target)) return proxies.get(target);
    read.set(target, new Set());
    const p = new Proxy(target, {
      get(t, key, receiver) {
        if (typeof key === "string") read.get(t).add(key);
        return wrap(Reflect.get(t, key, receiver));
      },
    });
    proxies.set(target, p);
    return p;
  };
  const unknown = (node, path, out) => {
    if (node === null || typeof node !== "object") return out;
    const seen = read.get(node) || new Set();
    for (const key of Object.keys(node)) {
      const child = Array.isArray(node) ? `${path}[${key}]` : `${path}/${key}`;
      if (!Array.isArray(node) && !seen.has(key)) out.push(`${child}: unknown field`);
      else unknown(node[key], child, out);
    }
    return out;
  };
  return { wrap, unknown };
}

async function check(obj) {
  const kind = obj?.kind, name = obj?.metadata?.name;
  const errors = [];
  try {
    const Model = await modelClass(obj.apiVersion, kind);
    const model = new Model(obj);  // a deep copy without undefined values
    const t = tracker();
    try {
      model.validate.call(t.wrap(model));
    } catch (e) {
      errors.push(String(e.message || e));
    }
    if (!errors.length) errors.push(...t.unknown(model, "", []));
  } catch (e) {
    errors.push(String(e.message || e));
  }
  return { kind, name, ok: errors.length === 0, errors };
}

let objects;
try {
  objects = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  if (!Array.isArray(objects)) throw new Error("expected a JSON array of objects");
} catch (e) {
  console.error(`validate.mjs: ${e.message}`);
  process.exit(2);
}
const results = [];
for (const obj of objects) results.push(await check(obj));
console.log(JSON.stringify(results, null, 1));
