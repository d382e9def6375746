#!/usr/bin/env bash
# Runs a command beside throwaway Postgres and Redis servers on loopback (random ports,
# temporary data directories), exporting MESH_TEST_PG_URL and MESH_TEST_REDIS_URL to it, and
# stops the servers afterwards whatever the command's outcome.
#   scripts/with-test-servers.sh ctest --preset release
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PG_BIN/initdb" ] || { echo "with-test-servers: Postgres server binaries not found (run scripts/deps.sh)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "with-test-servers: redis-server not found (run scripts/deps.sh)" >&2; exit 1; }

workdir=$(mktemp -d /tmp/mesh-test-servers.XXXXXX)
chmod 755 "$workdir"

# Postgres refuses to run as root: run it as the 'postgres' system user then.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    if port_is_free "$port"; then echo "$port"; return 0; fi
  done
  echo "with-test-servers: no free port found" >&2
  return 1
}

cleanup() {
  local status=$?
  if [ -f "$workdir/redis.pid" ]; then kill "$(cat "$workdir/redis.pid")" 2>/dev/null || true; fi
  if [ -f "$workdir/pg/postmaster.pid" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$workdir/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT INT TERM

mkdir -p "$workdir/pg" "$workdir/redis"
if [ "$(id -u)" = 0 ]; then chown postgres "$workdir/pg"; fi
as_pg_user "$PG_BIN/initdb" -D "$workdir/pg" -U mesh -A trust --no-sync -E UTF8 >"$workdir/initdb.log" 2>&1 \
  || { cat "$workdir/initdb.log" >&2; exit 1; }

started=
for _ in 1 2 3 4 5; do
  pg_port=$(pick_port)
  if as_pg_user "$PG_BIN/pg_ctl" -D "$workdir/pg" -l "$workdir/pg/server.log" -w -t 30 \
      -o "-p $pg_port -k $workdir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null; then
    started=1; break
  fi
done
[ -n "$started" ] || { echo "with-test-servers: Postgres did not start" >&2; cat "$workdir/pg/server.log" >&2; exit 1; }

started=
for _ in 1 2 3 4 5; do
  redis_port=$(pick_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$workdir/redis.pid" --dir "$workdir/redis" --logfile "$workdir/redis/redis.log" >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then started=1; break; fi
    sleep 0.05
  done
  [ -n "$started" ] && break
done
[ -n "$started" ] || { echo "with-test-servers: Redis did not start" >&2; exit 1; }

export MESH_TEST_PG_URL="postgresql://mesh@127.0.0.1:$pg_port/postgres"
export MESH_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
echo "with-test-servers: Postgres $MESH_TEST_PG_URL, Redis $MESH_TEST_REDIS_URL" >&2
"$@"
