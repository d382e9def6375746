#!/usr/bin/env bash
# The container image's filesystem, checked without a Docker engine: docker/collect-runtime.sh
# lays out exactly what the Dockerfile's scratch stage receives, and this test runs it the way a
# container runtime would with the compose/Kubernetes settings: its own mount namespace, the root
# read-only, /proc and /dev mounted, a tmpfs /tmp, uid/gid 10001, nothing from the host's /usr.
#
# Needs: MESH_BINARY (a Release mesh, set by ctest), root (unshare -m, chroot), and the throwaway
# servers of scripts/with-test-servers.sh (MESH_TEST_PG_URL, MESH_TEST_REDIS_URL).
set -euo pipefail

binary=${MESH_BINARY:?MESH_BINARY must name the mesh binary}
: "${MESH_TEST_PG_URL:?run under scripts/with-test-servers.sh}"
: "${MESH_TEST_REDIS_URL:?run under scripts/with-test-servers.sh}"
for tool in unshare chroot mount psql curl python3 ldd strip; do
  command -v "$tool" >/dev/null || { echo "image_test: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
  echo "image_test: needs root for a mount namespace and chroot" >&2
  exit 1
fi

work=$(mktemp -d)
rootfs="$work/rootfs"
server_pid=""
database="mesh_image_test_$$"
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  psql "$MESH_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "image_test: FAIL: $*" >&2; exit 1; }

# 1. The layout: small, only the binary, its libraries and a few files under /etc.
docker/collect-runtime.sh "$binary" "$rootfs"
bytes=$(du -sb "$rootfs" | cut -f1)
echo "image_test: runtime filesystem $((bytes / 1024 / 1024)) MiB ($bytes bytes)"
[ "$bytes" -lt $((80 * 1024 * 1024)) ] || fail "image content is $bytes bytes, above 80 MiB"
unexpected=$(cd "$rootfs" && find . \( -type f -o -type l \) \
  ! -path ./usr/local/bin/mesh ! -path './usr/lib/*' ! -path './usr/lib64/*' ! -path ./lib ! -path ./lib64 \
  ! -path ./etc/passwd ! -path ./etc/group ! -path ./etc/nsswitch.conf \
  ! -path ./etc/ssl/certs/ca-certificates.crt ! -path ./etc/mesh/mesh.example.toml)
[ -z "$unexpected" ] || fail "unexpected files in the image: $unexpected"
[ ! -e "$rootfs/bin/sh" ] && [ ! -e "$rootfs/usr/bin" ] || fail "the image has a shell or /usr/bin"
grep -q '^mesh:x:10001:10001:' "$rootfs/etc/passwd" || fail "no uid 10001 user"

# The container runtime's mount points (Docker and the kubelet create them in every container).
mkdir -p "$rootfs/proc" "$rootfs/dev"

# Replaces the calling (sub)shell with COMMAND run inside the image: read-only root, /proc,
# /dev, tmpfs /tmp, uid/gid 10001, only the image's files, and an environment holding only
# PATH=/usr/local/bin (as the Dockerfile sets it) and the VAR=value words before "--".
#   exec_in_image [VAR=value...] -- COMMAND ARGS...
# Every step execs the next (unshare without --fork), so the process id is mesh's own.
exec_in_image() {
  exec unshare -m --propagation private /bin/bash -ec '
    root=$1; shift
    vars=()
    while [ "$1" != "--" ]; do vars+=("$1"); shift; done
    shift
    mount --bind "$root" "$root"
    mount -o remount,ro,bind "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o size=16m tmpfs "$root/tmp"
    exec /usr/bin/env -i PATH=/usr/local/bin GNUTLS_NO_IMPLICIT_INIT=1 "${vars[@]}" \
      /usr/sbin/chroot --userspec=10001:10001 "$root" "$@"
  ' exec_in_image "$rootfs" "$@"
}
in_image() { (exec_in_image "$@"); }

# 2. The binary starts from the image alone.
version=$(in_image -- mesh --version)
[[ "$version" == "mesh "* ]] || fail "mesh --version printed '$version'"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# 3. The HEALTHCHECK command fails while nothing answers.
if in_image -- mesh healthcheck --timeout-ms 2000 "http://127.0.0.1:$port/readyz" 2>"$work/hc.err"; then
  fail "healthcheck passed with nothing listening"
fi
grep -q "http://127.0.0.1:$port/readyz" "$work/hc.err" || fail "healthcheck did not name the URL"

# 4. Every role in one process, read-only, as 10001, against the real Postgres and Redis.
psql "$MESH_TEST_PG_URL" -qc "CREATE DATABASE $database" >/dev/null
pg_url="${MESH_TEST_PG_URL%/*}/$database"
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
start_ns=$(date +%s%N)
# The secret reaches mesh through its environment, never a flag.
exec_in_image MESH_JWT_SECRET="$secret" -- mesh --role=all --listen "127.0.0.1:$port" \
  --kafka-brokers=embedded --pg-url "$pg_url" --redis-url "$MESH_TEST_REDIS_URL" \
  --ingester-source=synthetic --drain-timeout-ms 5000 --log-level info >"$work/mesh.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 600); do
  if in_image -- mesh healthcheck --timeout-ms 1000 "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/mesh.log" >&2; fail "mesh exited before it was ready"; }
  sleep 0.1  # polling interval of the readiness wait, bounded by the loop count (60 s)
done
[ -n "$ready" ] || { tail -50 "$work/mesh.log" >&2; fail "not ready within 60 s"; }
ready_ns=$(date +%s%N)
echo "image_test: start to /readyz 200 in $(((ready_ns - start_ns) / 1000000)) ms (read-only root, uid 10001)"

metrics=$(curl -fsS "http://127.0.0.1:$port/metrics")
grep -q '^mesh_build_info{.*role="all"' <<<"$metrics" || fail "no mesh_build_info{role=\"all\"}"
grep -q '^mesh_ready 1' <<<"$metrics" || fail "mesh_ready is not 1 while ready"
curl -fsS "http://127.0.0.1:$port/healthz" | grep -q '"ok"' || fail "/healthz"
if grep -qi "read-only file system" "$work/mesh.log"; then
  fail "mesh tried to write to the read-only root: $(grep -i 'read-only' "$work/mesh.log" | head -3)"
fi

# 5. SIGTERM drains and exits 0 (the process in the namespace is mesh itself: exec chroot).
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" = 0 ] || { tail -30 "$work/mesh.log" >&2; fail "mesh exited with $status after SIGTERM"; }
echo "image_test: ok"
