#!/usr/bin/env bash
# Session lock benchmark (issue 4): SessionLocks acquire p50/p99 and acquire+release pairs per
# second over SESSION_CONCURRENCY concurrent pairs, beside a plain SET NX PX on the same client.
#
# Builds mesh_sessions (Release, build/h-sessions unless MESH_SESSIONS_BUILD says otherwise),
# compiles bench/session_lock.cpp with g++ and runs it against MESH_TEST_REDIS_URL (run it under
# scripts/with-test-servers.sh) or a redis-server of its own on a free loopback port. Writes
# bench/results/session_lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${MESH_SESSIONS_BUILD:-${MESH_BENCH_BUILD_DIR:-build/h-sessions}}
CONCURRENCY=${SESSION_CONCURRENCY:-64}
OPERATIONS=${SESSION_OPERATIONS:-100000}

if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" --target mesh_sessions mesh_redis -j2 >/dev/null

FLAGS=(-O2 -g -DNDEBUG -std=c++20 -Iinclude -DBOOST_ASIO_NO_DEPRECATED
  -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION -DBOOST_JSON_NO_LIB
  -DBOOST_URL_NO_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB -DFMT_SHARED)
LIBS=("$BUILD/libmesh_sessions.a" "$BUILD/libmesh_redis.a" "$BUILD/libmesh_metrics.a"
  "$BUILD/libmesh_core.a" -lhiredis -lprometheus-cpp-core -lboost_system -lspdlog -lfmt -lssl
  -lcrypto -pthread)
if [ ! "$BUILD/session_lock_bench" -nt bench/session_lock.cpp ] ||
   [ ! "$BUILD/session_lock_bench" -nt "$BUILD/libmesh_sessions.a" ]; then
  g++ "${FLAGS[@]}" bench/session_lock.cpp "${LIBS[@]}" -o "$BUILD/session_lock_bench"
fi

URL=${MESH_TEST_REDIS_URL:-}
REDIS_PID=""
if [ -z "$URL" ]; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null &
  REDIS_PID=$!
  trap '[ -n "$REDIS_PID" ] && kill "$REDIS_PID"' EXIT
  for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  URL="redis://127.0.0.1:$PORT"
fi

mkdir -p bench/results
OUT=$("$BUILD/session_lock_bench" "$URL" "$CONCURRENCY" "$OPERATIONS")
echo "$OUT" | sed '$d'
echo "$OUT" | tail -1 > bench/results/session_lock.json
echo "wrote bench/results/session_lock.json (load: $(cut -d' ' -f1-3 /proc/loadavg))"
