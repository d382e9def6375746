#!/usr/bin/env bash
# Installs, from Debian packages, whatever mesh needs to build, test and run that is missing.
# Idempotent: a machine that has everything gets no apt call at all.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-all-dev librdkafka-dev libpq-dev libhiredis-dev libspdlog-dev libcli11-dev
  catch2 prometheus-cpp-dev libsodium-dev libssl-dev
  postgresql-15 postgresql-client-15 redis-server redis-tools
  wrk nginx-light curl procps
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
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
