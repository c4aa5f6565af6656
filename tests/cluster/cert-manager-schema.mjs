// The part of cert-manager's Certificate CRD (cert-manager.io/v1) the chart
// renders, written from cert-manager's API reference (certificates.cert-manager.io,
// openAPIV3Schema of v1): field names, types, enums and required fields. Like
// the API server's structural-schema validation with strict field checks, an
// unknown field is an error. Fields of the CRD the chart never sets are listed
// with their type so that setting one stays possible without editing this.
const str = { type: "string" };
const strList = { type: "array", items: str };
const strMap = { type: "object", additional: str };

const USAGES = [
  "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
  "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
  "server auth", "client auth", "code signing", "email protection", "s/mime",
  "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
  "microsoft sgc", "netscape sgc",
];

const SPEC = {
  type: "object",
  required: ["issuerRef", "secretName"],
  fields: {
    secretName: str,
    secretTemplate: { type: "object", fields: { annotations: strMap, labels: strMap } },
    commonName: { type: "string", maxLength: 64 },
    dnsNames: strList,
    ipAddresses: strList,
    uris: strList,
    emailAddresses: strList,
    duration: str,
    renewBefore: str,
    renewBeforePercentage: { type: "integer" },
    revisionHistoryLimit: { type: "integer" },
    isCA: { type: "boolean" },
    encodeUsagesInRequest: { type: "boolean" },
    literalSubject: str,
    usages: { type: "array", items: { type: "string", enum: USAGES } },
    subject: {
      type: "object",
      fields: Object.fromEntries(["countries", "localities", "organizationalUnits", "organizations",
        "postalCodes", "provinces", "streetAddresses"].map((k) => [k, strList]).concat([["serialNumber", str]])),
    },
    privateKey: {
      type: "object",
      fields: {
        algorithm: { type: "string", enum: ["RSA", "ECDSA", "Ed25519"] },
        encoding: { type: "string", enum: ["PKCS1", "PKCS8"] },
        rotationPolicy: { type: "string", enum: ["Never", "Always"] },
        size: { type: "integer" },
      },
    },
    issuerRef: {
      type: "object",
      required: ["name"],
      fields: { name: str, kind: str, group: str },
    },
  },
};

export const CERTIFICATE = {
  type: "object",
  required: ["apiVersion", "kind", "metadata", "spec"],
  fields: {
    apiVersion: { type: "string", enum: ["cert-manager.io/v1"] },
    kind: { type: "string", enum: ["Certificate"] },
    metadata: {
      type: "object",
      required: ["name"],
      fields: { name: str, namespace: str, labels: strMap, annotations: strMap },
    },
    spec: SPEC,
  },
};

function typeOf(v) {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

// Returns a list of problems (empty when `value` satisfies `schema`).
export function check(value, schema = CERTIFICATE, where = "Certificate", errors = []) {
  const t = typeOf(value);
  if (t !== schema.type) {
    errors.push(`${where}: ${t}, want ${schema.type}`);
    return errors;
  }
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${where}: ${JSON.stringify(value)} is not one of ${schema.enum.join(", ")}`);
  if (schema.maxLength && value.length > schema.maxLength) errors.push(`${where}: longer than ${schema.maxLength}`);
  if (t === "array") value.forEach((v, i) => check(v, schema.items, `${where}[${i}]`, errors));
  if (t === "object") {
    for (const r of schema.required || []) if (!(r in value)) errors.push(`${where}.${r}: required`);
    for (const [k, v] of Object.entries(value)) {
      const sub = schema.fields ? schema.fields[k] : schema.additional;
      if (!sub) errors.push(`${where}.${k}: unknown field`);
      else check(v, sub, `${where}.${k}`, errors);
    }
  }
  return errors;
}
