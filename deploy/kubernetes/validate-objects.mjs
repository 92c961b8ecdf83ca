// Validates Kubernetes objects against the OpenAPI schemas of the npm
// packages kubernetes-models (the built-in kinds) and
// @kubernetes-models/prometheus-operator (ServiceMonitor, PodMonitor,
// PrometheusRule), offline.
//
//   node validate-objects.mjs NODE_MODULES < objects.json
//
// objects.json is a JSON array of objects. For each one it prints a line
// "KIND/NAME: ok" or "KIND/NAME: PATH: error" and exits 1 if any failed.
//
// What is checked: the kind and apiVersion exist; every field has the
// schema's type, format and enum; required fields are there; and (which the
// schemas alone do not do, but `kubectl apply --validate=strict` does) no
// field is unknown. Unknown fields are found by watching which properties
// the compiled validator reads: a validator of an object with fixed
// properties reads each one it knows, so a key it never read is unknown;
// objects it enumerates (maps such as labels) or never looks into
// (free-form ones) are left alone.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node validate-objects.mjs NODE_MODULES < objects.json");
  process.exit(2);
}

// apiVersion "group/version" or "version" -> the package folder of its models.
function modelFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return join(modules, "@kubernetes-models/prometheus-operator", group, version, kind + ".js");
  return join(modules, "kubernetes-models", group || "", version, kind + ".js");
}

// The model file imports its validator from ../_schemas/NAME.js.
async function validatorFor(apiVersion, kind) {
  const file = modelFile(apiVersion, kind);
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return null;
  }
  const m = /import\{validate\}from"([^"]+_schemas\/[^"]+\.js)"/.exec(text);
  if (!m) return null;
  const mod = await import(pathToFileURL(join(file, "..", m[1])).href);
  return mod.validate;
}

// Wraps |value| so that reads and enumerations of every nested object are
// recorded in |seen| (object -> {read: Set, enumerated: bool}).
function watch(value, seen) {
  if (value === null || typeof value !== "object") return value;
  const rec = { read: new Set(), enumerated: false };
  seen.set(value, rec);
  const cache = new Map();
  return new Proxy(value, {
    get(target, prop, receiver) {
      if (typeof prop === "string") rec.read.add(prop);
      const v = Reflect.get(target, prop, receiver);
      if (v === null || typeof v !== "object") return v;
      if (!cache.has(prop)) cache.set(prop, watch(v, seen));
      return cache.get(prop);
    },
    has(target, prop) {
      if (typeof prop === "string") rec.read.add(prop);
      return Reflect.has(target, prop);
    },
    ownKeys(target) {
      rec.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(value, seen, path, out) {
  if (value === null || typeof value !== "object") return;
  const rec = seen.get(value);
  if (!rec) return; // never reached by the validator: free-form
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, seen, path + "/" + i, out));
    return;
  }
  const structured = !rec.enumerated && rec.read.size > 0;
  for (const key of Object.keys(value)) {
    if (structured && !rec.read.has(key)) out.push(path + "/" + key + ": unknown field");
    else unknownFields(value[key], seen, path + "/" + key, out);
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const obj of objects) {
  const name = `${obj?.kind}/${obj?.metadata?.name}`;
  const errors = [];
  const validate = obj?.apiVersion && obj?.kind ? await validatorFor(obj.apiVersion, obj.kind) : null;
  if (!validate) {
    errors.push(`no schema for apiVersion ${obj?.apiVersion} kind ${obj?.kind}`);
  } else {
    const seen = new Map();
    if (!validate(watch(obj, seen))) {
      for (const e of validate.errors || [])
        errors.push(`${e.instancePath || "/"}: ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
    }
    unknownFields(obj, seen, "", errors);
  }
  if (errors.length) {
    failed++;
    for (const e of errors) console.log(`${name}: ${e}`);
  } else {
    console.log(`${name}: ok`);
  }
}
process.exit(failed ? 1 : 0);
