#!/usr/bin/env bash
# observability/: the Prometheus config and rules load in promtool (Debian's prometheus), the
# alert rules fire on synthetic series and stay quiet on look-alikes (promtool test rules), the
# dashboard is valid JSON for Grafana provisioning, every metric and label the dashboard and the
# rules query is one the code exports (scripts/check-dashboard-metrics.py: the names given to
# prometheus-cpp builders and the process collector; it first proves on bad expressions, and on
# "mesh_..." strings of a sample source that are no metric, that it refuses them), the
# PrometheusRule is not stale against alerts.yml,
# the kustomize component renders, and the YAML passes yamllint. Offline; run from the source
# root (ctest deploy_observability does).
set -euo pipefail

fail() { echo "observability_test: $*" >&2; exit 1; }
for tool in promtool python3 yamllint kubectl jq; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh)"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 yaml module is missing (python3-yaml)"
[ -f observability/prometheus/prometheus.yml ] || fail "run from the source root"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== promtool check config (repository layout)"
promtool check config observability/prometheus/prometheus.yml

echo "== promtool check config (laid out as compose mounts it at /etc/prometheus)"
mkdir -p "$work/etc/prometheus"
cp observability/prometheus/prometheus.yml observability/prometheus/alerts.yml "$work/etc/prometheus/"
promtool check config "$work/etc/prometheus/prometheus.yml"

echo "== the compose scrape jobs are the roles, one DNS name each"
python3 - <<'EOF'
import yaml
config = yaml.safe_load(open("observability/prometheus/prometheus.yml"))
roles = ["gateway", "ingester", "worker", "updater", "stream", "consumer"]
jobs = {job["job_name"]: job for job in config["scrape_configs"]}
assert set(jobs) == set(roles) | {"prometheus"}, sorted(jobs)
for role in roles:
    (sd,) = jobs[role]["dns_sd_configs"]
    assert sd["names"] == [role] and sd["type"] == "A" and sd["port"] == 8080, (role, sd)
assert config["rule_files"] == ["alerts.yml"], config["rule_files"]
EOF

echo "== promtool check rules"
promtool check rules observability/prometheus/alerts.yml

echo "== promtool test rules"
promtool test rules observability/prometheus/alerts_test.yml

echo "== every alert the issue asks for exists, with severity and annotations, and is tested"
python3 - <<'EOF'
import yaml
rules = [r for g in yaml.safe_load(open("observability/prometheus/alerts.yml"))["groups"]
         for r in g["rules"]]
alerts = {r["alert"]: r for r in rules if "alert" in r}
for name in ["MeshHighErrorRatio", "MeshHighLatencyP99", "MeshConsumerLagGrowing",
             "MeshDeadLettersGrowing", "MeshReadinessFlapping", "MeshFeedDisconnected",
             "MeshFeedSilent", "MeshTargetDown"]:
    assert name in alerts, f"alert {name} is missing"
for name, rule in alerts.items():
    assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
    assert {"summary", "description"} <= set(rule.get("annotations", {})), name
tests = yaml.safe_load(open("observability/prometheus/alerts_test.yml"))["tests"]
fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
         if case["exp_alerts"]}
untested = sorted(set(alerts) - fired)
assert not untested, f"alerts never made to fire by alerts_test.yml: {untested}"
EOF

echo "== dashboard JSON"
for dashboard in observability/grafana/dashboards/*.json; do
  jq -e '.schemaVersion >= 36 and (.panels | length) > 0 and (.uid | length) > 0' \
    "$dashboard" >/dev/null || fail "$dashboard: not a Grafana dashboard"
  # Every query names the provisioned datasource by its uid.
  bad=$(jq -r '[.panels[] | .. | objects | select(has("datasource")) | .datasource
                | select(type == "object" and .type == "prometheus" and .uid != "prometheus")]
               | length' "$dashboard")
  [ "$bad" = 0 ] || fail "$dashboard: $bad datasource references are not uid prometheus"
done
python3 - <<'EOF'
import yaml
(source,) = yaml.safe_load(
    open("observability/grafana/provisioning/datasources/prometheus.yml"))["datasources"]
assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090", source
(provider,) = yaml.safe_load(
    open("observability/grafana/provisioning/dashboards/mesh.yml"))["providers"]
assert provider["options"]["path"] == "/var/lib/grafana/dashboards", provider
EOF

echo "== metric and label names against src/"
python3 scripts/check-dashboard-metrics.py --write-rules "$work/dashboard-queries.yml"
echo "== every dashboard query parses as PromQL (as recording rules, variables substituted)"
promtool check rules "$work/dashboard-queries.yml"
# The check must refuse a misspelt name from the command line too.
if python3 scripts/check-dashboard-metrics.py --expr 'sum(rate(mesh_http_request_totl[5m]))' \
     2>/dev/null; then
  fail "check-dashboard-metrics.py accepted a misspelt metric name"
fi
# Every "mesh_..." string in src/ is a builder's .Name(...): were one not (a metric made some
# other way), the check would refuse that metric on a dashboard; say so here first.
if grep -rnE '"mesh_[a-z0-9_]+"' src | grep -v 'Name("mesh_' >"$work/unnamed.txt"; then
  echo "\"mesh_...\" strings in src/ not given to .Name(...) (taken for no metric):"
  cat "$work/unnamed.txt"
fi

echo "== PrometheusRule freshness"
python3 scripts/gen-prometheusrule.py --check

echo "== kustomize component"
mkdir -p "$work/repo/k8s/overlays/test"
cp -r observability "$work/repo/observability"
cat >"$work/repo/k8s/overlays/test/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: mesh-test
components:
  - ../../../observability
EOF
kubectl kustomize "$work/repo/k8s/overlays/test" >"$work/rendered.yaml"
python3 - "$work/rendered.yaml" <<'EOF'
import json, sys, yaml
objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(open(sys.argv[1]))}
assert set(objects) == {("ConfigMap", "mesh-grafana-dashboards"),
                        ("PrometheusRule", "mesh-alerts")}, sorted(objects)
config_map = objects[("ConfigMap", "mesh-grafana-dashboards")]
rule = objects[("PrometheusRule", "mesh-alerts")]
for o in (config_map, rule):
    assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mesh", o["metadata"]
    assert o["metadata"]["namespace"] == "mesh-test", o["metadata"]
assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
assert json.loads(config_map["data"]["mesh.json"]) == json.load(
    open("observability/grafana/dashboards/mesh.json"))
assert rule["apiVersion"] == "monitoring.coreos.com/v1"
assert rule["spec"]["groups"] == yaml.safe_load(
    open("observability/prometheus/alerts.yml"))["groups"]
EOF

echo "== yamllint"
if [ -f .yamllint ]; then
  yamllint -s -c .yamllint observability/
else
  yamllint -s -d '{extends: default, rules: {line-length: {max: 100}}}' observability/
fi

echo "observability_test: OK"
