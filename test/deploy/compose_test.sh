#!/usr/bin/env bash
# docker/: the compose file validates with Debian's docker-compose (offline) and keeps the
# promises docker/README.md makes; the Dockerfile has the shape the image test relies on.
set -euo pipefail
for tool in docker-compose python3 yamllint; do
  command -v "$tool" >/dev/null || { echo "compose_test: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
docker-compose -f docker/docker-compose.yml config -q
docker-compose -f docker/docker-compose.yml config >"${TMPDIR:-/tmp}/mesh-compose-$$.yml"
trap 'rm -f "${TMPDIR:-/tmp}/mesh-compose-$$.yml"' EXIT
if [ -f .yamllint ]; then yamllint -s -c .yamllint docker/; else yamllint -s docker/; fi
python3 test/deploy/check_docker.py "${TMPDIR:-/tmp}/mesh-compose-$$.yml"
