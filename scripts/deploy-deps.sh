#!/usr/bin/env bash
# Installs the pinned npm packages of the Kubernetes manifest validator
# (test/deploy/k8s/package-lock.json: kubernetes-models and the KEDA, prometheus-operator,
# Strimzi and CloudNativePG models, yaml) into test/deploy/k8s/node_modules. Idempotent and
# quiet: runs `npm ci` only when node_modules is missing or older than the lock file.
# Needs npm (Debian: nodejs npm).
set -euo pipefail
cd "$(dirname "$0")/../test/deploy/k8s"

# npm writes this file on every install, so its age is the age of node_modules.
installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ ! package-lock.json -nt "$installed" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "deploy-deps.sh: npm is missing (Debian packages: nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$installed"
