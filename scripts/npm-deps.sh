#!/usr/bin/env bash
# Installs the pinned npm packages of each DIR (its package-lock.json) into DIR/node_modules.
# Idempotent and quiet: runs `npm ci` only where node_modules is missing or older than the lock
# file. Needs npm (Debian: nodejs npm).
#   scripts/npm-deps.sh DIR...
# web: the dashboard's charting library, embedded into mesh by the build, and playwright-core
# for the browser test. test/deploy/k8s: the Kubernetes manifest validator's schema packages
# (kubernetes-models and the KEDA, prometheus-operator, Strimzi and CloudNativePG models, yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: scripts/npm-deps.sh DIR..." >&2; exit 2; }

for dir in "$@"; do
  # npm writes this file on every install, so its age is the age of node_modules.
  installed=$dir/node_modules/.package-lock.json
  if [ -f "$installed" ] && [ ! "$dir/package-lock.json" -nt "$installed" ]; then
    continue
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm-deps.sh: npm is missing (Debian packages: nodejs npm)" >&2
    exit 1
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$installed"
done
