#!/usr/bin/env bash
# README command 2: installs what is missing, builds the release and the sanitizer (ASan+UBSan)
# presets, starts throwaway Postgres and Redis servers, and runs every test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
presets=${MESH_TEST_PRESETS:-"release asan"}
for preset in $presets; do
  echo "== build $preset" >&2
  scripts/build.sh "$preset"
done
for preset in $presets; do
  echo "== test $preset" >&2
  # One test program at a time: several multi-process suites at once on a 2-core machine
  # shift their timing more than they need to. MESH_TEST_JOBS=2 halves the wall time.
  scripts/with-test-servers.sh ctest --preset "$preset" --output-on-failure -j"${MESH_TEST_JOBS:-1}"
done
