// Validates Kubernetes objects offline against the API schema of a current
// Kubernetes release, as shipped by the npm package kubernetes-models.
//
// Two passes per object:
//  1. the package's own schema validator (types, enums, required fields,
//     formats), i.e. what the API server's OpenAPI validation checks;
//  2. unknown fields, which the OpenAPI schema allows but a current API
//     server rejects (kubectl apply and helm use strict field validation):
//     a typo such as "readOnlyRootFileSystem" must fail here too. The field
//     lists are read from the package's type declarations, which are
//     generated from the same OpenAPI document.
//
// The modules live in an npm prefix outside the source tree
// (K8S_MODELS_PREFIX, default build/npm), so they are loaded by path.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { check as checkCertManager } from "./cert-manager-schema.mjs";

const prefix = path.resolve(process.env.K8S_MODELS_PREFIX || "build/npm");
const nodeModules = path.join(prefix, "node_modules");
const modelsDir = path.join(nodeModules, "kubernetes-models");
if (!fs.existsSync(modelsDir)) {
  throw new Error(`kubernetes-models not installed under ${prefix} (make check-chart installs it)`);
}
export const yaml = createRequire(path.join(prefix, "package.json"))("js-yaml");
export const modelsVersion = JSON.parse(fs.readFileSync(path.join(modelsDir, "package.json"), "utf8")).version;

// apiVersion "v1" lives in kubernetes-models/v1, "apps/v1" in apps/v1, ...
function modelFile(apiVersion, kind) {
  return path.join(modelsDir, ...apiVersion.split("/"), `${kind}.js`);
}

const declCache = new Map();

// Reads the first interface of a .d.ts file: field name -> declaration file
// of its object type (or null for scalars, free-form maps and unions).
function readDecl(dtsFile) {
  if (declCache.has(dtsFile)) return declCache.get(dtsFile);
  const text = fs.readFileSync(dtsFile, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    imports.set(m[1], m[2]);
  }
  const start = text.search(/^export interface \w+[^{]*\{$/m);
  if (start < 0) {
    declCache.set(dtsFile, null); // a type alias (IntOrString, Quantity, Time)
    return null;
  }
  const fields = new Map();
  const lines = text.slice(start).split("\n").slice(1);
  for (const line of lines) {
    if (line === "}") break;
    const m = line.match(/^ {4}"([^"]+)"\??: (.*)$/);
    if (!m) continue;
    const [, name, type] = m;
    let target = null;
    const ref = type.match(/^(?:Array<)?(I\w+)>?;$/);
    if (ref && imports.has(ref[1])) {
      const spec = imports.get(ref[1]);
      target = spec.startsWith(".")
        ? path.resolve(path.dirname(dtsFile), spec.replace(/\.js$/, ".d.ts"))
        : path.join(nodeModules, `${spec}.d.ts`);
    }
    fields.set(name, target);
  }
  const decl = { fields };
  declCache.set(dtsFile, decl);
  return decl;
}

function unknownFields(value, dtsFile, where, errors) {
  if (value === null || typeof value !== "object" || !dtsFile || !fs.existsSync(dtsFile)) return;
  const decl = readDecl(dtsFile);
  if (!decl) return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, dtsFile, `${where}[${i}]`, errors));
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    if (!decl.fields.has(k)) {
      errors.push(`${where}.${k}: unknown field`);
      continue;
    }
    unknownFields(v, decl.fields.get(k), `${where}.${k}`, errors);
  }
}

// Returns a list of problems; empty when the object is valid.
export async function validateObject(obj) {
  if (!obj || typeof obj !== "object") return ["not an object"];
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") return ["apiVersion and kind are required"];
  // Not a Kubernetes type: cert-manager's CRD, checked against its fields.
  if (apiVersion.startsWith("cert-manager.io/")) return checkCertManager(obj);
  const file = modelFile(apiVersion, kind);
  if (!fs.existsSync(file)) return [`${apiVersion} ${kind}: no such type in Kubernetes (kubernetes-models ${modelsVersion})`];
  const mod = await import(pathToFileURL(file).href);
  const Model = mod[kind];
  const errors = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(e.message);
  }
  unknownFields(obj, file.replace(/\.js$/, ".d.ts"), kind, errors);
  return errors;
}

// Parses a multi-document YAML stream; duplicate keys are errors (as in the API server).
export function parseManifests(text) {
  return yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
}

// CLI: node k8s-validate.mjs < manifests.yaml
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const input = fs.readFileSync(0, "utf8");
  let bad = 0;
  const docs = parseManifests(input);
  for (const doc of docs) {
    const errs = await validateObject(doc);
    const name = `${doc.kind}/${doc.metadata?.name}`;
    if (errs.length) {
      bad++;
      for (const e of errs) console.error(`${name}: ${e}`);
    } else {
      console.log(`${name}: valid`);
    }
  }
  console.log(`${docs.length - bad} valid, ${bad} invalid (kubernetes-models ${modelsVersion})`);
  process.exit(bad ? 1 : 0);
}
