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
  # Two test programs at a time: most of their time is spent waiting on servers and timers.
  scripts/with-test-servers.sh ctest --preset "$preset" --output-on-failure -j2
done
