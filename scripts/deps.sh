#!/usr/bin/env bash
# Installs, from Debian packages, whatever mesh needs to build, test and run that is missing.
# Idempotent: a machine that has everything gets no apt call at all.
set -euo pipefail
cd "$(dirname "$0")/.."

# MESH_DEPS=build installs only what building the binary needs (the container image's build
# stage); the default also installs what the tests, benchmarks and deployment checks need.
build_packages=(
  build-essential cmake ninja-build ccache pkg-config git binutils ca-certificates
  libboost1.81-all-dev librdkafka-dev libpq-dev libhiredis-dev libspdlog-dev libcli11-dev
  catch2 prometheus-cpp-dev libsodium-dev libssl-dev
)
test_packages=(
  postgresql-15 postgresql-client-15 redis-server redis-tools
  wrk nginx-light curl procps jq openssl python3 python3-yaml util-linux
  chromium
  docker-compose yamllint prometheus gnuplot-nox hey apache2-utils
)
mode=${MESH_DEPS:-all}
case "$mode" in
  build) packages=("${build_packages[@]}") ;;
  all) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  *) echo "deps.sh: MESH_DEPS must be build or all, not '$mode'" >&2; exit 2 ;;
esac
# The dashboard's JavaScript dependencies come from npm; Node.js may come from Debian's
# packages or another install that already provides npm.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi
# kubectl (with kustomize) renders the Kubernetes manifests in the tests. It is not a Debian
# package: this asks the machine's configured apt sources for it only when it is missing.
if [ "$mode" = all ] && ! command -v kubectl >/dev/null 2>&1; then packages+=(kubectl); fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

web_deps() {
  # The dashboard's pinned npm packages (lightweight-charts, playwright-core), and for the tests
  # the schema packages that validate the Kubernetes manifests, from their lock files.
  if [ "$mode" = all ]; then
    scripts/npm-deps.sh web test/deploy/k8s
  else
    scripts/npm-deps.sh web
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  web_deps
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Package installs must not start system services that would hold ports the tests use.
policy_created=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  policy_created=1
fi
cleanup() { if [ -n "$policy_created" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
web_deps
