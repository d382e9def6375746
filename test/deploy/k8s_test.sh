#!/usr/bin/env bash
# ctest deploy_k8s: renders every kustomize overlay under k8s/ and validates it offline.
#   1. `kubectl kustomize` renders k8s/base, every k8s/overlays/*, k8s/prometheus-adapter;
#   2. test/deploy/k8s/validate.mjs checks every object against its schema from the
#      kubernetes-models packages with unknown fields rejected, and the cross-object rules
#      (autoscaler targets exist and never overlap, probes/resources/security context, Service
#      selectors, monitoring per role, Kafka partitions >= consumer replicas, drain timing,
#      hard zone spreads that honor node taints, KEDA's bootstrap in the render's namespace...);
#   3. a self-test mutates good renders (dev-keda, prod-keda) and requires each rule to catch
#      its mutation (a typo'd spec.replica, a kind without schema, an HPA plus a ScaledObject,
#      a prod zone spread without nodeTaintsPolicy Honor, ...);
#   4. the prometheus-adapter rule serves every Pods metric of the HPAs;
#   5. `mesh --check-config` (MESH_BINARY, else build/release/mesh) accepts each role's
#      environment, and every MESH_* variable names a real option;
#   6. yamllint with the repository's .yamllint over k8s/, docker/ and observability/.
# Needs kubectl (kustomize v5), node, npm (first run) and yamllint: fails when one is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "k8s_test: $*" >&2; exit 1; }
for tool in kubectl node yamllint; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (scripts/deps.sh installs it)"
done
scripts/npm-deps.sh test/deploy/k8s || fail "scripts/npm-deps.sh could not install the validator's npm packages"
[ -d test/deploy/k8s/node_modules/kubernetes-models ] || fail "test/deploy/k8s/node_modules is missing"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

renders=()
render() { # name dir
  kubectl kustomize "$2" >"$out/$1.yaml" || fail "kubectl kustomize $2 failed"
  [ -s "$out/$1.yaml" ] || fail "kubectl kustomize $2 rendered nothing"
  echo "rendered $2"
}
render base k8s/base
renders+=("base=$out/base.yaml")
overlays=0
for dir in k8s/overlays/*/; do
  name=$(basename "$dir")
  render "$name" "$dir"
  renders+=("$name=$out/$name.yaml")
  overlays=$((overlays + 1))
done
[ "$overlays" -ge 4 ] || fail "expected the overlays dev, dev-keda, prod, prod-keda; found $overlays"
render prometheus-adapter k8s/prometheus-adapter

validator=test/deploy/k8s/validate.mjs
node "$validator" "${renders[@]}" || fail "rendered manifests are invalid"
node "$validator" --self-test "$out/dev-keda.yaml" "$out/prod-keda.yaml" || fail "the validator's self-test failed"
node "$validator" --adapter "$out/prometheus-adapter.yaml" k8s/prometheus-adapter/values.yaml \
  "$out"/*.yaml || fail "prometheus-adapter rules"

# The binary itself must accept each role's environment (ctest sets MESH_BINARY).
binary=${MESH_BINARY:-build/release/mesh}
[ -x "$binary" ] || fail "no mesh binary at $binary: build it or set MESH_BINARY"
node "$validator" --check-config "$binary" "${renders[@]}" || fail "mesh --check-config rejects a role's environment"

lint_dirs=(k8s)
for dir in docker observability; do [ -d "$dir" ] && lint_dirs+=("$dir"); done
yamllint -c .yamllint -f parsable --strict "${lint_dirs[@]}" || fail "yamllint ${lint_dirs[*]}"
echo "yamllint ok: ${lint_dirs[*]}"
echo "k8s_test: all checks passed"
