#!/usr/bin/env bash
# Configures and builds one CMake preset: scripts/build.sh release|debug|asan [targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
shift || true
extra=()
if [ "${CI:-}" = "true" ]; then extra+=(-DMESH_WERROR=ON); fi
cmake --preset "$preset" "${extra[@]}" >/dev/null
if [ $# -gt 0 ]; then
  cmake --build --preset "$preset" --target "$@"
else
  cmake --build --preset "$preset"
fi
