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
for tool in unshare chroot mount psql curl python3 ldd strip openssl; do
  command -v "$tool" >/dev/null || { echo "image_test: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
  echo "image_test: needs root for a mount namespace and chroot" >&2
  exit 1
fi

work=$(mktemp -d)
rootfs="$work/rootfs"
server_pid=""
tls_pid=""
database="mesh_image_test_$$"
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  if [ -n "$tls_pid" ]; then kill "$tls_pid" 2>/dev/null || true; fi
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

# The image's environment, read from the Dockerfile's ENV lines (after the last FROM), so what
# runs here is what the image sets.
mapfile -t image_env < <(python3 - docker/Dockerfile <<'PY'
import re, shlex, sys
text = open(sys.argv[1], encoding="utf-8").read().replace("\\\n", " ")
runtime = re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]
for line in runtime.splitlines():
    if line.startswith("ENV "):
        for word in shlex.split(line[4:]):
            print(word)
PY
)
printf '%s\n' "${image_env[@]}" | grep -q '^PATH=' || fail "no PATH in the Dockerfile's ENV"

# Replaces the calling (sub)shell with COMMAND run inside the image: read-only root, /proc,
# /dev, tmpfs /tmp, uid/gid 10001, only the image's files, and an environment holding only
# the Dockerfile's ENV and the VAR=value words before "--".
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
    exec /usr/bin/env -i "${vars[@]}" /usr/sbin/chroot --userspec=10001:10001 "$root" "$@"
  ' exec_in_image "$rootfs" "${image_env[@]}" "$@"
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

# 4. TLS: the image's CA bundle must reach OpenSSL's default verify paths (what wss:// feeds
# and https:// JWKS use). A throwaway CA signs a loopback HTTPS server serving a JWKS; the CA is
# appended to this test's copy of the image's bundle only, so mesh can start with that JWKS
# only if the default paths lead to the bundle.
tls="$work/tls"
mkdir -p "$tls/www"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 1 \
  -subj "/CN=mesh image test CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
  -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/san"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 1 -extfile "$tls/san" -out "$tls/server.crt" 2>/dev/null
openssl genrsa -out "$tls/signing.key" 2048 2>/dev/null
modulus=$(openssl rsa -in "$tls/signing.key" -noout -modulus | cut -d= -f2)
python3 -c '
import base64, json, sys
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
key = {"kty": "RSA", "kid": "image-test", "use": "sig", "alg": "RS256",
       "n": b64(bytes.fromhex(sys.argv[1])), "e": b64(bytes([1, 0, 1]))}
print(json.dumps({"keys": [key]}))' "$modulus" >"$tls/www/jwks.json"
cat "$tls/ca.crt" >>"$rootfs/etc/ssl/certs/ca-certificates.crt"
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$tls/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$tls_port" \
  -cert "$tls/server.crt" -key "$tls/server.key") >"$work/tls.log" 2>&1 &
tls_pid=$!
jwks_url="https://127.0.0.1:$tls_port/jwks.json"
served=""
for _ in $(seq 1 100); do
  if curl -fsS --cacert "$tls/ca.crt" "$jwks_url" >/dev/null 2>&1; then served=1; break; fi
  kill -0 "$tls_pid" 2>/dev/null || break
  sleep 0.1  # polling interval of the wait for the HTTPS server, bounded (10 s)
done
[ -n "$served" ] || { cat "$work/tls.log" >&2; fail "the test's HTTPS server did not serve the JWKS"; }

# 5. Every role in one process, read-only, as 10001, against the real Postgres and Redis.
psql "$MESH_TEST_PG_URL" -qc "CREATE DATABASE $database" >/dev/null
pg_url="${MESH_TEST_PG_URL%/*}/$database"
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
start_ns=$(date +%s%N)
# The secret reaches mesh through its environment, never a flag.
exec_in_image MESH_JWT_SECRET="$secret" -- mesh --role=all --listen "127.0.0.1:$port" \
  --kafka-brokers=embedded --pg-url "$pg_url" --redis-url "$MESH_TEST_REDIS_URL" \
  --ingester-source=synthetic --drain-timeout-ms 5000 --log-level info \
  --oidc-issuer "https://127.0.0.1:$tls_port" --oidc-audience mesh-image-test \
  --oidc-jwks "$jwks_url" >"$work/mesh.log" 2>&1 &
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
# It started only because it loaded the JWKS over verified TLS; the key is in use.
grep -q '^mesh_oidc_jwks_keys 1' <<<"$metrics" || fail "the JWKS over https was not loaded"
if grep -qi "read-only file system" "$work/mesh.log"; then
  fail "mesh tried to write to the read-only root: $(grep -i 'read-only' "$work/mesh.log" | head -3)"
fi

# 6. SIGTERM drains and exits 0 (the process in the namespace is mesh itself: exec chroot).
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" = 0 ] || { tail -30 "$work/mesh.log" >&2; fail "mesh exited with $status after SIGTERM"; }
echo "image_test: ok"
