#!/usr/bin/env bash
# Installs the dashboard's pinned npm packages (web/package-lock.json) into web/node_modules:
# the charting library that the build embeds into mesh, and playwright-core for the browser
# test. Idempotent and quiet: runs `npm ci` only when node_modules is missing or older than the
# lock file. Needs npm (Debian: nodejs npm); the browser test also needs chromium.
set -euo pipefail
cd "$(dirname "$0")/../web"

# npm writes this file on every install, so its age is the age of node_modules.
installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ ! package-lock.json -nt "$installed" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "web-deps.sh: npm is missing (Debian packages: nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$installed"
