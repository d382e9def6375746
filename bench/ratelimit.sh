#!/usr/bin/env bash
# Rate limiting overhead (issue 4): POST /v1/tasks throughput of `mesh --role=all
# --kafka-brokers=embedded` with the per-user and per-IP limits on (set far above the load, so
# nothing is rejected and every request pays the Redis round trip of the GCRA script) versus
# off, in the same run.
#
#   bench/ratelimit.sh [--quick]
#
# Each round starts a fresh mesh without limits and one with them, back to back, against the
# same throwaway Postgres and Redis (scripts/with-test-servers.sh), and runs wrk -t1 -c64 on
# each; the figure is the median of the per-round ratios (on / off), target >= 0.85. Server on
# CPU 0, wrk on CPU 1 (MESH_BENCH_PIN=0: no pinning). Prints a summary and writes
# bench/results/ratelimit.json.
# Environment: MESH_BENCH_BUILD_DIR (default build/h-bench), MESH_BENCH_SKIP_BUILD=1,
#   MESH_BENCH_ROUNDS (default 3; 1 with --quick), MESH_BENCH_SECONDS (default 10; 2 with --quick),
#   MESH_BENCH_KEEP=1 (keep logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/ratelimit.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
build_dir=${MESH_BENCH_BUILD_DIR:-$root/build/h-bench}

if [ -z "${MESH_BENCH_INNER:-}" ]; then
  for tool in wrk jq psql curl taskset; do
    command -v "$tool" >/dev/null || {
      echo "bench/ratelimit.sh: '$tool' is missing (apt-get install -y wrk jq postgresql-client curl util-linux)" >&2
      exit 1
    }
  done
  if [ "${MESH_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "bench: building mesh (release) in ${build_dir#$root/}" >&2
    cmake --preset release -B "$build_dir" >/dev/null
    ninja -C "$build_dir" mesh >"$build_dir/bench-build.log" 2>&1 \
      || { tail -n 40 "$build_dir/bench-build.log" >&2; exit 1; }
  fi
  [ -x "$build_dir/mesh" ] || { echo "bench/ratelimit.sh: no mesh binary in $build_dir" >&2; exit 1; }
  MESH_BENCH_INNER=1 MESH_BENCH_BUILD_DIR=$build_dir exec scripts/with-test-servers.sh bash "$root/bench/ratelimit.sh" "$@"
fi

# Inner part: MESH_TEST_PG_URL and MESH_TEST_REDIS_URL point at throwaway servers.
mesh=$build_dir/mesh
work=$(mktemp -d /tmp/mesh-bench-ratelimit.XXXXXX)
if [ "$quick" = 1 ]; then rounds=${MESH_BENCH_ROUNDS:-1}; seconds=${MESH_BENCH_SECONDS:-2}
else rounds=${MESH_BENCH_ROUNDS:-3}; seconds=${MESH_BENCH_SECONDS:-10}; fi
conns=64
pin=${MESH_BENCH_PIN:-1}
[ "$(nproc)" -ge 2 ] || pin=0
on_server_cpu=(); on_client_cpu=()
if [ "$pin" = 1 ]; then on_server_cpu=(taskset -c 0); on_client_cpu=(taskset -c 1); fi
export MESH_JWT_SECRET
MESH_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
server_pid=

source bench/lib.sh
cleanup() {
  local status=$?
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  if [ "${MESH_BENCH_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then log "logs kept in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


psql -qAtX -v ON_ERROR_STOP=1 "$MESH_TEST_PG_URL" -c "DROP DATABASE IF EXISTS bench_ratelimit" \
  -c "CREATE DATABASE bench_ratelimit" >/dev/null
pg_url="${MESH_TEST_PG_URL%/*}/bench_ratelimit"

# start_mesh NAME EXTRA_FLAGS...: a fresh mesh --role=all; sets server_pid and port.
start_mesh() {
  local name=$1
  shift
  port=$(pick_port)
  "${on_server_cpu[@]}" "$mesh" --role=all --listen="127.0.0.1:$port" --kafka-brokers=embedded \
    --pg-url="$pg_url" --redis-url="$MESH_TEST_REDIS_URL" --ingester-source=synthetic \
    --log-level=warn --drain-timeout-ms=2000 --password-ops-limit=1 --password-mem-kib=8 "$@" \
    >"$work/$name.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 60))
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
    kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] \
      || { log "mesh ($name) did not get ready:"; tail -n 20 "$work/$name.log" >&2; return 1; }
    sleep 0.1
  done
}

stop_mesh() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# One user for every process (same database and JWT secret, so the token stays valid).
token=
ensure_token() {
  [ -n "$token" ] && return 0
  local user="bench_rl_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  curl -sf -m 30 -X POST "http://127.0.0.1:$port/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" >/dev/null
  token=$(curl -sf -m 30 -X POST "http://127.0.0.1:$port/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" | jq -er .access_token)
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"type":"echo","payload":{"bench":"ratelimit"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
}

# run_wrk NAME: wrk on the current mesh; prints {"rps","requests","non2xx","socket_errors"}.
run_wrk() {
  local name=$1
  "${on_client_cpu[@]}" timeout $((seconds + 30)) wrk -t1 "-c$conns" "-d${seconds}s" --timeout 5s \
    -s "$work/post.lua" "http://127.0.0.1:$port/v1/tasks" >"$work/wrk-$name.txt" 2>&1 \
    || { log "wrk $name failed:"; cat "$work/wrk-$name.txt" >&2; return 1; }
  awk '
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { requests = $1 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); socket = $4 + $6 + $8 + $10 }
    END { if (rps == "") exit 1
          printf "{\"rps\":%s,\"requests\":%d,\"non2xx\":%d,\"socket_errors\":%d}\n", rps, requests, non2xx, socket }' \
    "$work/wrk-$name.txt"
}

# Scraped from the limited process: every request must have been checked and allowed.
metric_sum() {
  curl -sf -m 10 "http://127.0.0.1:$port/metrics" | awk -v name="$1" -v filter="${2:-}" '
    { split($1, parts, "{") }
    parts[1] == name && (filter == "" || index($1, filter) > 0) { sum += $2 }
    END { printf "%.0f\n", sum }'
}

limits=(--ratelimit-user-rps=1000000 --ratelimit-ip-rps=1000000)
log "work dir $work; load average $(cut -d' ' -f1-3 /proc/loadavg); $rounds round(s) of ${seconds}s"
results="[]"
checked=0; limited=0; redis_errors=0
for round in $(seq 1 "$rounds"); do
  start_mesh "off-$round"
  ensure_token
  [ "$quick" = 1 ] || run_wrk "warm-off-$round" >/dev/null
  off=$(run_wrk "off-$round")
  stop_mesh
  start_mesh "on-$round" "${limits[@]}"
  [ "$quick" = 1 ] || run_wrk "warm-on-$round" >/dev/null
  on=$(run_wrk "on-$round")
  # Every request of this process had a token, so its user-scope decisions are one per request.
  checked=$((checked + $(metric_sum mesh_ratelimit_decisions_total 'scope="user"')))
  limited=$((limited + $(metric_sum mesh_ratelimit_decisions_total 'result="limited"')))
  redis_errors=$((redis_errors + $(metric_sum mesh_ratelimit_redis_errors_total)))
  stop_mesh
  log "round $round: off $(jq .rps <<<"$off") req/s, on $(jq .rps <<<"$on") req/s"
  results=$(jq -c --argjson off "$off" --argjson on "$on" '. + [{off: $off, on: $on, ratio: ($on.rps / $off.rps)}]' <<<"$results")
done

mkdir -p "$root/bench/results"
jq -n --argjson rounds "$results" --argjson checked "$checked" --argjson limited "$limited" \
  --argjson redis_errors "$redis_errors" --argjson seconds "$seconds" --argjson conns "$conns" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson pin "$pin" --argjson quick "$quick" \
  --arg git "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" '
  ($rounds | sort_by(.ratio)) as $sorted | $sorted[($sorted | length - 1) / 2 | floor] as $median |
  {benchmark: "ratelimit", date: $date, git: $git, quick: ($quick == 1), loadavg_after: $load,
   server: "mesh --role=all --kafka-brokers=embedded (Postgres, Redis local)",
   wrk: "-t1 -c\($conns) -d\($seconds)s POST /v1/tasks", pinned: ($pin == 1),
   limits: "--ratelimit-user-rps=1000000 --ratelimit-ip-rps=1000000 (never reached)",
   off_rps: $median.off.rps, on_rps: $median.on.rps, ratio: $median.ratio,
   ratio_min: $sorted[0].ratio, ratio_max: $sorted[-1].ratio, target_ratio: 0.85,
   met: ($median.ratio >= 0.85),
   errors: ($rounds | map(.off.non2xx + .off.socket_errors + .on.non2xx + .on.socket_errors) | add),
   requests_checked: $checked, requests_limited: $limited, redis_errors: $redis_errors,
   statistic: "median of per-round ratios (off and on back to back in each round)",
   rounds: $rounds}' >"$root/bench/results/ratelimit.json"
jq -r '"POST /v1/tasks req/s: limits off \(.off_rps), on \(.on_rps); ratio \(.ratio * 1000 | round / 1000) (\(.ratio_min * 1000 | round / 1000)-\(.ratio_max * 1000 | round / 1000)), target >= 0.85: \(if .met then "ok" else "MISS" end); errors \(.errors), limited \(.requests_limited), redis errors \(.redis_errors), requests checked \(.requests_checked)"' \
  "$root/bench/results/ratelimit.json"
