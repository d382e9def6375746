// Offline validation of rendered k8s/ manifests (run by test/deploy/k8s_test.sh).
//
//   node validate.mjs NAME=RENDERED.yaml ...   check each render; exit 1 on any problem
//   node validate.mjs --self-test KEDA.yaml PROD.yaml  mutate good renders (dev-keda,
//                                 prod-keda) and require each check to catch its mutation
//
// Every object is validated against its schema from the kubernetes-models packages. Those
// compiled schemas do not reject unknown fields (no additionalProperties: false), so this file
// does: the object is handed to the validator wrapped in proxies that record which property
// names the validator looks up at every level. A schema with properties looks up each of them
// (present or not); a map schema (labels, data) enumerates the keys. A key the validator never
// looked up at an object where it looked up others is a field the schema does not have. An
// object whose schema is free-form (it looks up nothing, e.g. Kafka spec.kafka.config) is
// accepted as it is. A kind without a schema in the packages is an error.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { parseAllDocuments } from "yaml";

const PACKAGES = [
  "kubernetes-models",
  "@kubernetes-models/prometheus-operator",
  "@kubernetes-models/keda",
  "@kubernetes-models/strimzi-kafka-operator",
  "@kubernetes-models/cloudnative-pg",
];

const ROLES = ["gateway", "ingester", "worker", "updater", "stream", "consumer"];
const STATELESS_SCALED = ["gateway", "worker", "updater", "stream", "consumer"];
const PG_ROLES = ["gateway", "updater", "stream", "consumer"];
const JWT_ROLES = ["gateway", "stream"];
const CPU_HPA_ROLES = ["gateway", "worker", "consumer"];
const KEDA_ROLES = ["worker", "updater", "consumer"];
// Topic -> the roles whose replicas share it in one consumer group (docs/architecture.md).
// The stream role reads market.* with a group per replica, so no partition bound comes from it.
const TOPICS = {
  "tasks.pending": ["worker", "updater"],
  "tasks.completed": ["updater"],
  "tasks.dlq": [],
  "market.trades": ["consumer"],
  "market.ticker": [],
  "market.dlq": [],
  messages: ["consumer"],
  "messages.dlq": [],
};
const GROUPS = {
  "mesh-worker": { role: "worker", topics: ["tasks.pending"] },
  "mesh-updater": { role: "updater", topics: ["tasks.pending", "tasks.completed"] },
  "mesh-consumer": { role: "consumer", topics: ["market.trades"] },
  "mesh-consumer-messages": { role: "consumer", topics: ["messages"] },
};

// ---------------------------------------------------------------------------------- schemas

const modelCache = new Map();

async function modelFor(apiVersion, kind) {
  const key = `${apiVersion} ${kind}`;
  if (modelCache.has(key)) return modelCache.get(key);
  let found = null;
  if (typeof apiVersion === "string" && typeof kind === "string" && /^[A-Za-z0-9]+$/.test(kind)) {
    const slash = apiVersion.indexOf("/");
    const group = slash < 0 ? null : apiVersion.slice(0, slash);
    const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
    for (const pkg of PACKAGES) {
      const spec = group ? `${pkg}/${group}/${version}/${kind}` : `${pkg}/${version}/${kind}`;
      let mod;
      try {
        mod = await import(spec);
      } catch {
        continue;
      }
      const model = mod[kind];
      if (model && model.apiVersion === apiVersion && model.kind === kind) {
        found = model;
        break;
      }
    }
  }
  modelCache.set(key, found);
  return found;
}

// Wraps value so that every property lookup is recorded per JSON pointer.
function recorder() {
  const nodes = new Map();
  const wrap = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    let node = nodes.get(path);
    if (!node) {
      node = { value, read: new Set(), enumerated: false };
      nodes.set(path, node);
    }
    return new Proxy(value, {
      get(target, prop, receiver) {
        const result = Reflect.get(target, prop, receiver);
        if (typeof prop !== "string") return result;
        node.read.add(prop);
        if (Object.prototype.hasOwnProperty.call(target, prop)) {
          return wrap(result, `${path}/${prop.replaceAll("~", "~0").replaceAll("/", "~1")}`);
        }
        return result;
      },
      has(target, prop) {
        if (typeof prop === "string") node.read.add(prop);
        return Reflect.has(target, prop);
      },
      ownKeys(target) {
        node.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
  };
  return { nodes, wrap };
}

async function schemaErrors(obj) {
  const model = await modelFor(obj.apiVersion, obj.kind);
  if (!model) return [`no schema for apiVersion ${obj.apiVersion} kind ${obj.kind} in the packages`];
  const errors = [];
  const { nodes, wrap } = recorder();
  try {
    model.prototype.validate.call(wrap(obj, ""));
  } catch (e) {
    errors.push(`schema: ${e.message}`);
  }
  for (const [path, node] of nodes) {
    if (Array.isArray(node.value) || node.enumerated || node.read.size === 0) continue;
    for (const key of Object.keys(node.value)) {
      if (!node.read.has(key)) errors.push(`unknown field ${path}/${key}`);
    }
  }
  return errors;
}

// --------------------------------------------------------------------------------- helpers

const get = (obj, path, fallback = undefined) => {
  let cur = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object" || !(part in cur)) return fallback;
    cur = cur[part];
  }
  return cur;
};

const id = (o) => `${o.kind}/${get(o, "metadata.name", "?")}`;

function labelsMatch(selector, labels) {
  if (!selector) return false;
  const matchLabels = selector.matchLabels || {};
  const exprs = selector.matchExpressions || [];
  if (Object.keys(matchLabels).length === 0 && exprs.length === 0) return true;
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  for (const e of exprs) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

const plainSelectorMatch = (selector, labels) =>
  selector && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels[k] === v);

function parseRender(text) {
  const objects = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`YAML: ${doc.errors[0].message}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

// ------------------------------------------------------------------------ cross-object checks

function crossChecks(objects, name) {
  const errors = [];
  const err = (m) => errors.push(m);
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const find = (kind, n) => objects.find((o) => o.kind === kind && get(o, "metadata.name") === n);

  // Unique names, one namespace, no committed Secret.
  const seen = new Set();
  for (const o of objects) {
    const key = `${o.kind}/${get(o, "metadata.namespace", "")}/${get(o, "metadata.name")}`;
    if (seen.has(key)) err(`duplicate object ${key}`);
    seen.add(key);
    if (o.kind === "Secret") err(`${id(o)}: a Secret is rendered; secrets are created at deploy time`);
  }
  const namespaces = new Set(
    objects.filter((o) => o.kind !== "Namespace").map((o) => get(o, "metadata.namespace")),
  );
  if (namespaces.size !== 1 || namespaces.has(undefined)) {
    err(`namespaced objects must share one namespace, found: ${[...namespaces].join(", ")}`);
  }

  const deployments = byKind("Deployment");
  const podOwners = [...deployments, ...byKind("StatefulSet")];
  const podLabels = (o) => get(o, "spec.template.metadata.labels", {});
  const meshDeploy = (role) =>
    deployments.filter((d) => podLabels(d)["app.kubernetes.io/name"] === "mesh" &&
      podLabels(d)["app.kubernetes.io/component"] === role);
  const configMaps = byKind("ConfigMap");

  // Autoscalers: targets exist, never two on one target.
  const scalers = new Map(); // "Deployment/name" -> [ids]
  const maxReplicas = new Map(); // deployment name -> max
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const ref = get(h, "spec.scaleTargetRef", {});
    const key = `${ref.kind}/${ref.name}`;
    if (!find(ref.kind, ref.name)) err(`${id(h)}: target ${key} does not exist`);
    scalers.set(key, [...(scalers.get(key) || []), id(h)]);
    maxReplicas.set(ref.name, get(h, "spec.maxReplicas"));
    const min = get(h, "spec.minReplicas", 1);
    if (min > get(h, "spec.maxReplicas")) err(`${id(h)}: minReplicas above maxReplicas`);
    if (!get(h, "spec.behavior.scaleUp") || !get(h, "spec.behavior.scaleDown")) {
      err(`${id(h)}: needs explicit behavior.scaleUp and behavior.scaleDown`);
    }
  }
  for (const s of byKind("ScaledObject")) {
    const ref = get(s, "spec.scaleTargetRef", {});
    const kind = ref.kind || "Deployment";
    const key = `${kind}/${ref.name}`;
    if (!find(kind, ref.name)) err(`${id(s)}: target ${key} does not exist`);
    scalers.set(key, [...(scalers.get(key) || []), id(s)]);
    maxReplicas.set(ref.name, get(s, "spec.maxReplicaCount", 100));
    const triggers = get(s, "spec.triggers", []);
    if (!triggers.length) err(`${id(s)}: no triggers`);
    for (const t of triggers) {
      if (t.type !== "kafka") continue;
      const group = get(t, "metadata.consumerGroup");
      const topic = get(t, "metadata.topic");
      const expected = GROUPS[group];
      const role = podLabels(find(kind, ref.name) || {})["app.kubernetes.io/component"];
      if (!expected || expected.role !== role || !expected.topics.includes(topic)) {
        err(`${id(s)}: kafka trigger group ${group} topic ${topic} is not what role ${role} consumes`);
      }
      const kafka = byKind("Kafka")[0];
      const bootstrap = kafka && `${get(kafka, "metadata.name")}-kafka-bootstrap.${get(kafka, "metadata.namespace")}.svc:9092`;
      if (get(t, "metadata.bootstrapServers") !== bootstrap) {
        err(`${id(s)}: kafka trigger bootstrapServers ${get(t, "metadata.bootstrapServers")} is not ${bootstrap}`);
      }
    }
  }
  for (const [key, list] of scalers) {
    if (list.length > 1) err(`${key} has more than one autoscaler: ${list.join(", ")}`);
  }
  const scaled = (d) => scalers.has(`Deployment/${get(d, "metadata.name")}`);

  // Every role: one Deployment with the mesh conventions.
  for (const role of ROLES) {
    const list = meshDeploy(role);
    if (list.length !== 1) {
      err(`role ${role}: ${list.length} Deployments (want 1)`);
      continue;
    }
    const d = list[0];
    const pod = get(d, "spec.template.spec", {});
    const c = (pod.containers || [])[0] || {};
    const where = `${id(d)}`;
    if ((pod.containers || []).length !== 1) err(`${where}: want exactly one container`);
    if (!/(^|\/)mesh(:[^/]+)?(@.*)?$/.test(c.image || "")) err(`${where}: image ${c.image} is not mesh`);
    if (JSON.stringify(c.args) !== JSON.stringify([`--role=${role}`])) {
      err(`${where}: args must be ["--role=${role}"]`);
    }
    const port = (c.ports || []).find((p) => p.name === "http");
    if (!port || port.containerPort !== 8080) err(`${where}: needs container port 8080 named http`);
    if (get(c, "startupProbe.httpGet.path") !== "/readyz") err(`${where}: startupProbe must GET /readyz`);
    if (get(c, "readinessProbe.httpGet.path") !== "/readyz") err(`${where}: readinessProbe must GET /readyz`);
    if (get(c, "livenessProbe.httpGet.path") !== "/healthz") err(`${where}: livenessProbe must GET /healthz`);
    for (const k of ["runAsUser", "runAsGroup"]) {
      if (get(pod, `securityContext.${k}`) !== 10001 && get(c, `securityContext.${k}`) !== 10001) {
        err(`${where}: ${k} must be 10001`);
      }
    }
    const tmp = (c.volumeMounts || []).find((m) => m.mountPath === "/tmp");
    const tmpVol = tmp && (pod.volumes || []).find((v) => v.name === tmp.name);
    if (!tmpVol || !tmpVol.emptyDir) err(`${where}: /tmp must be an emptyDir`);
    const env = c.env || [];
    const nodeName = env.find((e) => e.name === "MESH_NODE_NAME");
    if (get(nodeName || {}, "valueFrom.fieldRef.fieldPath") !== "metadata.name") {
      err(`${where}: MESH_NODE_NAME must come from the pod name (fieldRef metadata.name)`);
    }
    const secretEnv = (n) => env.find((e) => e.name === n && get(e, "valueFrom.secretKeyRef"));
    if (PG_ROLES.includes(role)) {
      const pg = secretEnv("MESH_PG_URL");
      const secret = get(pg || {}, "valueFrom.secretKeyRef", {});
      const cluster = byKind("Cluster").find((x) => `${get(x, "metadata.name")}-app` === secret.name);
      if (!pg || secret.key !== "uri" || !cluster) {
        err(`${where}: MESH_PG_URL must come from key uri of a CloudNativePG <cluster>-app secret`);
      }
    } else if (env.some((e) => e.name === "MESH_PG_URL")) err(`${where}: ${role} needs no MESH_PG_URL`);
    if (JWT_ROLES.includes(role) !== Boolean(secretEnv("MESH_JWT_SECRET"))) {
      err(`${where}: MESH_JWT_SECRET from a Secret exactly for ${JWT_ROLES.join(", ")}`);
    }
    for (const e of env) {
      if (e.value !== undefined && /SECRET|PASSWORD|PG_URL/.test(e.name)) err(`${where}: ${e.name} is a literal`);
    }
    // Settings from the ConfigMap(s) and env; drain consistency.
    const settings = {};
    for (const from of c.envFrom || []) {
      const ref = get(from, "configMapRef.name");
      if (!ref) continue;
      const cm = configMaps.find((m) => get(m, "metadata.name") === ref);
      if (!cm) err(`${where}: envFrom ConfigMap ${ref} does not exist`);
      else Object.assign(settings, cm.data || {});
    }
    for (const e of env) if (e.value !== undefined) settings[e.name] = e.value;
    for (const k of ["MESH_KAFKA_BROKERS", "MESH_DRAIN_TIMEOUT_MS"]) {
      if (!settings[k]) err(`${where}: ${k} is not set`);
    }
    if (JWT_ROLES.includes(role) && !settings.MESH_REDIS_URL) err(`${where}: MESH_REDIS_URL unset`);
    if (role === "gateway") {
      const url = settings.MESH_STREAM_URL || "";
      const m = /^http:\/\/([a-z0-9-]+):(\d+)$/.exec(url);
      const svc = m && find("Service", m[1]);
      if (!svc || !labelsMatch({ matchLabels: svc.spec.selector }, podLabels(meshDeploy("stream")[0] || {}))) {
        err(`${where}: MESH_STREAM_URL ${url} must name the stream Service`);
      }
    }
    const drainS = Number(settings.MESH_DRAIN_TIMEOUT_MS) / 1000;
    const sleep = get(c, "lifecycle.preStop.sleep.seconds");
    const grace = get(pod, "terminationGracePeriodSeconds", 30);
    if (typeof sleep !== "number") err(`${where}: preStop must be the sleep handler`);
    else if (!(grace >= sleep + drainS + 10)) {
      err(`${where}: terminationGracePeriodSeconds ${grace} < preStop ${sleep} s + drain ${drainS} s + 10 s`);
    }
    if (role === "ingester") {
      if (get(d, "spec.replicas") !== 1) err(`${where}: the ingester runs exactly 1 replica`);
      if (get(d, "spec.strategy.type") !== "Recreate") err(`${where}: the ingester needs strategy Recreate`);
      if (scaled(d)) err(`${where}: the ingester must not be autoscaled`);
    }
    if (CPU_HPA_ROLES.includes(role) || role === "stream") {
      if (!scaled(d)) err(`${where}: ${role} has no autoscaler`);
    }
    if (scaled(d) && get(d, "spec.replicas") !== undefined) {
      err(`${where}: autoscaled, so spec.replicas must be left to the autoscaler`);
    }
  }

  // Every Deployment (mesh and Redis): probes, resources, security context, spread.
  for (const d of podOwners) {
    const pod = get(d, "spec.template.spec", {});
    if (pod.automountServiceAccountToken !== false) err(`${id(d)}: automountServiceAccountToken must be false`);
    if (get(pod, "securityContext.runAsNonRoot") !== true) err(`${id(d)}: pod runAsNonRoot must be true`);
    if (get(pod, "securityContext.seccompProfile.type") !== "RuntimeDefault") {
      err(`${id(d)}: pod seccompProfile must be RuntimeDefault`);
    }
    for (const c of [...(pod.initContainers || []), ...(pod.containers || [])]) {
      const w = `${id(d)} container ${c.name}`;
      for (const p of ["startupProbe", "readinessProbe", "livenessProbe"]) if (!c[p]) err(`${w}: no ${p}`);
      for (const r of ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"]) {
        if (!get(c, `resources.${r}`)) err(`${w}: no resources.${r}`);
      }
      const sc = c.securityContext || {};
      if (sc.allowPrivilegeEscalation !== false) err(`${w}: allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) err(`${w}: readOnlyRootFilesystem must be true`);
      if (!(get(sc, "capabilities.drop") || []).includes("ALL")) err(`${w}: capabilities must drop ALL`);
      if (sc.privileged) err(`${w}: privileged`);
    }
    const isMesh = podLabels(d)["app.kubernetes.io/name"] === "mesh";
    if (isMesh) {
      const tsc = pod.topologySpreadConstraints || [];
      for (const key of ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]) {
        const t = tsc.find((x) => x.topologyKey === key);
        if (!t) err(`${id(d)}: no topologySpreadConstraint on ${key}`);
        else if (!labelsMatch(t.labelSelector, podLabels(d))) err(`${id(d)}: spread on ${key} selects other pods`);
        // A hard spread must not count nodes the pod cannot use: with nodeTaintsPolicy Ignore
        // (the default) a lost zone's tainted (unreachable/not-ready) nodes still count with 0
        // pods, and replacements and scale-ups stay Pending until the zone returns.
        if (t && t.whenUnsatisfiable === "DoNotSchedule") {
          if (t.nodeTaintsPolicy !== "Honor") err(`${id(d)}: DoNotSchedule spread on ${key} needs nodeTaintsPolicy Honor`);
          if (t.nodeAffinityPolicy === "Ignore") err(`${id(d)}: DoNotSchedule spread on ${key} needs nodeAffinityPolicy Honor`);
        }
      }
    }
  }

  // Services select pods and name their ports.
  for (const s of byKind("Service")) {
    const owner = podOwners.find((d) => plainSelectorMatch(get(s, "spec.selector"), podLabels(d)));
    if (!owner) {
      err(`${id(s)}: selector matches no Deployment`);
      continue;
    }
    const ports = get(owner, "spec.template.spec.containers", []).flatMap((c) => c.ports || []);
    for (const p of get(s, "spec.ports", [])) {
      const t = p.targetPort ?? p.port;
      if (!ports.some((cp) => cp.name === t || cp.containerPort === t)) err(`${id(s)}: targetPort ${t} not in ${id(owner)}`);
    }
  }
  // Ingress backends.
  for (const ing of byKind("Ingress")) {
    for (const rule of get(ing, "spec.rules", [])) {
      for (const p of get(rule, "http.paths", [])) {
        const svc = find("Service", get(p, "backend.service.name"));
        const pn = get(p, "backend.service.port.name");
        if (!svc) err(`${id(ing)}: backend Service ${get(p, "backend.service.name")} does not exist`);
        else if (pn && !svc.spec.ports.some((sp) => sp.name === pn)) err(`${id(ing)}: Service port ${pn} missing`);
      }
    }
  }
  const streamIngress = byKind("Ingress").some((ing) =>
    get(ing, "spec.rules", []).some((r) => get(r, "http.paths", []).some((p) => p.path === "/v1/stream")) &&
    get(ing, "metadata.annotations", {})["nginx.ingress.kubernetes.io/proxy-buffering"] === "off");
  if (!streamIngress) err("no Ingress routes /v1/stream with proxy buffering off");

  // PDB and monitoring per role.
  for (const role of ROLES) {
    const d = meshDeploy(role)[0];
    if (!d) continue;
    const labels = podLabels(d);
    if (!byKind("PodDisruptionBudget").some((p) => labelsMatch(get(p, "spec.selector"), labels))) {
      err(`role ${role}: no PodDisruptionBudget`);
    }
    const podMon = byKind("PodMonitor").find((m) => labelsMatch(get(m, "spec.selector"), labels));
    const svcMon = byKind("ServiceMonitor").find((m) =>
      byKind("Service").some((s) => labelsMatch(get(m, "spec.selector"), get(s, "metadata.labels", {})) &&
        plainSelectorMatch(get(s, "spec.selector"), labels)));
    const mon = podMon || svcMon;
    if (!mon) err(`role ${role}: no PodMonitor or ServiceMonitor`);
    else {
      const jobLabel = get(mon, "spec.jobLabel");
      const source = podMon ? labels : get(byKind("Service").find((s) => plainSelectorMatch(get(s, "spec.selector"), labels)), "metadata.labels", {});
      if (!jobLabel || source[jobLabel] !== role) err(`role ${role}: ${id(mon)} jobLabel does not give job="${role}"`);
    }
  }

  // Default deny.
  const denyAll = byKind("NetworkPolicy").some((p) =>
    Object.keys(get(p, "spec.podSelector", {})).length === 0 &&
    ["Ingress", "Egress"].every((t) => get(p, "spec.policyTypes", []).includes(t)) &&
    !get(p, "spec.ingress") && !get(p, "spec.egress"));
  if (!denyAll) err("no default-deny NetworkPolicy (ingress and egress) for the namespace");

  // Kafka: topics, partitions against consumer replicas, replication against the brokers.
  const kafkas = byKind("Kafka");
  if (kafkas.length !== 1) err(`want one Kafka, found ${kafkas.length}`);
  const kafka = kafkas[0];
  const kname = get(kafka || {}, "metadata.name");
  const pools = byKind("KafkaNodePool").filter((p) => get(p, "metadata.labels", {})["strimzi.io/cluster"] === kname);
  const brokers = pools.filter((p) => get(p, "spec.roles", []).includes("broker")).reduce((n, p) => n + p.spec.replicas, 0);
  if (!pools.some((p) => get(p, "spec.roles", []).includes("controller"))) err("no KRaft controller node pool");
  const kcfg = get(kafka || {}, "spec.kafka.config", {});
  const meshSettings = Object.assign({}, ...configMaps.filter((m) => get(m, "metadata.name", "").startsWith("mesh-config")).map((m) => m.data || {}));
  if (meshSettings.MESH_KAFKA_BROKERS !== `${kname}-kafka-bootstrap:9092`) {
    err(`MESH_KAFKA_BROKERS ${meshSettings.MESH_KAFKA_BROKERS} is not ${kname}-kafka-bootstrap:9092`);
  }
  const redis = /^redis:\/\/([a-z0-9-]+):(\d+)(\/\d+)?$/.exec(meshSettings.MESH_REDIS_URL || "");
  const redisSvc = redis && find("Service", redis[1]);
  if (!redisSvc || !get(redisSvc, "spec.ports", []).some((p) => String(p.port) === redis[2])) {
    err(`MESH_REDIS_URL ${meshSettings.MESH_REDIS_URL} names no Service port of this render`);
  }
  if (kcfg["default.replication.factor"] > brokers) err("default.replication.factor above the broker count");
  if (brokers > 1 && !(kcfg["min.insync.replicas"] < kcfg["default.replication.factor"])) {
    err("min.insync.replicas must be below default.replication.factor (one broker may go)");
  }
  const topics = new Map();
  for (const t of byKind("KafkaTopic")) {
    const tn = get(t, "spec.topicName") || get(t, "metadata.name");
    if (get(t, "metadata.labels", {})["strimzi.io/cluster"] !== kname) err(`${id(t)}: not labelled for cluster ${kname}`);
    topics.set(tn, t);
  }
  for (const [topic, roles] of Object.entries(TOPICS)) {
    const t = topics.get(topic);
    if (!t) {
      err(`no KafkaTopic for ${topic}`);
      continue;
    }
    const partitions = get(t, "spec.partitions");
    const replicas = get(t, "spec.replicas");
    if (replicas > brokers) err(`${topic}: replicas ${replicas} above ${brokers} brokers`);
    if (String(replicas) !== meshSettings.MESH_KAFKA_REPLICATION) {
      err(`${topic}: replicas ${replicas} differ from MESH_KAFKA_REPLICATION ${meshSettings.MESH_KAFKA_REPLICATION}`);
    }
    if (Number(meshSettings.MESH_KAFKA_PARTITIONS) > partitions) {
      err(`${topic}: ${partitions} partitions below MESH_KAFKA_PARTITIONS (mesh may create it first)`);
    }
    const isr = get(t, "spec.config", {})["min.insync.replicas"] ?? kcfg["min.insync.replicas"];
    if (isr > replicas || (replicas > 1 && isr >= replicas)) err(`${topic}: min.insync.replicas ${isr} with ${replicas} replicas`);
    for (const role of roles) {
      const d = meshDeploy(role)[0];
      if (!d) continue;
      const max = maxReplicas.get(get(d, "metadata.name")) ?? get(d, "spec.replicas", 1);
      if (partitions < max) err(`${topic}: ${partitions} partitions < ${max} max replicas of ${role}`);
    }
  }
  for (const tn of topics.keys()) if (!(tn in TOPICS)) err(`KafkaTopic ${tn} is not a mesh topic`);

  // Overlay expectations. The overlays include the observability component.
  if (name.startsWith("dev") || name.startsWith("prod")) {
    if (!find("ConfigMap", "mesh-grafana-dashboards")) err("no ConfigMap mesh-grafana-dashboards (observability component)");
    if (!find("PrometheusRule", "mesh-alerts")) err("no PrometheusRule mesh-alerts (observability component)");
  }
  if (name.startsWith("prod")) {
    for (const role of STATELESS_SCALED) {
      const d = meshDeploy(role)[0];
      const t = d && get(d, "spec.template.spec.topologySpreadConstraints", []).find((x) => x.topologyKey === "topology.kubernetes.io/zone");
      if (!t || t.whenUnsatisfiable !== "DoNotSchedule") err(`${role}: prod spreads zones with DoNotSchedule`);
    }
    for (const h of [...byKind("HorizontalPodAutoscaler"), ...byKind("ScaledObject")]) {
      if ((get(h, "spec.minReplicas") ?? get(h, "spec.minReplicaCount") ?? 1) < 3) err(`${id(h)}: prod keeps 3 replicas (one per zone)`);
    }
    if (brokers < 3 || kcfg["min.insync.replicas"] !== 2 || kcfg["default.replication.factor"] !== 3) {
      err("prod Kafka: 3 brokers, default.replication.factor 3, min.insync.replicas 2");
    }
  }
  if (name.startsWith("dev")) {
    for (const d of deployments) {
      if ((get(d, "spec.replicas") ?? 1) !== 1) err(`${id(d)}: dev runs 1 replica`);
    }
    for (const h of byKind("HorizontalPodAutoscaler")) {
      if (get(h, "spec.minReplicas", 1) !== 1) err(`${id(h)}: dev minReplicas is 1`);
    }
  }
  if (name.includes("keda")) {
    for (const role of KEDA_ROLES) {
      const d = meshDeploy(role)[0];
      const key = d && `Deployment/${get(d, "metadata.name")}`;
      if (!key || !(scalers.get(key) || []).some((s) => s.startsWith("ScaledObject/"))) {
        err(`${role}: the KEDA render scales it with a ScaledObject`);
      }
    }
  } else if (byKind("ScaledObject").length) err("ScaledObjects outside a KEDA render");
  return errors;
}

// ----------------------------------------------------------------------------------- main

async function validate(objects, name) {
  const errors = [];
  for (const o of objects) {
    for (const e of await schemaErrors(o)) errors.push(`${id(o)}: ${e}`);
  }
  return errors.concat(crossChecks(objects, name));
}

async function selfTest(file, prodFile) {
  const renders = {
    keda: { objects: parseRender(readFileSync(file, "utf8")), name: "selftest-keda" },
    prod: { objects: parseRender(readFileSync(prodFile, "utf8")), name: "prod-keda-selftest" },
  };
  const base = renders.keda.objects;
  const byName = (objs, kind, n) => objs.find((o) => o.kind === kind && o.metadata.name === n);
  const cases = [
    ["typo spec.replica in a Deployment", /unknown field \/spec\/replica$/, (o) => {
      byName(o, "Deployment", "mesh-ingester").spec.replica = 1;
    }],
    ["typo in a container field", /unknown field \/spec\/template\/spec\/containers\/0\/imagePullPolicyy/, (o) => {
      byName(o, "Deployment", "mesh-worker").spec.template.spec.containers[0].imagePullPolicyy = "Always";
    }],
    ["typo in a KafkaTopic spec", /unknown field \/spec\/partition$/, (o) => {
      o.find((x) => x.kind === "KafkaTopic").spec.partition = 3;
    }],
    ["typo in a CloudNativePG Cluster", /unknown field \/spec\/bootstrap\/initdb\/databse$/, (o) => {
      o.find((x) => x.kind === "Cluster").spec.bootstrap.initdb.databse = "mesh";
    }],
    ["typo in a PodMonitor endpoint", /unknown field \/spec\/podMetricsEndpoints\/0\/intervall$/, (o) => {
      o.find((x) => x.kind === "PodMonitor").spec.podMetricsEndpoints[0].intervall = "5s";
    }],
    ["typo in a ScaledObject's HPA behavior", /unknown field \/spec\/advanced\/horizontalPodAutoscalerConfig\/behavior\/scaleUp\/stabilisationWindowSeconds$/, (o) => {
      o.find((x) => x.kind === "ScaledObject").spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilisationWindowSeconds = 0;
    }],
    ["wrong type", /schema: .*replicas/, (o) => {
      byName(o, "Deployment", "mesh-ingester").spec.replicas = "one";
    }],
    ["kind without a schema", /no schema for apiVersion example\.com\/v1 kind Widget/, (o) => {
      o.push({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w", namespace: "mesh" } });
    }],
    ["HPA and ScaledObject on one target", /Deployment\/mesh-worker has more than one autoscaler: .*HorizontalPodAutoscaler\/mesh-worker-cpu/, (o) => {
      if (!o.some((x) => x.kind === "ScaledObject" && x.spec.scaleTargetRef.name === "mesh-worker")) {
        throw new Error("the self-test render has no ScaledObject for mesh-worker");
      }
      o.push({
        apiVersion: "autoscaling/v2", kind: "HorizontalPodAutoscaler",
        metadata: { name: "mesh-worker-cpu", namespace: byName(o, "Deployment", "mesh-worker").metadata.namespace },
        spec: { scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "mesh-worker" }, minReplicas: 1, maxReplicas: 2,
          metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } }],
          behavior: { scaleUp: { stabilizationWindowSeconds: 0 }, scaleDown: { stabilizationWindowSeconds: 60 } } },
      });
    }],
    ["partitions below max replicas", /tasks\.pending: 1 partitions < \d+ max replicas of worker/, (o) => {
      o.find((x) => x.kind === "KafkaTopic" && x.spec.topicName === "tasks.pending").spec.partitions = 1;
    }],
    ["missing probe", /mesh-stream container mesh: no livenessProbe/, (o) => {
      delete byName(o, "Deployment", "mesh-stream").spec.template.spec.containers[0].livenessProbe;
    }],
    ["grace period below the drain", /terminationGracePeriodSeconds 10 </, (o) => {
      byName(o, "Deployment", "mesh-gateway").spec.template.spec.terminationGracePeriodSeconds = 10;
    }],
    ["Service selecting nothing", /Service\/mesh-worker: selector matches no Deployment/, (o) => {
      byName(o, "Service", "mesh-worker").spec.selector["app.kubernetes.io/component"] = "wroker";
    }],
    ["a role without monitoring", /role worker: no PodMonitor or ServiceMonitor/, (o) => {
      for (const m of o.filter((x) => x.kind === "PodMonitor" || x.kind === "ServiceMonitor")) {
        m.spec.selector = { matchLabels: { "app.kubernetes.io/component": "nothing" } };
      }
    }],
    ["a committed Secret", /a Secret is rendered/, (o) => {
      o.push({ apiVersion: "v1", kind: "Secret", metadata: { name: "mesh-jwt", namespace: "mesh" }, stringData: { secret: "x" } });
    }],
    ["KEDA bootstrap in another namespace", /ScaledObject\/mesh-worker: kafka trigger bootstrapServers mesh-kafka-kafka-bootstrap\.other\.svc:9092 is not/, (o) => {
      const t = byName(o, "ScaledObject", "mesh-worker").spec.triggers[0];
      t.metadata.bootstrapServers = t.metadata.bootstrapServers.replace(/\.[a-z0-9-]+\.svc:/, ".other.svc:");
    }],
    ["prod zone spread without nodeTaintsPolicy Honor", /Deployment\/mesh-worker: DoNotSchedule spread on topology\.kubernetes\.io\/zone needs nodeTaintsPolicy Honor/, (o) => {
      const t = byName(o, "Deployment", "mesh-worker").spec.template.spec.topologySpreadConstraints
        .find((x) => x.topologyKey === "topology.kubernetes.io/zone");
      if (t.whenUnsatisfiable !== "DoNotSchedule") throw new Error("the prod render's worker zone spread is not DoNotSchedule");
      delete t.nodeTaintsPolicy;
    }, "prod"],
    ["prod zone spread with nodeAffinityPolicy Ignore", /Deployment\/mesh-stream: DoNotSchedule spread on topology\.kubernetes\.io\/zone needs nodeAffinityPolicy Honor/, (o) => {
      byName(o, "Deployment", "mesh-stream").spec.template.spec.topologySpreadConstraints
        .find((x) => x.topologyKey === "topology.kubernetes.io/zone").nodeAffinityPolicy = "Ignore";
    }, "prod"],
    ["prod zone spread ScheduleAnyway", /gateway: prod spreads zones with DoNotSchedule/, (o) => {
      byName(o, "Deployment", "mesh-gateway").spec.template.spec.topologySpreadConstraints
        .find((x) => x.topologyKey === "topology.kubernetes.io/zone").whenUnsatisfiable = "ScheduleAnyway";
    }, "prod"],
  ];
  // A KEDA render (dev-keda) exercises every package; its name turns on the KEDA expectations.
  if (!base.some((o) => o.kind === "ScaledObject")) {
    console.log("FAIL self-test needs a render with ScaledObjects (dev-keda)");
    return 1;
  }
  if (!renders.prod.objects.some((o) => o.kind === "Kafka")) {
    console.log("FAIL self-test needs a prod render as its second file (prod-keda)");
    return 1;
  }
  let failed = 0;
  for (const r of Object.values(renders)) {
    const clean = await validate(structuredClone(r.objects), r.name);
    if (clean.length) {
      console.log(`FAIL self-test: the unmodified render ${r.name} has errors:\n  ${clean.join("\n  ")}`);
      return 1;
    }
  }
  for (const [what, expected, mutate, which = "keda"] of cases) {
    const { objects, name } = renders[which];
    const objs = structuredClone(objects);
    mutate(objs);
    const errors = await validate(objs, name);
    if (errors.some((e) => expected.test(e))) console.log(`ok   rejects: ${what}`);
    else {
      failed++;
      console.log(`FAIL not rejected: ${what} (errors: ${errors.join("; ") || "none"})`);
    }
  }
  return failed ? 1 : 0;
}

// The prometheus-adapter render: schema, the same rules as the Helm values, and a rule for
// every Pods metric that an HPA of the given renders uses.
async function adapter(renderFile, valuesFile, hpaRenders) {
  const errors = [];
  const objects = parseRender(readFileSync(renderFile, "utf8"));
  for (const o of objects) for (const e of await schemaErrors(o)) errors.push(`${id(o)}: ${e}`);
  const cm = objects.find((o) => o.kind === "ConfigMap");
  const config = cm && cm.data ? cm.data["config.yaml"] : undefined;
  const rules = config ? parseRender(config)[0].rules || [] : [];
  if (!rules.length) errors.push("the adapter ConfigMap has no rules in config.yaml");
  const values = parseRender(readFileSync(valuesFile, "utf8"))[0];
  if (JSON.stringify(get(values, "rules.custom")) !== JSON.stringify(rules)) {
    errors.push(`${valuesFile}: rules.custom differs from the ConfigMap's rules`);
  }
  const served = new Set(rules.map((r) => get(r, "name.as") || (/^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(r.seriesQuery) || [])[1]));
  for (const r of rules) {
    const o = get(r, "resources.overrides", {});
    if (get(o, "pod.resource") !== "pod" || get(o, "namespace.resource") !== "namespace") {
      errors.push(`rule ${r.seriesQuery}: must map the pod and namespace labels to their resources`);
    }
  }
  for (const file of hpaRenders) {
    for (const h of parseRender(readFileSync(file, "utf8")).filter((o) => o.kind === "HorizontalPodAutoscaler")) {
      for (const m of get(h, "spec.metrics", [])) {
        if (m.type === "Pods" && !served.has(get(m, "pods.metric.name"))) {
          errors.push(`${file} ${id(h)}: Pods metric ${get(m, "pods.metric.name")} has no adapter rule`);
        }
      }
    }
  }
  if (errors.length) console.log(`FAIL prometheus-adapter:\n  ${errors.join("\n  ")}`);
  else console.log(`ok   prometheus-adapter: rules serve ${[...served].join(", ")}; Helm values agree`);
  return errors.length ? 1 : 0;
}

// Runs `mesh --check-config` with each mesh Deployment's environment (ConfigMap, literals,
// placeholders for the Secret references and the pod name) and requires every MESH_* variable
// to name an option of `mesh --help` (mesh ignores unknown variables; a typo would go unseen).
function checkConfig(binary, files) {
  const help = spawnSync(binary, ["--help"], { encoding: "utf8" });
  if (help.status !== 0) {
    console.log(`FAIL ${binary} --help: ${help.stderr || help.error}`);
    return 1;
  }
  const known = new Set(["MESH_JWT_SECRET"]);
  for (const m of help.stdout.matchAll(/--([a-z0-9][a-z0-9-]*)/g)) known.add(`MESH_${m[1].toUpperCase().replaceAll("-", "_")}`);
  let failed = 0;
  for (const arg of files) {
    const eq = arg.indexOf("=");
    const name = arg.slice(0, eq);
    const objects = parseRender(readFileSync(arg.slice(eq + 1), "utf8"));
    const configMaps = objects.filter((o) => o.kind === "ConfigMap");
    for (const d of objects.filter((o) => o.kind === "Deployment" && get(o, "spec.template.metadata.labels", {})["app.kubernetes.io/name"] === "mesh")) {
      const c = d.spec.template.spec.containers[0];
      const env = {};
      for (const from of c.envFrom || []) {
        Object.assign(env, (configMaps.find((m) => m.metadata.name === get(from, "configMapRef.name")) || {}).data || {});
      }
      for (const e of c.env || []) {
        if (e.value !== undefined) env[e.name] = e.value;
        else if (get(e, "valueFrom.secretKeyRef")) {
          env[e.name] = e.name === "MESH_PG_URL" ? "postgresql://mesh:placeholder@mesh-pg-rw:5432/mesh" : "p".repeat(64);
        } else env[e.name] = `${d.metadata.name}-0`;
      }
      const unknown = Object.keys(env).filter((k) => k.startsWith("MESH_") && !known.has(k));
      const run = spawnSync(binary, ["--check-config", ...(c.args || [])], { encoding: "utf8", env });
      if (unknown.length || run.status !== 0) {
        failed++;
        console.log(`FAIL ${name} ${d.metadata.name}: ${unknown.length ? `unknown variables ${unknown.join(", ")}; ` : ""}` +
          `${(run.stdout + run.stderr).trim()}`);
      }
    }
    if (!failed) console.log(`ok   ${name}: mesh --check-config accepts every role's environment`);
  }
  return failed ? 1 : 0;
}

async function main(argv) {
  if (argv[0] === "--self-test") return selfTest(argv[1], argv[2]);
  if (argv[0] === "--check-config") return checkConfig(argv[1], argv.slice(2));
  if (argv[0] === "--adapter") return adapter(argv[1], argv[2], argv.slice(3));
  if (!argv.length) {
    console.error("usage: node validate.mjs NAME=RENDERED.yaml ... | --self-test KEDA.yaml PROD.yaml");
    return 2;
  }
  let failed = 0;
  for (const arg of argv) {
    const eq = arg.indexOf("=");
    const name = arg.slice(0, eq);
    const objects = parseRender(readFileSync(arg.slice(eq + 1), "utf8"));
    const errors = await validate(objects, name);
    const kinds = new Set(objects.map((o) => o.kind)).size;
    if (errors.length) {
      failed++;
      console.log(`FAIL ${name}: ${errors.length} problem(s) in ${objects.length} objects`);
      for (const e of errors) console.log(`  ${e}`);
    } else console.log(`ok   ${name}: ${objects.length} objects of ${kinds} kinds valid`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
