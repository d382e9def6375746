#!/usr/bin/env bash
# Aggregation benchmark (issue 4): GET /v1/users/me/overview (profiles and task counts from
# Postgres, open sessions from Redis, fetched in parallel, each under --overview-timeout-ms)
# versus GET /v1/users/me (one Postgres query) as the baseline, in the same run, on one
# `mesh --role=all --kafka-brokers=embedded`.
#
#   bench/overview.sh [--quick]
#
# Setup: one user (register, login), MESH_BENCH_PROFILES profiles (default 5) with a watchlist,
# MESH_BENCH_TASKS echo tasks (default 20) spread over them and waited for until they leave
# `queued`, and one open SSE session (GET /v1/stream/sessions/{profile}, held by curl) so that no
# source is empty. Then each round runs wrk -t2 -c16 --latency on /v1/users/me and then on
# /v1/users/me/overview, back to back; the ratios (overview / baseline, for p99 and req/s) are
# the medians of the per-round ratios. mesh_gateway_overview_partial_total is read from /metrics
# before and after the load (partial answers under load: a source late or failed). Server on
# CPU 0, wrk on CPU 1 (MESH_BENCH_PIN=0: no pinning). Everything listens on 127.0.0.1. Prints a
# summary and writes bench/results/overview.json.
# Environment: MESH_BENCH_BUILD_DIR (default build/h-bench), MESH_BENCH_SKIP_BUILD=1,
#   MESH_BENCH_ROUNDS (default 3; 1 with --quick), MESH_BENCH_SECONDS (default 10; 3 with
#   --quick), MESH_BENCH_CONNS (default 16), MESH_BENCH_THREADS (wrk threads, default 2),
#   MESH_BENCH_PROFILES, MESH_BENCH_TASKS, MESH_BENCH_ARGS (extra mesh flags, e.g.
#   "--overview-timeout-ms=50"), MESH_BENCH_KEEP=1 (keep logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/overview.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
build_dir=${MESH_BENCH_BUILD_DIR:-$root/build/h-bench}

if [ -z "${MESH_BENCH_INNER:-}" ]; then
  for tool in wrk jq psql curl taskset; do
    command -v "$tool" >/dev/null || {
      echo "bench/overview.sh: '$tool' is missing (apt-get install -y wrk jq postgresql-client curl util-linux)" >&2
      exit 1
    }
  done
  if [ "${MESH_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "bench: building mesh (release) in ${build_dir#$root/}" >&2
    cmake --preset release -B "$build_dir" >/dev/null
    ninja -C "$build_dir" mesh >"$build_dir/bench-build.log" 2>&1 \
      || { tail -n 40 "$build_dir/bench-build.log" >&2; exit 1; }
  fi
  [ -x "$build_dir/mesh" ] || { echo "bench/overview.sh: no mesh binary in $build_dir" >&2; exit 1; }
  MESH_BENCH_INNER=1 MESH_BENCH_BUILD_DIR=$build_dir exec scripts/with-test-servers.sh bash "$root/bench/overview.sh" "$@"
fi

# Inner part: MESH_TEST_PG_URL and MESH_TEST_REDIS_URL point at throwaway servers.
mesh=$build_dir/mesh
work=$(mktemp -d /tmp/mesh-bench-overview.XXXXXX)
if [ "$quick" = 1 ]; then rounds=${MESH_BENCH_ROUNDS:-1}; seconds=${MESH_BENCH_SECONDS:-3}
else rounds=${MESH_BENCH_ROUNDS:-3}; seconds=${MESH_BENCH_SECONDS:-10}; fi
conns=${MESH_BENCH_CONNS:-16}
threads=${MESH_BENCH_THREADS:-2}
n_profiles=${MESH_BENCH_PROFILES:-5}
n_tasks=${MESH_BENCH_TASKS:-20}
read -r -a extra_args <<<"${MESH_BENCH_ARGS:-}"
pin=${MESH_BENCH_PIN:-1}
[ "$(nproc)" -ge 2 ] || pin=0
on_server_cpu=(); on_client_cpu=()
if [ "$pin" = 1 ]; then on_server_cpu=(taskset -c 0); on_client_cpu=(taskset -c 1); fi
export MESH_JWT_SECRET
MESH_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
server_pid=
stream_pid=

source bench/lib.sh
cleanup() {
  local status=$?
  set +e
  [ -n "$stream_pid" ] && kill -TERM "$stream_pid" 2>/dev/null
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$server_pid" 2>/dev/null
  fi
  if [ "${MESH_BENCH_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then log "logs kept in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


psql -qAtX -v ON_ERROR_STOP=1 "$MESH_TEST_PG_URL" -c "DROP DATABASE IF EXISTS bench_overview" \
  -c "CREATE DATABASE bench_overview" >/dev/null
pg_url="${MESH_TEST_PG_URL%/*}/bench_overview"

port=$(pick_port)
base="http://127.0.0.1:$port"
"${on_server_cpu[@]}" "$mesh" --role=all --listen="127.0.0.1:$port" --kafka-brokers=embedded \
  --pg-url="$pg_url" --redis-url="$MESH_TEST_REDIS_URL" --ingester-source=synthetic \
  --log-level=warn --drain-timeout-ms=2000 --password-ops-limit=1 --password-mem-kib=8 \
  "${extra_args[@]}" >"$work/mesh.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$base/readyz")" = 200 ]; do
  kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] \
    || { log "mesh did not get ready:"; tail -n 20 "$work/mesh.log" >&2; exit 1; }
  sleep 0.1
done

# --- Setup: a user with profiles, tasks and one open session.
user="bench_ov_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
curl -sf -m 30 -X POST "$base/v1/auth/register" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" >/dev/null
token=$(curl -sf -m 30 -X POST "$base/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" | jq -er .access_token)
auth=(-H "Authorization: Bearer $token")

profiles=()
for i in $(seq 1 "$n_profiles"); do
  id=$(curl -sf -m 30 -X POST "$base/v1/profiles" "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"name\":\"p$i\",\"watchlist\":[\"BTC-USD\"]}" | jq -er .id) \
    || { log "POST /v1/profiles failed"; exit 1; }
  profiles+=("$id")
done
for i in $(seq 1 "$n_tasks"); do
  profile=${profiles[$((i % n_profiles))]}
  curl -sf -m 30 -o /dev/null -X POST "$base/v1/tasks" "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"type\":\"echo\",\"payload\":{\"bench\":\"overview\",\"n\":$i},\"profile_id\":\"$profile\"}" \
    || { log "POST /v1/tasks failed"; exit 1; }
done
# An open streaming session: its Redis lock is what the sessions source lists.
curl -sN -m $((rounds * seconds * 2 + 120)) "${auth[@]}" "$base/v1/stream/sessions/${profiles[0]}" \
  >"$work/stream.txt" 2>&1 &
stream_pid=$!

# Wait (bounded) until the tasks have left `queued` and the session is listed.
overview=
for _ in $(seq 1 100); do
  overview=$(curl -sf -m 5 "${auth[@]}" "$base/v1/users/me/overview") || overview=
  if [ -n "$overview" ] && jq -e --argjson n "$n_tasks" \
      '.partial == [] and (.sessions | length) >= 1 and .tasks.queued == 0
       and ([.tasks[]] | add) == $n' <<<"$overview" >/dev/null; then
    break
  fi
  sleep 0.1
done
[ -n "$overview" ] || { log "GET /v1/users/me/overview does not answer"; exit 1; }
sample=$(jq -c '{profiles: (.profiles | length), sessions: (.sessions | length), tasks, partial}' <<<"$overview")
log "work dir $work; load average $(cut -d' ' -f1-3 /proc/loadavg); overview before the load: $sample"

cat >"$work/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

# run_wrk NAME PATH: one wrk run; prints {"rps","requests","non2xx","socket_errors","latency_ms"}.
run_wrk() {
  local name=$1 path=$2 secs=${3:-$seconds}
  "${on_client_cpu[@]}" timeout $((secs + 30)) wrk "-t$threads" "-c$conns" "-d${secs}s" --latency \
    --timeout 5s -s "$work/get.lua" "$base$path" >"$work/wrk-$name.txt" 2>&1 \
    || { log "wrk $name failed:"; cat "$work/wrk-$name.txt" >&2; return 1; }
  wrk_json "$work/wrk-$name.txt" || { log "wrk $name: no summary"; cat "$work/wrk-$name.txt" >&2; return 1; }
}

# partial_counts: mesh_gateway_overview_partial_total by source and reason, as a JSON object.
partial_counts() {
  curl -sf -m 10 "$base/metrics" | awk '
    $1 ~ /^mesh_gateway_overview_partial_total\{/ {
      label = $1; sub(/^[^{]*\{/, "", label); sub(/\}$/, "", label); gsub(/"/, "", label)
      printf "%s\"%s\":%.0f", (n++ ? "," : ""), label, $2
    }
    BEGIN { printf "{" } END { printf "}\n" }'
}

if [ "$quick" != 1 ]; then
  run_wrk warm-me /v1/users/me 2 >/dev/null
  run_wrk warm-overview /v1/users/me/overview 2 >/dev/null
fi
partial_before=$(partial_counts)
results="[]"
for round in $(seq 1 "$rounds"); do
  me=$(run_wrk "me-$round" /v1/users/me)
  ov=$(run_wrk "overview-$round" /v1/users/me/overview)
  log "round $round: /v1/users/me $(jq -c '{rps, p50: .latency_ms.p50, p99: .latency_ms.p99}' <<<"$me"), overview $(jq -c '{rps, p50: .latency_ms.p50, p99: .latency_ms.p99}' <<<"$ov")"
  results=$(jq -c --argjson me "$me" --argjson ov "$ov" \
    '. + [{baseline: $me, overview: $ov, p99_ratio: ($ov.latency_ms.p99 / $me.latency_ms.p99),
           rps_ratio: ($ov.rps / $me.rps)}]' <<<"$results")
done
partial_after=$(partial_counts)
overview_after=$(curl -sf -m 5 "${auth[@]}" "$base/v1/users/me/overview" \
  | jq -c '{profiles: (.profiles | length), sessions: (.sessions | length), tasks, partial}') || overview_after=null
stream_events=$(grep -c '^event:' "$work/stream.txt" 2>/dev/null || true)

mkdir -p "$root/bench/results"
jq -n --argjson rounds "$results" --argjson before "$partial_before" --argjson after "$partial_after" \
  --argjson sample "$sample" --argjson sample_after "$overview_after" \
  --argjson seconds "$seconds" --argjson conns "$conns" --argjson threads "$threads" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson pin "$pin" --argjson quick "$quick" --arg extra "${MESH_BENCH_ARGS:-}" \
  --argjson stream_events "${stream_events:-0}" \
  --arg git "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" '
  def median(f): (map(f) | sort) as $s | $s[($s | length - 1) / 2 | floor];
  ($after | to_entries | map(.value - ($before[.key] // 0)) | add // 0) as $partial |
  {benchmark: "overview", date: $date, git: $git, quick: ($quick == 1), loadavg_after: $load,
   server: "mesh --role=all --kafka-brokers=embedded (Postgres, Redis local) \($extra)",
   wrk: "-t\($threads) -c\($conns) -d\($seconds)s --latency", pinned: ($pin == 1),
   data: $sample, stream_events_seen: $stream_events, overview_after_load: $sample_after,
   baseline: {path: "/v1/users/me", rps: ($rounds | median(.baseline.rps)),
              p50_ms: ($rounds | median(.baseline.latency_ms.p50)), p99_ms: ($rounds | median(.baseline.latency_ms.p99))},
   overview: {path: "/v1/users/me/overview", rps: ($rounds | median(.overview.rps)),
              p50_ms: ($rounds | median(.overview.latency_ms.p50)), p99_ms: ($rounds | median(.overview.latency_ms.p99))},
   p99_ratio: ($rounds | median(.p99_ratio)), rps_ratio: ($rounds | median(.rps_ratio)),
   p99_ratio_range: [($rounds | map(.p99_ratio) | min), ($rounds | map(.p99_ratio) | max)],
   rps_ratio_range: [($rounds | map(.rps_ratio) | min), ($rounds | map(.rps_ratio) | max)],
   overview_partial_total: $partial, partial_by_source: ($after | with_entries(.value -= ($before[.key] // 0))),
   errors: ($rounds | map(.baseline.non2xx + .baseline.socket_errors + .overview.non2xx + .overview.socket_errors) | add),
   statistic: "medians over rounds (baseline and overview back to back in each round); ratios are medians of per-round ratios",
   rounds: $rounds}' >"$root/bench/results/overview.json"
jq -r '
  def r(x): x * 100 | round / 100;
  "GET /v1/users/me          \(.baseline.rps) req/s, p50 \(r(.baseline.p50_ms)) ms, p99 \(r(.baseline.p99_ms)) ms",
  "GET /v1/users/me/overview \(.overview.rps) req/s, p50 \(r(.overview.p50_ms)) ms, p99 \(r(.overview.p99_ms)) ms",
  "overview/baseline: p99 x\(r(.p99_ratio)) (\(r(.p99_ratio_range[0]))-\(r(.p99_ratio_range[1]))), req/s x\(r(.rps_ratio)) (\(r(.rps_ratio_range[0]))-\(r(.rps_ratio_range[1])))",
  "mesh_gateway_overview_partial_total increments during the load (one per missing source of an answer): \(.overview_partial_total) \(.partial_by_source | tostring); errors \(.errors); wrk \(.wrk); data \(.data | tostring)"' \
  "$root/bench/results/overview.json"
