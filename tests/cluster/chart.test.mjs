// Chart checks: what an operator relies on when installing
// deploy/helm/cloudtaser, above all the seed's own helm command.
//
// Environment (set by `make check-chart`):
//   HELM              helm, or the offline renderer (tests/cluster/helmrender)
//   K8S_MODELS_PREFIX npm prefix holding kubernetes-models and js-yaml
//   BROKER_BIN        optional: the broker binary, to hold the chart's flags
//                     against the binary's --help
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { validateObject, parseManifests } from "./k8s-validate.mjs";
import { check as checkCertManager } from "./cert-manager-schema.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const chart = path.join(root, "deploy/helm/cloudtaser");
const helm = process.env.HELM || path.join(root, "build/helmrender");
const yamllintConfig = path.join(here, "yamllint.yaml");

// The seed document's command, flag for flag (helm install -> helm template).
const SEED = [
  "--namespace", "cloudtaser-system",
  "--create-namespace",
  "--set", "operator.secretstore.address=broker://cloudtaser-broker.cloudtaser-system.svc:8443",
  "--set", "broker.enabled=true",
  "--set", "broker.externalHost=broker.prod.example.com",
];
const PIN_A = "sha256//" + Buffer.alloc(32, 1).toString("base64");
const PIN_B = "sha256//" + Buffer.alloc(32, 2).toString("base64");

// The Kubernetes release the schema comes from; helm's own default differs by helm version.
const KUBE_VERSION = "v1.34.0";

function helmTemplate(args, kubeVersion = KUBE_VERSION) {
  const r = spawnSync(helm, ["template", "cloudtaser", chart, "--kube-version", kubeVersion, ...args], { encoding: "utf8", timeout: 60000 });
  return { status: r.status, stdout: r.stdout || "", stderr: r.stderr || "" };
}

function render(args) {
  const r = helmTemplate(args);
  assert.equal(r.status, 0, `helm template ${args.join(" ")} failed:\n${r.stderr}`);
  return { text: r.stdout, objects: parseManifests(r.stdout) };
}

function find(objects, kind, name) {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `${kind}/${name} not rendered; got ${objects.map((x) => `${x.kind}/${x.metadata?.name}`).join(", ")}`);
  return o;
}

function matches(selector, labels) {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

// The API server requires every "except" range to lie inside its "cidr".
function cidrRange(cidr) {
  const [addr, bitsText] = cidr.split("/");
  const bits = Number(bitsText);
  let value = 0n;
  let width;
  if (addr.includes(":")) {
    width = 128;
    const [head, tail] = addr.split("::");
    const h = head ? head.split(":") : [];
    const t = tail !== undefined && tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    for (const g of groups) value = (value << 16n) | BigInt(parseInt(g || "0", 16));
  } else {
    width = 32;
    for (const o of addr.split(".")) value = (value << 8n) | BigInt(Number(o));
  }
  const host = BigInt(width - bits);
  const lo = (value >> host) << host;
  return { v6: width === 128, lo, hi: lo + (1n << host) - 1n };
}

// Beacon relay mode: the seed's values without broker.externalHost (nothing
// dials the broker), plus the beacon the broker dials out to.
const BEACON_BASE = SEED.slice(0, SEED.indexOf("broker.externalHost=broker.prod.example.com") - 1);
const BEACON_MODE = [...BEACON_BASE, "--set", "broker.beacon.address=beacon.example.com"];

// Scenarios every check runs on: defaults, the seed, and the other shapes an
// operator can choose.
const SCENARIOS = {
  defaults: [],
  seed: SEED,
  "seed + Ingress passthrough": [...SEED, "--set", "broker.external.type=Ingress"],
  "seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep": [
    ...SEED,
    "--set", `broker.bridgePins[0]=${PIN_A}`,
    "--set", `broker.bridgePins[1]=${PIN_B}`,
    "--set", "broker.replicas=3",
    "--set", "broker.tls.create=true",
    "--set-file", `broker.tls.crt=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.key=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.ca=${path.join(here, "fixtures/dummy.pem")}`,
    "--set", "broker.listenAddress=::",
    "--set", "broker.preStopSleepSeconds=5",
    "--set", "broker.networkPolicy.clusterCIDRs={10.0.0.0/8,fd00::/8}",
    "--set", "broker.external.allowedSourceRanges={0.0.0.0/0,::/0,198.51.100.7/32}",
  ],
  "seed + pins, cert-manager issues the broker's certificate": [
    ...SEED,
    "--set", `broker.bridgePins[0]=${PIN_A}`,
    "--set", "broker.tls.certManager.issuerRef.name=cloudtaser-ca",
  ],
  "beacon mode (one address as a string)": [...BEACON_MODE],
  "beacon mode, two beacons, own beacon CA Secret, pins, pool, chart-made TLS secret": [
    ...BEACON_BASE,
    "--set", "broker.beacon.address={beacon-a.example.com,beacon-b.example.com:8443}",
    "--set", "broker.beacon.caSecret=beacon-ca",
    "--set", `broker.beacon.pins[0]=${PIN_A}`,
    "--set", "broker.beacon.pool=8",
    "--set", "broker.beacon.clientCertSecret=broker-beacon-client",
    "--set", "broker.beacon.egressCIDRs={203.0.113.0/24}",
    "--set", `broker.bridgePins[0]=${PIN_B}`,
    "--set", "broker.tls.create=true",
    "--set-file", `broker.tls.crt=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.key=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.ca=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.pairingKey=${path.join(here, "fixtures/dummy.pem")}`,
  ],
  "beacon mode with an in-cluster beacon": [...BEACON_MODE, "--set", "beacon.enabled=true", "--set", "beacon.host=beacon.example.com"],
  "an in-cluster beacon only (no broker)": ["--namespace", "cloudtaser-system", "--set", "beacon.enabled=true"],
};

for (const [name, args] of Object.entries(SCENARIOS)) {
  test(`${name}: every rendered object validates against the Kubernetes API schema`, async () => {
    const { objects } = render(args);
    for (const o of objects) {
      const errs = await validateObject(o);
      assert.deepEqual(errs, [], `${o.kind}/${o.metadata?.name}`);
    }
  });

  test(`${name}: the rendered output passes yamllint`, () => {
    const { text } = render(args);
    const r = spawnSync("yamllint", ["-s", "-c", yamllintConfig, "-"], { input: text, encoding: "utf8", timeout: 60000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test(`${name}: every selector matches the pods of one Deployment and every named port exists there`, () => {
    const { objects } = render(args);
    const deps = objects.filter((o) => o.kind === "Deployment");
    for (const dep of deps) assert.ok(matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels));
    // The workload a selector picks: exactly one Deployment's pods.
    const workload = (selector, what) => {
      const hit = deps.filter((d) => matches(selector, d.spec.template.metadata.labels));
      assert.equal(hit.length, 1, `${what} selects ${hit.length} Deployments`);
      return hit[0];
    };
    for (const o of objects.filter((x) => x.kind === "Ingress")) {
      const backend = o.spec.rules[0].http.paths[0].backend.service;
      const svc = find(objects, "Service", backend.name);
      assert.ok(svc.spec.ports.some((p) => p.name === backend.port.name));
    }
    for (const o of objects) {
      if (!["Service", "NetworkPolicy", "PodDisruptionBudget"].includes(o.kind)) continue;
      const sel = o.kind === "Service" ? o.spec.selector : o.kind === "NetworkPolicy" ? o.spec.podSelector.matchLabels : o.spec.selector.matchLabels;
      const dep = workload(sel, `${o.kind}/${o.metadata.name}`);
      const podLabels = dep.spec.template.metadata.labels;
      const portNames = new Set(dep.spec.template.spec.containers[0].ports.map((p) => p.name));
      if (o.kind === "Service") {
        assert.ok(matches(o.spec.selector, podLabels), `Service/${o.metadata.name} selector`);
        for (const p of o.spec.ports) assert.ok(portNames.has(p.targetPort), `Service/${o.metadata.name} targetPort ${p.targetPort}`);
      }
      if (o.kind === "NetworkPolicy") {
        assert.ok(matches(o.spec.podSelector.matchLabels, podLabels));
        for (const rule of o.spec.ingress) for (const p of rule.ports) assert.ok(portNames.has(p.port), `NetworkPolicy port ${p.port}`);
        for (const rule of o.spec.ingress) for (const peer of rule.from) {
          for (const ex of peer.ipBlock?.except || []) {
            const outer = cidrRange(peer.ipBlock.cidr);
            const inner = cidrRange(ex);
            assert.ok(outer.v6 === inner.v6 && inner.lo >= outer.lo && inner.hi <= outer.hi, `${ex} not inside ${peer.ipBlock.cidr}`);
          }
        }
      }
    }
  });
}

test("the chart renders with its defaults and, reverse-connect being opt-in, deploys no broker", () => {
  const { objects } = render([]);
  assert.equal(objects.filter((o) => o.kind === "Deployment").length, 0);
});

test("the seed's install creates Service cloudtaser-broker on 8443 in cloudtaser-system", () => {
  const { objects } = render(SEED);
  const svc = find(objects, "Service", "cloudtaser-broker");
  assert.equal(svc.metadata.namespace, "cloudtaser-system");
  assert.equal(svc.spec.type, "ClusterIP");
  assert.deepEqual(svc.spec.ports.map((p) => [p.port, p.protocol]), [[8443, "TCP"]]);
  // Every namespaced object lands in the release namespace.
  for (const o of objects) assert.equal(o.metadata.namespace, "cloudtaser-system", `${o.kind}/${o.metadata.name}`);
  // The operator is pointed at exactly that service.
  const cm = find(objects, "ConfigMap", "cloudtaser-config");
  assert.equal(cm.data["secretstore.address"], "broker://cloudtaser-broker.cloudtaser-system.svc:8443");
});

test("the seed's install exposes a LoadBalancer on 443 for bridges that reaches brokers before they are ready", () => {
  const { objects } = render(SEED);
  const lb = find(objects, "Service", "cloudtaser-broker-bridge");
  assert.equal(lb.spec.type, "LoadBalancer");
  assert.deepEqual(lb.spec.ports.map((p) => [p.port, p.targetPort]), [[443, "bridge"]]);
  assert.equal(lb.spec.publishNotReadyAddresses, true);
  assert.equal(lb.spec.externalTrafficPolicy, "Local");
  assert.equal(lb.metadata.annotations["external-dns.alpha.kubernetes.io/hostname"], "broker.prod.example.com");
  assert.equal(objects.filter((o) => o.kind === "Ingress").length, 0);
});

test("Ingress mode passes TLS through for the external host to the bridge port", () => {
  const { objects } = render([...SEED, "--set", "broker.external.type=Ingress"]);
  const ing = find(objects, "Ingress", "cloudtaser-broker-bridge");
  assert.equal(ing.metadata.annotations["nginx.ingress.kubernetes.io/ssl-passthrough"], "true");
  assert.equal(ing.spec.rules[0].host, "broker.prod.example.com");
  assert.deepEqual(ing.spec.tls, [{ hosts: ["broker.prod.example.com"] }]);
  assert.equal(ing.spec.tls[0].secretName, undefined, "passthrough: the controller holds no certificate");
  const svc = find(objects, "Service", "cloudtaser-broker-bridge");
  assert.equal(svc.spec.type, "ClusterIP");
  assert.equal(svc.spec.publishNotReadyAddresses, true);
  // The bridge port is then open to the ingress controller only.
  const np = find(objects, "NetworkPolicy", "cloudtaser-broker");
  const bridgeRule = np.spec.ingress.find((r) => r.ports.some((p) => p.port === "bridge"));
  assert.deepEqual(bridgeRule.from, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } } }]);
});

test("the broker pod runs as 65532, non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp", () => {
  const { objects } = render(SEED);
  const pod = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 65532);
  assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.hostNetwork, undefined);
  assert.equal(pod.containers.length, 1);
  const sc = pod.containers[0].securityContext;
  assert.equal(sc.runAsNonRoot, true);
  assert.equal(sc.runAsUser, 65532);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.privileged, false);
  assert.deepEqual(sc.capabilities, { drop: ["ALL"] });
  assert.equal(sc.seccompProfile.type, "RuntimeDefault");
  // Nothing writable is mounted: the only volume is the TLS secret, read-only.
  assert.deepEqual(pod.volumes.map((v) => Object.keys(v).filter((k) => k !== "name")), [["secret"]]);
  assert.deepEqual(pod.containers[0].volumeMounts.map((m) => m.readOnly), [true]);
});

test("the TLS Secret with tls.crt, tls.key and ca.crt is mounted read-only where the broker flags point", () => {
  const { objects } = render(SEED);
  const pod = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec;
  const c = pod.containers[0];
  const vol = pod.volumes.find((v) => v.secret);
  assert.equal(vol.secret.secretName, "cloudtaser-broker-tls");
  assert.equal(vol.secret.defaultMode, 0o440);
  const mount = c.volumeMounts.find((m) => m.name === vol.name);
  const flag = (f) => c.args[c.args.indexOf(f) + 1];
  assert.equal(flag("--cert"), `${mount.mountPath}/tls.crt`);
  assert.equal(flag("--key"), `${mount.mountPath}/tls.key`);
  assert.equal(flag("--ca-cert"), `${mount.mountPath}/ca.crt`);
  assert.equal(objects.filter((o) => o.kind === "Secret").length, 0, "the seed's install expects an existing Secret");
});

test("with tls.create the chart makes the Secret from --set-file contents", () => {
  const pem = fs.readFileSync(path.join(here, "fixtures/dummy.pem"));
  const { objects } = render(SCENARIOS["seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep"]);
  const s = find(objects, "Secret", "cloudtaser-broker-tls");
  assert.equal(s.type, "kubernetes.io/tls");
  for (const k of ["tls.crt", "tls.key", "ca.crt"]) assert.deepEqual(Buffer.from(s.data[k], "base64"), pem, k);
  const dep = find(objects, "Deployment", "cloudtaser-broker");
  assert.match(dep.spec.template.metadata.annotations["checksum/tls"], /^[0-9a-f]{64}$/);
});

const CERT_MANAGER = SCENARIOS["seed + pins, cert-manager issues the broker's certificate"];

test("without certManager values no cert-manager Certificate is rendered", () => {
  for (const args of [SEED, SCENARIOS["seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep"]]) {
    const { objects } = render(args);
    assert.equal(objects.filter((o) => o.kind === "Certificate").length, 0);
  }
});

test("with certManager.issuerRef a Certificate for the external host writes the Secret the broker mounts, keeping its key on renewal", () => {
  const { objects } = render(CERT_MANAGER);
  const c = find(objects, "Certificate", "cloudtaser-broker-tls");
  assert.equal(c.apiVersion, "cert-manager.io/v1");
  assert.equal(c.metadata.namespace, "cloudtaser-system");
  const vol = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec.volumes.find((v) => v.secret);
  assert.equal(c.spec.secretName, vol.secret.secretName);
  assert.deepEqual(c.spec.dnsNames, ["broker.prod.example.com"]);
  assert.equal(c.spec.ipAddresses, undefined);
  assert.equal(c.spec.privateKey.rotationPolicy, "Never", "a renewal must keep the pinned key");
  assert.deepEqual([c.spec.privateKey.algorithm, c.spec.privateKey.size], ["ECDSA", 256]);
  assert.deepEqual(c.spec.usages, ["digital signature", "server auth"]);
  assert.deepEqual(c.spec.issuerRef, { name: "cloudtaser-ca", kind: "Issuer", group: "cert-manager.io" });
  assert.equal(c.spec.duration, "2160h");
  assert.equal(c.spec.renewBefore, "720h");
  assert.equal(objects.filter((o) => o.kind === "Secret").length, 0, "cert-manager makes the Secret, not the chart");
});

test("certManager values reach the Certificate: an IP host, a ClusterIssuer, rotationPolicy Always, durations", () => {
  const { objects } = render([
    ...SEED, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.externalHost=192.0.2.7",
    "--set", "broker.tls.certManager.issuerRef.name=corp-ca", "--set", "broker.tls.certManager.issuerRef.kind=ClusterIssuer",
    "--set", "broker.tls.certManager.rotationPolicy=Always", "--set", "broker.tls.certManager.duration=720h",
    "--set", "broker.tls.certManager.renewBefore=240h",
  ]);
  const c = find(objects, "Certificate", "cloudtaser-broker-tls");
  assert.deepEqual(c.spec.ipAddresses, ["192.0.2.7"]);
  assert.equal(c.spec.dnsNames, undefined);
  assert.equal(c.spec.issuerRef.kind, "ClusterIssuer");
  assert.equal(c.spec.privateKey.rotationPolicy, "Always");
  assert.deepEqual([c.spec.duration, c.spec.renewBefore], ["720h", "240h"]);
});

test("beacon mode with cert-manager: the certificate names cloudtaser-broker, as cloudtaser-certs makes it", () => {
  const { objects } = render([...BEACON_MODE, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.certManager.issuerRef.name=ca"]);
  assert.deepEqual(find(objects, "Certificate", "cloudtaser-broker-tls").spec.dnsNames, ["cloudtaser-broker"]);
});

test("the cert-manager field check rejects what the CRD would: an unknown field, a bad enum, no issuer name", () => {
  const { objects } = render(CERT_MANAGER);
  const c = find(objects, "Certificate", "cloudtaser-broker-tls");
  const bad = (mutate) => { const o = structuredClone(c); mutate(o); return checkCertManager(o); };
  assert.match(bad((o) => { o.spec.privateKey.rotationPoliy = "Never"; }).join(), /rotationPoliy: unknown field/);
  assert.match(bad((o) => { o.spec.privateKey.rotationPolicy = "Sometimes"; }).join(), /rotationPolicy: "Sometimes" is not one of/);
  assert.match(bad((o) => { delete o.spec.issuerRef.name; }).join(), /issuerRef\.name: required/);
  assert.match(bad((o) => { o.spec.usages.push("server-auth"); }).join(), /usages\[2\]/);
  assert.deepEqual(checkCertManager(c), []);
});

test("the broker gets the contract's flags: listen addresses, certificates, pins, timeouts", () => {
  const { objects } = render(SCENARIOS["seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep"]);
  const c = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
  const flag = (f) => c.args[c.args.indexOf(f) + 1];
  assert.equal(flag("--service-listen"), "[::]:8443");
  assert.equal(flag("--bridge-listen"), "[::]:8444");
  assert.equal(flag("--metrics-listen"), "[::]:9090");
  assert.equal(flag("--pending-timeout"), "10");
  assert.equal(flag("--drain-timeout"), "30");
  assert.equal(flag("--memory-budget"), "32");
  const pins = c.args.flatMap((a, i) => (a === "--bridge-pin" ? [c.args[i + 1]] : []));
  assert.deepEqual(pins, [PIN_A, PIN_B]);
  const seed = find(render(SEED).objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
  assert.equal(seed.args[seed.args.indexOf("--service-listen") + 1], "0.0.0.0:8443");
  assert.ok(!seed.args.includes("--bridge-pin"));
});

test("every flag the chart passes is one the broker binary documents in --help", { skip: !process.env.BROKER_BIN && "BROKER_BIN not set" }, () => {
  const r = spawnSync(process.env.BROKER_BIN, ["--help"], { encoding: "utf8", timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  const help = r.stdout + r.stderr;
  const { objects } = render(SCENARIOS["seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep"]);
  const c = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
  for (const a of c.args.filter((x) => x.startsWith("--"))) assert.ok(help.includes(a), `broker --help does not mention ${a}`);
});

test("probes ask /healthz for liveness and /readyz for readiness on the probe port, apart from metrics, and the grace period covers the drain", () => {
  const { objects } = render(SEED);
  const pod = find(objects, "Deployment", "cloudtaser-broker").spec.template.spec;
  const c = pod.containers[0];
  assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "probe" });
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "probe" });
  assert.equal(c.ports.find((p) => p.name === "metrics").containerPort, 9090);
  assert.equal(c.ports.find((p) => p.name === "probe").containerPort, 9091);
  const flag = (f) => c.args[c.args.indexOf(f) + 1];
  assert.equal(flag("--probe-listen"), "0.0.0.0:9091");
  assert.equal(flag("--max-wrappers-per-source"), "256");
  assert.ok(pod.terminationGracePeriodSeconds > 30, "must exceed --drain-timeout");
});

test("NetworkPolicy: 8443 only from in-cluster pods, the bridge port only from outside ranges, no egress", () => {
  const { objects } = render(SCENARIOS["seed + pins, 3 replicas, chart-made TLS secret, IPv6 listen, preStop sleep"]);
  const np = find(objects, "NetworkPolicy", "cloudtaser-broker");
  assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
  assert.deepEqual(np.spec.egress, []);
  const rule = (port) => np.spec.ingress.filter((r) => r.ports.some((p) => p.port === port));
  const svcRules = rule("service");
  assert.equal(svcRules.length, 1);
  assert.deepEqual(svcRules[0].from, [{ namespaceSelector: {} }], "pods of every namespace, nothing by IP");
  const bridgeRules = rule("bridge");
  assert.equal(bridgeRules.length, 1);
  assert.ok(bridgeRules[0].from.every((p) => p.ipBlock && !p.namespaceSelector && !p.podSelector), "bridge port is not open to pods");
  assert.deepEqual(bridgeRules[0].from, [
    { ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] } },
    { ipBlock: { cidr: "::/0", except: ["fd00::/8"] } },
    { ipBlock: { cidr: "198.51.100.7/32" } },
  ]);
  // The metrics port only from Prometheus's namespace and pods; the probe
  // port from nobody (kubelet comes from the node, always allowed).
  const metricsRules = rule("metrics");
  assert.equal(metricsRules.length, 1);
  assert.deepEqual(metricsRules[0].from, [{
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
    podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
  }]);
  assert.equal(rule("probe").length, 0);
  assert.equal(np.spec.ingress.length, 3, "service, bridge, metrics and nothing else");
  const none = find(render([...SEED, "--set", "broker.networkPolicy.metricsFrom=null"]).objects,
    "NetworkPolicy", "cloudtaser-broker");
  assert.equal(none.spec.ingress.filter((r) => r.ports.some((p) => p.port === "metrics")).length, 0,
    "an empty metricsFrom admits nobody to the metrics port");
});

const DEPLOY = (args) => find(render([...SEED, ...args]).objects, "Deployment", "cloudtaser-broker");
const argOf = (c, f) => (c.args.includes(f) ? c.args[c.args.indexOf(f) + 1] : undefined);
const BROKER_PODS = { "app.kubernetes.io/name": "cloudtaser-broker", "app.kubernetes.io/instance": "cloudtaser" };

test("two replicas by default, and the broker is told the same number with --replicas", () => {
  const dep = DEPLOY([]);
  assert.equal(dep.spec.replicas, 2);
  assert.equal(argOf(dep.spec.template.spec.containers[0], "--replicas"), "2");
  for (const n of [1, 3, 16]) {
    const d = DEPLOY(["--set", `broker.replicas=${n}`]);
    assert.equal(d.spec.replicas, n, `replicas=${n}`);
    assert.equal(argOf(d.spec.template.spec.containers[0], "--replicas"), String(n), `--replicas with replicas=${n}`);
  }
});

test("broker.clusterName becomes --cluster-name; unset, no flag; a name the broker refuses fails the schema", () => {
  assert.equal(argOf(DEPLOY([]).spec.template.spec.containers[0], "--cluster-name"), undefined);
  const d = DEPLOY(["--set", "broker.clusterName=prod-eu-1"]);
  assert.equal(argOf(d.spec.template.spec.containers[0], "--cluster-name"), "prod-eu-1");
  for (const bad of ["prod eu", "x".repeat(64)]) {
    const r = helmTemplate([...SEED, "--set", `broker.clusterName=${bad}`]);
    assert.notEqual(r.status, 0, `clusterName=${JSON.stringify(bad)} must be refused`);
  }
});

test("a rollout surges one new broker and takes none away until it is ready", () => {
  const dep = DEPLOY([]);
  assert.deepEqual(dep.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  // New pods are ready only once a bridge linked to them, and only ready pods take wrappers.
  assert.deepEqual(dep.spec.template.spec.containers[0].readinessProbe.httpGet, { path: "/readyz", port: "probe" });
});

test("PodDisruptionBudget lets one broker go at a time, whatever the replica count, and never blocks on unready ones", () => {
  for (const n of [1, 2, 3]) {
    const pdb = find(render([...SEED, "--set", `broker.replicas=${n}`]).objects, "PodDisruptionBudget", "cloudtaser-broker");
    assert.equal(pdb.spec.maxUnavailable, 1, `replicas=${n}`);
    assert.equal(pdb.spec.minAvailable, undefined, `replicas=${n}`);
    assert.equal(pdb.spec.unhealthyPodEvictionPolicy, "AlwaysAllow");
    assert.deepEqual(pdb.spec.selector.matchLabels, BROKER_PODS);
  }
  assert.equal(render([...SEED, "--set", "broker.podDisruptionBudget.enabled=false"]).objects
    .filter((o) => o.kind === "PodDisruptionBudget").length, 0);
});

test("replicas prefer different nodes and spread over zones without refusing to schedule", () => {
  const pod = DEPLOY([]).spec.template.spec;
  assert.deepEqual(pod.affinity, {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{
        weight: 100,
        podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: BROKER_PODS } },
      }],
    },
  });
  assert.deepEqual(pod.topologySpreadConstraints, [{
    maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway",
    labelSelector: { matchLabels: BROKER_PODS },
  }]);
});

test("anti-affinity and zone spread are overridden from values", () => {
  const required = DEPLOY(["--set", "broker.podAntiAffinity.type=required"]).spec.template.spec;
  assert.deepEqual(required.affinity.podAntiAffinity, {
    requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: BROKER_PODS } }],
  });
  const none = DEPLOY(["--set", "broker.podAntiAffinity.type=none", "--set", "broker.topologySpreadConstraints=null"]).spec.template.spec;
  assert.equal(none.affinity, undefined);
  assert.equal(none.topologySpreadConstraints, undefined);
  // An affinity of the operator's own is kept; its podAntiAffinity replaces the chart's.
  const own = DEPLOY([
    "--set", "broker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
    "--set", "broker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
    "--set", "broker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]=edge",
  ]).spec.template.spec;
  assert.ok(own.affinity.nodeAffinity && own.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
  const replaced = DEPLOY([
    "--set", "broker.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey=rack",
    "--set", "broker.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels.app=x",
  ]).spec.template.spec;
  assert.deepEqual(Object.keys(replaced.affinity.podAntiAffinity), ["requiredDuringSchedulingIgnoredDuringExecution"]);
  assert.equal(replaced.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey, "rack");
  // A spread list of the operator's own replaces the default; a labelSelector given is kept.
  const spread = DEPLOY([
    "--set", "broker.topologySpreadConstraints[0].maxSkew=2",
    "--set", "broker.topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
    "--set", "broker.topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
    "--set", "broker.topologySpreadConstraints[1].maxSkew=1",
    "--set", "broker.topologySpreadConstraints[1].topologyKey=rack",
    "--set", "broker.topologySpreadConstraints[1].whenUnsatisfiable=ScheduleAnyway",
    "--set", "broker.topologySpreadConstraints[1].labelSelector.matchLabels.app=x",
  ]).spec.template.spec.topologySpreadConstraints;
  assert.deepEqual(spread, [
    { maxSkew: 2, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "DoNotSchedule", labelSelector: { matchLabels: BROKER_PODS } },
    { maxSkew: 1, topologyKey: "rack", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: { app: "x" } } },
  ]);
});

test("the image defaults to the chart's appVersion, which is the project VERSION, or a pinned digest", () => {
  const version = fs.readFileSync(path.join(root, "VERSION"), "utf8").trim();
  const c = find(render(SEED).objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
  assert.equal(c.image, `ghcr.io/cloudtaser/cloudtaser-broker:${version}`);
  const digest = "sha256:" + "ab".repeat(32);
  const d = find(render([...SEED, "--set", `broker.image.digest=${digest}`]).objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
  assert.equal(d.image, `ghcr.io/cloudtaser/cloudtaser-broker@${digest}`);
});

test("--set values are typed as helm types them", () => {
  const dep = find(render([...SEED, "--set", "broker.replicas=3", "--set-string", "broker.logLevel=debug"]).objects, "Deployment", "cloudtaser-broker");
  assert.equal(dep.spec.replicas, 3);
  // replicas as a string is rejected by the values schema, as helm would.
  const r = helmTemplate([...SEED, "--set-string", "broker.replicas=3"]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /replicas/);
});

test("a cluster older than the chart's kubeVersion is refused", () => {
  const r = helmTemplate(SEED, "v1.25.0");
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /kubeVersion/);
});

test("helm lint --strict passes with the seed's values", { skip: path.basename(helm) !== "helm" && "real helm not on PATH" }, () => {
  const r = spawnSync(helm, ["lint", "--strict", chart, ...SEED.filter((a) => a !== "--create-namespace")], { encoding: "utf8", timeout: 60000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test("the broker's memory budget follows broker.memoryBudget, and a limit of 2 x the budget + 40 Mi in any unit is enough", () => {
  const budgetOf = (args) => {
    const c = find(render([...SEED, ...args]).objects, "Deployment", "cloudtaser-broker").spec.template.spec.containers[0];
    return c.args[c.args.indexOf("--memory-budget") + 1];
  };
  assert.equal(budgetOf(["--set", "broker.memoryBudget=44"]), "44"); // 2 x 44 + 40 = the default 128Mi
  for (const limit of ["104Mi", "106496Ki", "109051904", "110M", "1Gi", "0.5Gi"])
    assert.equal(budgetOf(["--set", `broker.resources.limits.memory=${limit}`]), "32", limit);
});

// ---------------------------------------------------------------- beacon relay mode

const BEACON_FULL = SCENARIOS["beacon mode, two beacons, own beacon CA Secret, pins, pool, chart-made TLS secret"];
const brokerOf = (objects) => find(objects, "Deployment", "cloudtaser-broker").spec.template.spec;
const flagsOf = (c, f) => c.args.flatMap((a, i) => (a === f ? [c.args[i + 1]] : []));

test("beacon mode: the broker dials the beacon with its CA and the pairing key from its Secret, and listens for no bridge", () => {
  const pod = brokerOf(render(BEACON_MODE).objects);
  const c = pod.containers[0];
  assert.deepEqual(flagsOf(c, "--beacon-address"), ["beacon.example.com"]);
  assert.ok(!c.args.includes("--bridge-listen"), "no --bridge-listen in beacon mode");
  assert.ok(!c.args.includes("--beacon-pin") && !c.args.includes("--beacon-pool"));
  assert.ok(!c.ports.some((p) => p.name === "bridge"), "no bridge container port");
  const mount = c.volumeMounts.find((m) => m.name === "tls").mountPath;
  assert.equal(argOf(c, "--beacon-ca"), `${mount}/ca.crt`, "the beacon's CA defaults to the broker Secret's ca.crt");
  assert.equal(argOf(c, "--pairing-key-file"), `${mount}/pairing.key`);
  assert.equal(pod.volumes.find((v) => v.name === "tls").secret.secretName, "cloudtaser-broker-tls");
  // Everything else is as in reverse-connect: wrappers, probes, identity.
  assert.equal(argOf(c, "--service-listen"), "0.0.0.0:8443");
  assert.equal(argOf(c, "--cert"), `${mount}/tls.crt`);
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "probe" }, "ready only with a bridge linked, as before");
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
});

test("beacon mode: a list of beacons, an own CA Secret, pins and pool become the broker's flags", () => {
  const { objects } = render(BEACON_FULL);
  const pod = brokerOf(objects);
  const c = pod.containers[0];
  assert.deepEqual(flagsOf(c, "--beacon-address"), ["beacon-a.example.com", "beacon-b.example.com:8443"]);
  assert.deepEqual(flagsOf(c, "--beacon-pin"), [PIN_A]);
  assert.equal(argOf(c, "--beacon-pool"), "8");
  const caMount = c.volumeMounts.find((m) => m.name === "beacon-ca");
  assert.equal(caMount.readOnly, true);
  assert.equal(argOf(c, "--beacon-ca"), `${caMount.mountPath}/ca.crt`);
  const caVol = pod.volumes.find((v) => v.name === "beacon-ca");
  assert.equal(caVol.secret.secretName, "beacon-ca");
  assert.deepEqual(caVol.secret.items, [{ key: "ca.crt", path: "ca.crt" }]);
  // The chart-made Secret carries the pairing key.
  const pem = fs.readFileSync(path.join(here, "fixtures/dummy.pem"));
  assert.deepEqual(Buffer.from(find(objects, "Secret", "cloudtaser-broker-tls").data["pairing.key"], "base64"), pem);
  assert.ok(!c.args.includes("--bridge-listen"));
});

test("beacon mode: a client certificate Secret for a beacon that requires one becomes --beacon-cert/--beacon-key", () => {
  const c0 = brokerOf(render(BEACON_MODE).objects).containers[0];
  assert.ok(!c0.args.includes("--beacon-cert") && !c0.volumeMounts.some((m) => m.name === "beacon-client"),
    "no client certificate unless asked for");
  const pod = brokerOf(render([...BEACON_MODE, "--set", "broker.beacon.clientCertSecret=broker-beacon-client"]).objects);
  const c = pod.containers[0];
  const mount = c.volumeMounts.find((m) => m.name === "beacon-client");
  assert.equal(mount.readOnly, true);
  assert.equal(argOf(c, "--beacon-cert"), `${mount.mountPath}/tls.crt`);
  assert.equal(argOf(c, "--beacon-key"), `${mount.mountPath}/tls.key`);
  assert.notEqual(mount.mountPath, c.volumeMounts.find((m) => m.name === "tls").mountPath,
    "the beacon client key is not the link's key");
  const vol = pod.volumes.find((v) => v.name === "beacon-client");
  assert.equal(vol.secret.secretName, "broker-beacon-client");
  assert.deepEqual(vol.secret.items.map((i) => i.key), ["tls.crt", "tls.key"]);
  assert.equal(vol.secret.defaultMode, 0o440);
  // Reverse-connect ignores it: nothing dials a beacon.
  const rc = brokerOf(render([...SEED, "--set", "broker.beacon.clientCertSecret=x"]).objects).containers[0];
  assert.ok(!rc.args.includes("--beacon-cert") && !rc.volumeMounts.some((m) => m.name === "beacon-client"));
});

test("beacon mode: no LoadBalancer, Service or Ingress for bridges is rendered; wrappers keep cloudtaser-broker:8443", () => {
  for (const args of [BEACON_MODE, [...BEACON_MODE, "--set", "broker.external.type=Ingress"], BEACON_FULL]) {
    const { objects } = render(args);
    assert.equal(objects.filter((o) => o.kind === "Ingress").length, 0);
    assert.equal(objects.filter((o) => o.metadata.name === "cloudtaser-broker-bridge").length, 0);
    assert.equal(objects.filter((o) => o.kind === "Service" && o.spec.type === "LoadBalancer").length, 0);
    const svc = find(objects, "Service", "cloudtaser-broker");
    assert.equal(svc.spec.type, "ClusterIP");
    assert.deepEqual(svc.spec.ports.map((p) => p.port), [8443]);
    assert.equal(find(objects, "ConfigMap", "cloudtaser-config").data["secretstore.address"], "broker://cloudtaser-broker.cloudtaser-system.svc:8443");
  }
});

test("beacon mode: the NetworkPolicy opens no bridge port and lets the broker out to the beacons' ports and DNS only", () => {
  const np = find(render(BEACON_MODE).objects, "NetworkPolicy", "cloudtaser-broker");
  assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
  const ingressPorts = np.spec.ingress.flatMap((r) => r.ports.map((p) => p.port));
  assert.deepEqual(ingressPorts, ["service", "metrics"], "wrappers and metrics as before; no bridge port");
  assert.deepEqual(np.spec.egress, [
    { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }, { ipBlock: { cidr: "::/0" } }], ports: [{ port: 443, protocol: "TCP" }] },
    {
      to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
      ports: [{ port: 53, protocol: "UDP" }, { port: 53, protocol: "TCP" }],
    },
  ]);
  // Every beacon port once, the narrowed destinations.
  const full = find(render(BEACON_FULL).objects, "NetworkPolicy", "cloudtaser-broker");
  assert.deepEqual(full.spec.egress[0], {
    to: [{ ipBlock: { cidr: "203.0.113.0/24" } }],
    ports: [{ port: 443, protocol: "TCP" }, { port: 8443, protocol: "TCP" }],
  });
  const ports = (addr) => find(render([...BEACON_BASE, "--set", `broker.beacon.address=${addr}`]).objects, "NetworkPolicy", "cloudtaser-broker")
    .spec.egress[0].ports.map((p) => p.port);
  assert.deepEqual(ports("[2001:db8::7]:9443"), [9443]);
  assert.deepEqual(ports("[2001:db8::7]"), [443]);
  assert.deepEqual(ports("198.51.100.9"), [443]);
  // With an in-cluster beacon, also its pods on their container port.
  const own = find(render([...BEACON_MODE, "--set", "beacon.enabled=true"]).objects, "NetworkPolicy", "cloudtaser-broker");
  assert.deepEqual(own.spec.egress[1], {
    to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "cloudtaser-beacon", "app.kubernetes.io/instance": "cloudtaser" } } }],
    ports: [{ port: 8443, protocol: "TCP" }],
  });
  assert.equal(own.spec.egress.length, 3);
  // Reverse-connect keeps no egress at all.
  assert.deepEqual(find(render(SEED).objects, "NetworkPolicy", "cloudtaser-broker").spec.egress, []);
});

test("beacon mode: every flag the chart passes is one the broker binary documents in --help", { skip: !process.env.BROKER_BIN && "BROKER_BIN not set" }, () => {
  const r = spawnSync(process.env.BROKER_BIN, ["--help"], { encoding: "utf8", timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  const help = r.stdout + r.stderr;
  const c = brokerOf(render(BEACON_FULL).objects).containers[0];
  for (const a of c.args.filter((x) => x.startsWith("--"))) assert.ok(help.includes(a), `broker --help does not mention ${a}`);
});

test("beacon.enabled: a cloudtaser-beacon Deployment, non-root on 8443, hardened like the broker, probed on its metrics port", () => {
  const version = fs.readFileSync(path.join(root, "VERSION"), "utf8").trim();
  const { objects } = render([...BEACON_MODE, "--set", "beacon.enabled=true"]);
  const dep = find(objects, "Deployment", "cloudtaser-beacon");
  assert.equal(dep.spec.replicas, 1, "a beacon pairs only what it holds: one pod per Service");
  const pod = dep.spec.template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.containers.length, 1);
  const c = pod.containers[0];
  assert.equal(c.image, `ghcr.io/cloudtaser/cloudtaser-beacon:${version}`);
  assert.deepEqual(c.securityContext, {
    runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, privileged: false, allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" },
  });
  assert.equal(argOf(c, "--listen"), "0.0.0.0:8443");
  assert.equal(argOf(c, "--metrics-listen"), "0.0.0.0:9090");
  assert.deepEqual(c.ports.map((p) => [p.name, p.containerPort]), [["beacon", 8443], ["metrics", 9090]]);
  assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
  assert.ok(pod.terminationGracePeriodSeconds > 30, "must exceed --drain-timeout");
  // Its certificate Secret, read-only, where --cert and --key point; never the pairing key.
  const vol = pod.volumes.find((v) => v.secret);
  assert.equal(vol.secret.secretName, "cloudtaser-beacon-tls");
  assert.equal(vol.secret.defaultMode, 0o440);
  const mount = c.volumeMounts.find((m) => m.name === vol.name);
  assert.equal(mount.readOnly, true);
  assert.equal(argOf(c, "--cert"), `${mount.mountPath}/tls.crt`);
  assert.equal(argOf(c, "--key"), `${mount.mountPath}/tls.key`);
  assert.ok(!c.args.some((a) => /pairing/.test(a)));
  assert.ok(!c.args.includes("--client-ca"));
  const withCA = find(render(["--set", "beacon.enabled=true", "--set", "beacon.tls.clientCAKey=ca.crt"]).objects, "Deployment", "cloudtaser-beacon");
  assert.equal(argOf(withCA.spec.template.spec.containers[0], "--client-ca"), `${mount.mountPath}/ca.crt`);
});

test("beacon.enabled: a LoadBalancer Service on 443 to the beacon port, and a NetworkPolicy with no egress", () => {
  const { objects } = render(["--namespace", "cloudtaser-system", "--set", "beacon.enabled=true", "--set", "beacon.host=beacon.example.com"]);
  assert.equal(objects.filter((o) => o.metadata.name === "cloudtaser-broker").length, 0, "no broker unless broker.enabled");
  const svc = find(objects, "Service", "cloudtaser-beacon");
  assert.equal(svc.spec.type, "LoadBalancer");
  assert.equal(svc.spec.externalTrafficPolicy, "Local");
  assert.deepEqual(svc.spec.ports.map((p) => [p.port, p.targetPort, p.protocol]), [[443, "beacon", "TCP"]]);
  assert.equal(svc.metadata.annotations["external-dns.alpha.kubernetes.io/hostname"], "beacon.example.com");
  assert.equal(find(objects, "ServiceAccount", "cloudtaser-beacon").automountServiceAccountToken, false);
  const np = find(objects, "NetworkPolicy", "cloudtaser-beacon");
  assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
  assert.deepEqual(np.spec.egress, [], "the beacon dials nothing");
  assert.deepEqual(np.spec.ingress.map((r) => r.ports.map((p) => p.port)), [["beacon"], ["metrics"]]);
  const ranged = find(render(["--set", "beacon.enabled=true", "--set", "beacon.service.allowedSourceRanges={198.51.100.0/24}"]).objects, "Service", "cloudtaser-beacon");
  assert.deepEqual(ranged.spec.loadBalancerSourceRanges, ["198.51.100.0/24"]);
  const cip = find(render(["--set", "beacon.enabled=true", "--set", "beacon.service.type=ClusterIP"]).objects, "Service", "cloudtaser-beacon");
  assert.equal(cip.spec.type, "ClusterIP");
  assert.equal(cip.spec.externalTrafficPolicy, undefined);
});

test("beacon.enabled: every flag the chart passes is one the beacon binary documents in --help", { skip: !process.env.BEACON_BIN && "BEACON_BIN not set" }, () => {
  const r = spawnSync(process.env.BEACON_BIN, ["--help"], { encoding: "utf8", timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  const help = r.stdout + r.stderr;
  const c = find(render(["--set", "beacon.enabled=true", "--set", "beacon.tls.clientCAKey=ca.crt"]).objects, "Deployment", "cloudtaser-beacon").spec.template.spec.containers[0];
  for (const a of c.args.filter((x) => x.startsWith("--"))) assert.ok(help.includes(a), `beacon --help does not mention ${a}`);
});

// The chart's own args, run: a beacon started with the beacon Deployment's
// args, a broker with the beacon-mode broker Deployment's args (only the
// mounted paths and the listen addresses mapped onto this machine), both fed
// the files of cloudtaser-certs --beacon-host laid out as the Secrets hold
// them. The broker waits at the beacon and is not ready; a vault-bridge in
// beacon mode pairs through it, and the broker turns ready: the readiness
// the chart probes means "a bridge linked" in beacon mode too.
const BRIDGE_BIN = process.env.BROKER_BIN && path.join(path.dirname(process.env.BROKER_BIN), "vault-bridge");
// Twice: as rendered by default, and with a beacon that requires client
// certificates (beacon.tls.clientCAKey) and a broker that presents one
// (broker.beacon.clientCertSecret; cloudtaser-certs' clientAuth bridge
// certificate stands in for the Secret's).
for (const clientCerts of [false, true]) test(`the chart's beacon and beacon-mode broker, run with the rendered args${clientCerts ? " and client certificates at the beacon" : ""}, pair with a bridge and the broker turns ready`,
  { skip: !(process.env.BROKER_BIN && process.env.BEACON_BIN && fs.existsSync(BRIDGE_BIN)) && "BROKER_BIN, BEACON_BIN or vault-bridge missing", timeout: 90000 }, async (t) => {
  const tmp = fs.mkdtempSync("/tmp/chart-beacon-");
  const procs = [];
  t.after(async () => {
    // SIGTERM drains (each daemon ends its own children); SIGKILL only if that hangs.
    await Promise.all(procs.map((p) => new Promise((done) => {
      if (p.exitCode !== null || p.signalCode !== null) return done();
      const hard = setTimeout(() => p.kill("SIGKILL"), 10000);
      p.on("exit", () => { clearTimeout(hard); done(); });
      p.kill("SIGTERM");
    })));
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const certs = spawnSync("bash", [path.join(root, "deploy/cloudtaser-certs"), "--out", `${tmp}/pki`, "--beacon-host", "127.0.0.1"], { encoding: "utf8", timeout: 60000 });
  assert.equal(certs.status, 0, certs.stderr);
  const { spawn } = await import("node:child_process");
  const start = (bin, args) => {
    const p = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
    p.log = "";
    p.stderr.on("data", (d) => { p.log += d; });
    procs.push(p);
    return p;
  };
  const waitFor = async (what, fn, ms = 20000) => {
    const until = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const logMatch = (p, re) => waitFor(`${re} in the log:\n${p.log}`, () => p.log.match(re));
  const get = async (url) => { try { const r = await fetch(url); return { status: r.status, body: await r.text() }; } catch { return { status: 0, body: "" }; } };
  // Mounted paths onto the certs' directories; every listen address onto loopback, port 0.
  const localise = (args, dir) => args.map((a) => a.replace("/etc/cloudtaser/tls/", `${tmp}/pki/${dir}/`)
    .replace("/etc/cloudtaser/beacon-client/", `${tmp}/pki/bridge/`).replace(/^0\.0\.0\.0:\d+$/, "127.0.0.1:0"));

  const beaconValues = ["--set", "beacon.enabled=true", ...(clientCerts ? ["--set", "beacon.tls.clientCAKey=ca.crt"] : [])];
  const beaconArgs = find(render(beaconValues).objects, "Deployment", "cloudtaser-beacon").spec.template.spec.containers[0].args;
  assert.equal(beaconArgs.includes("--client-ca"), clientCerts);
  const beacon = start(process.env.BEACON_BIN, localise(beaconArgs, "beacon"));
  const beaconPort = (await logMatch(beacon, /listening for brokers and bridges on 127\.0\.0\.1:(\d+)/))[1];
  const beaconMetrics = (await logMatch(beacon, /serving metrics on (127\.0\.0\.1:\d+)/))[1];
  await waitFor("the beacon's /readyz", async () => (await get(`http://${beaconMetrics}/readyz`)).status === 200);

  const brokerArgs = brokerOf(render([...BEACON_BASE, "--set", `broker.beacon.address=127.0.0.1:${beaconPort}`, "--set", "broker.replicas=1",
    ...(clientCerts ? ["--set", "broker.beacon.clientCertSecret=broker-beacon-client"] : [])]).objects).containers[0].args;
  assert.equal(brokerArgs.includes("--beacon-cert"), clientCerts);
  const broker = start(process.env.BROKER_BIN, localise(brokerArgs, "broker"));
  await logMatch(broker, /beacon relay mode: waiting for bridges at 127\.0\.0\.1:\d+/);
  const probes = (await logMatch(broker, /serving probes on (127\.0\.0\.1:\d+)/))[1];
  await waitFor("broker connections waiting at the beacon", async () =>
    /cloudtaser_beacon_waiting\{role="broker"\} [1-9]/.test((await get(`http://${beaconMetrics}/metrics`)).body));
  assert.equal((await get(`http://${probes}/readyz`)).status, 503, "no bridge linked yet: not ready");

  const b = `${tmp}/pki/bridge`;
  start(BRIDGE_BIN, ["--beacon-address", `127.0.0.1:${beaconPort}`, "--beacon-ca", `${b}/ca.crt`, "--pairing-key-file", `${b}/pairing.key`,
    "--client-cert", `${b}/tls.crt`, "--client-key", `${b}/tls.key`, "--ca-cert", `${b}/ca.crt`, "--vault-addr", "http://127.0.0.1:1",
    "--service-cert", `${tmp}/pki/service/tls.crt`, "--service-key", `${tmp}/pki/service/tls.key`,
    ...(clientCerts ? ["--beacon-cert", `${b}/tls.crt`, "--beacon-key", `${b}/tls.key`] : [])]);
  await waitFor("the broker's /readyz once a bridge linked through the beacon", async () => (await get(`http://${probes}/readyz`)).status === 200);
  // The beacon's figures reach /metrics once a second.
  await waitFor("a pair relayed by the beacon", async () =>
    /cloudtaser_beacon_pairs_active [1-9]/.test((await get(`http://${beaconMetrics}/metrics`)).body));
});

const FAILURES = {
  "broker.enabled without broker.externalHost": [["--namespace", "cloudtaser-system", "--set", "broker.enabled=true"], /broker\.externalHost is required/],
  "an address for another namespace than the release's": [[...SEED.slice(2), "--namespace", "default"], /cloudtaser-broker\.default\.svc:8443/],
  "a broker:// address with the broker disabled": [["--set", "operator.secretstore.address=broker://cloudtaser-broker.cloudtaser-system.svc:8443"], /broker\.enabled/],
  "a malformed pin": [[...SEED, "--set", "broker.bridgePins[0]=sha256//short"], /bridgePins/],
  "an unknown external type": [[...SEED, "--set", "broker.external.type=NodePort"], /external\.type/],
  "tls.create without the files": [[...SEED, "--set", "broker.tls.create=true"], /broker\.tls\.crt/],
  "maxSurge and maxUnavailable both 0, which no rollout can follow": [[...SEED, "--set", "broker.updateStrategy.maxSurge=0"], /maxSurge and maxUnavailable are both 0/],
  "17 replicas, past the broker's limit of 16": [[...SEED, "--set", "broker.replicas=17"], /replicas/],
  "0 replicas": [[...SEED, "--set", "broker.replicas=0"], /replicas/],
  "an unknown anti-affinity type": [[...SEED, "--set", "broker.podAntiAffinity.type=soft"], /podAntiAffinity/],
  "a host name for the listen address": [[...SEED, "--set", "broker.listenAddress=localhost"], /listenAddress/],
  "a memory limit below twice the budget plus 40 MiB": [[...SEED, "--set", "broker.resources.limits.memory=103Mi"], /limits\.memory 103Mi is below what broker\.memoryBudget=32 needs: at least 104Mi/],
  "a budget raised past what the default limit holds": [[...SEED, "--set", "broker.memoryBudget=45"], /broker\.memoryBudget=45 needs: at least 130Mi/],
  "a memory limit in decimal units that falls short": [[...SEED, "--set", "broker.resources.limits.memory=0.1G"], /limits\.memory 0\.1G is below/],
  "a memory limit the chart cannot read": [[...SEED, "--set", "broker.resources.limits.memory=1e9"], /limits\.memory 1e9 is not a quantity this chart reads/],
  "a memory budget of 0": [[...SEED, "--set", "broker.memoryBudget=0"], /memoryBudget/],
  "nine beacons, past the broker's limit of 8": [[...BEACON_BASE, "--set", `broker.beacon.address={${[...Array(9).keys()].map((i) => `b${i}.example.com`).join(",")}}`], /beacon|address/],
  "a beacon given twice": [[...BEACON_BASE, "--set", "broker.beacon.address={b.example.com,b.example.com}"], /beacon|address/],
  "a beacon address that is not HOST[:PORT]": [[...BEACON_BASE, "--set", "broker.beacon.address=https://b.example.com/"], /address/],
  "beacon mode with a chart-made Secret but no pairing key": [[...BEACON_MODE, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.create=true",
    "--set-file", `broker.tls.crt=${path.join(here, "fixtures/dummy.pem")}`, "--set-file", `broker.tls.key=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.ca=${path.join(here, "fixtures/dummy.pem")}`], /broker\.tls\.pairingKey/],
  "certManager without bridgePins (its Secret holds no bridge.pin)": [[...SEED, "--set", "broker.tls.certManager.issuerRef.name=ca"], /broker\.tls\.certManager needs broker\.bridgePins/],
  "certManager and tls.create together": [[...SEED, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.certManager.issuerRef.name=ca", "--set", "broker.tls.create=true",
    "--set-file", `broker.tls.crt=${path.join(here, "fixtures/dummy.pem")}`, "--set-file", `broker.tls.key=${path.join(here, "fixtures/dummy.pem")}`,
    "--set-file", `broker.tls.ca=${path.join(here, "fixtures/dummy.pem")}`], /both make the Secret/],
  "a certManager issuerRef without a name": [[...SEED, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.certManager.issuerRef.kind=Issuer"], /issuerRef needs a name/],
  "an unknown certManager rotationPolicy": [[...SEED, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.certManager.issuerRef.name=ca", "--set", "broker.tls.certManager.rotationPolicy=Sometimes"], /rotationPolicy/],
  "a certManager duration that is not a Go duration": [[...SEED, "--set", `broker.bridgePins[0]=${PIN_A}`, "--set", "broker.tls.certManager.issuerRef.name=ca", "--set", "broker.tls.certManager.duration=90d"], /duration/],
  "a beacon container port below 1024, which a pod without capabilities cannot bind": [["--set", "beacon.enabled=true", "--set", "beacon.ports.listen=443"], /listen/],
};
for (const [what, [args, message]] of Object.entries(FAILURES)) {
  test(`the render fails with a clear message on ${what}`, () => {
    const r = helmTemplate(args);
    assert.notEqual(r.status, 0, `rendered anyway:\n${r.stdout}`);
    assert.match(r.stderr, message);
  });
}

test("the schema check itself rejects a misspelt field deep in a pod spec", async () => {
  const { objects } = render(SEED);
  const dep = structuredClone(find(objects, "Deployment", "cloudtaser-broker"));
  dep.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
  dep.spec.replicas = "1";
  const errs = await validateObject(dep);
  assert.ok(errs.some((e) => /readOnlyRootFileSystem: unknown field/.test(e)), errs.join("\n"));
  assert.ok(errs.some((e) => /replicas must be integer/.test(e)), errs.join("\n"));
});
