#!/usr/bin/env bash
# README command 1: installs what is missing, builds mesh, starts a local Postgres and Redis
# (data under .local/, kept between runs) and runs every role in one process with the embedded
# Kafka mock cluster. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh
scripts/build.sh release mesh

state="$root/.local"
mkdir -p "$state"
chmod 755 "$state"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_PORT=${MESH_LOCAL_PG_PORT:-55432}
REDIS_PORT=${MESH_LOCAL_REDIS_PORT:-56379}
as_pg_user() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ ! -f "$state/pg/PG_VERSION" ]; then
  mkdir -p "$state/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$state/pg"; fi
  as_pg_user "$PG_BIN/initdb" -D "$state/pg" -U mesh -A trust -E UTF8 >/dev/null
fi
if ! as_pg_user "$PG_BIN/pg_ctl" -D "$state/pg" status >/dev/null 2>&1; then
  as_pg_user "$PG_BIN/pg_ctl" -D "$state/pg" -l "$state/pg/server.log" -w \
    -o "-p $PG_PORT -k $state/pg -c listen_addresses=127.0.0.1" start >/dev/null
fi
psql "postgresql://mesh@127.0.0.1:$PG_PORT/postgres" -qAtc "SELECT 1 FROM pg_database WHERE datname='mesh'" | grep -q 1 \
  || psql "postgresql://mesh@127.0.0.1:$PG_PORT/postgres" -qc "CREATE DATABASE mesh"

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$state" \
    --pidfile "$state/redis.pid" --logfile "$state/redis.log" >/dev/null
fi

if [ ! -f "$state/jwt-secret" ]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n' > "$state/jwt-secret"
  chmod 600 "$state/jwt-secret"
fi

stop_servers() {
  [ -f "$state/redis.pid" ] && kill "$(cat "$state/redis.pid")" 2>/dev/null || true
  as_pg_user "$PG_BIN/pg_ctl" -D "$state/pg" -m fast stop >/dev/null 2>&1 || true
}
trap stop_servers EXIT

listen=${MESH_LISTEN:-127.0.0.1:8080}
echo "mesh: open http://$listen  (try: curl http://$listen/readyz; docs/api.md has the whole API)"
build/release/mesh --role=all --listen="$listen" --kafka-brokers=embedded \
  --pg-url="postgresql://mesh@127.0.0.1:$PG_PORT/mesh" --redis-url="redis://127.0.0.1:$REDIS_PORT" \
  --jwt-secret-file="$state/jwt-secret" "$@"
