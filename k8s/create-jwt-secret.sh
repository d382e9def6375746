#!/usr/bin/env bash
# Creates the Secret mesh-jwt (key "secret": 64 random hex characters, the HS256 key of the
# gateway and stream roles) in the namespace given (default: mesh), unless it exists already:
# replacing it would invalidate every issued token. Nothing secret is kept in the repository.
#   k8s/create-jwt-secret.sh [NAMESPACE]
# Rotate: kubectl -n mesh delete secret mesh-jwt, run this again, then
#   kubectl -n mesh rollout restart deployment/mesh-gateway deployment/mesh-stream
set -euo pipefail
namespace=${1:-mesh}
if kubectl -n "$namespace" get secret mesh-jwt >/dev/null 2>&1; then
  echo "secret mesh-jwt exists in namespace $namespace: kept"
  exit 0
fi
# From stdin, so the key never shows in a process listing.
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' |
  kubectl -n "$namespace" create secret generic mesh-jwt --from-file=secret=/dev/stdin
