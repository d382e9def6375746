#!/usr/bin/env bash
# mesh benchmarks: the single entry point (issue 2, "Benchmarks"; DESIGN.md, "Benchmarks").
#
#   bench/run.sh [--quick]
#
# Builds mesh (release preset) and two small tools, then, beside throwaway Postgres and Redis
# (scripts/with-test-servers.sh) and a private nginx (`return 200`, one worker), measures:
#   http_core    wrk GET /healthz of `mesh --role=worker --threads=1` vs nginx
#   post_tasks   wrk POST /v1/tasks (JWT + Kafka ack + Redis) of `mesh --role=gateway --threads=1`
#                vs nginx answering the same POSTs
#   e2e          gateway + worker + updater on one mesh-kafka-mock: wrk POSTs at full speed,
#                succeeded rows in Postgres counted over time (baseline: psql \copy of as many
#                rows into a table shaped like tasks), then POST-to-finished-in-GET latency at a
#                fixed rate (bench/e2e_latency.cpp)
#   startup_rss  spawn to first 200 on /readyz (polled every 1 ms) and idle VmRSS of every role, with
#                Postgres, Redis and Kafka already up (bench/startup_rss.cpp; nginx for scale)
# and then the market-data benchmarks, each its own script with its own same-run baseline:
#   ingest       bench/ingest_replay.sh: replayed feed messages parsed and produced per second
#                (baselines: Boost.JSON parse only, a bare librdkafka producer)
#   consumer     bench/consumer_ingest.sh: trades persisted per second vs psql \copy
#   sse          bench/sse_fanout.sh: 10,000 SSE clients, events/s per core, RSS per connection
#                (baseline: a bare Asio loop writing the same frames)
# and the aggregation benchmark of issue 4:
#   overview     bench/overview.sh: wrk GET /v1/users/me/overview (3 sources in parallel) on
#                `mesh --role=all --kafka-brokers=embedded` (baseline: GET /v1/users/me)
# Prints a table and writes bench/results/latest.json. A missed target is a figure, not a
# failure: the exit status is non-zero only when a benchmark could not run.
#
# --quick: a few seconds of each (a smoke test, under about a minute once built).
# Environment: MESH_BENCH_BUILD_DIR (default build/h-bench), MESH_BENCH_SKIP_BUILD=1,
#   MESH_BENCH_SERVER_CPU / MESH_BENCH_CLIENT_CPU (default 0 / 1), MESH_BENCH_PIN=0 (no taskset),
#   MESH_BENCH_E2E_MODE=split|all (default split), MESH_BENCH_LATENCY_RATE (default 5000),
#   MESH_BENCH_ONLY="http_core post_tasks e2e startup_rss ingest consumer sse overview" (a subset),
#   MESH_BENCH_KEEP=1 (keep logs), MESH_BENCH_E2E_{GATEWAY,WORKER,UPDATER,ALL}_ARGS (extra mesh
#   flags, for diagnosis).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

build_dir=${MESH_BENCH_BUILD_DIR:-$root/build/h-bench}
tools_dir=$build_dir/bench-tools

# ---------------------------------------------------------------------------------------------
# Outer part: build, then run the inner part beside throwaway Postgres and Redis.
if [ -z "${MESH_BENCH_INNER:-}" ]; then
  for tool in wrk nginx jq psql curl taskset g++; do
    command -v "$tool" >/dev/null || {
      echo "bench/run.sh: '$tool' is missing (apt-get install -y wrk nginx-light jq postgresql-client curl util-linux g++)" >&2
      exit 1
    }
  done
  if [ "${MESH_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "bench: building mesh (release) in ${build_dir#$root/}" >&2
    cmake --preset release -B "$build_dir" >/dev/null
    ninja -C "$build_dir" mesh mesh-kafka-mock >"$build_dir/bench-build.log" 2>&1 \
      || { tail -n 40 "$build_dir/bench-build.log" >&2; exit 1; }
  fi
  [ -x "$build_dir/mesh" ] && [ -x "$build_dir/mesh-kafka-mock" ] \
    || { echo "bench/run.sh: no mesh binaries in $build_dir" >&2; exit 1; }
  mkdir -p "$tools_dir"
  for tool in e2e_latency startup_rss; do
    if [ ! -x "$tools_dir/$tool" ] || [ "bench/$tool.cpp" -nt "$tools_dir/$tool" ]; then
      g++ -std=c++20 -O2 -pthread -o "$tools_dir/$tool" "bench/$tool.cpp"
    fi
  done
  only=${MESH_BENCH_ONLY:-http_core post_tasks e2e startup_rss ingest consumer sse overview}
  status=0
  if [[ " $only " =~ \ (http_core|post_tasks|e2e|startup_rss)\  ]]; then
    MESH_BENCH_INNER=1 scripts/with-test-servers.sh bash "$root/bench/run.sh" "$@" || status=1
  fi
  # The market-data benchmarks (issue 3), each a script of its own with its own baseline,
  # sharing this build directory; their results go to bench/results/{ingest,consumer,sse}.json.
  # Then issue 4's aggregation benchmark (bench/results/overview.json), on the mesh built above.
  export MESH_BENCH_BUILD_DIR=$build_dir
  for market in ingest consumer sse overview; do
    [[ " $only " == *" $market "* ]] || continue
    case $market in
      ingest) script=bench/ingest_replay.sh; args=() ;;
      consumer) script=bench/consumer_ingest.sh; args=() ;;
      sse) script=bench/sse_fanout.sh; args=() ;;
      overview) script=bench/overview.sh; args=() ;;
    esac
    if [ "$quick" = 1 ]; then
      case $market in
        ingest) args=(20000) ;;
        consumer) export MESH_BENCH_ROUNDS=1 MESH_BENCH_TRADES=20000 ;;
        sse) export SSE_CLIENTS=1000 SSE_SECONDS=3 SSE_SLOW_SECONDS=5 ;;
        overview) args=(--quick) ;;
      esac
    fi
    echo "== bench $market ($script)" >&2
    MESH_BENCH_SKIP_BUILD=1 "$script" "${args[@]}" || { echo "bench/run.sh: $market could not run" >&2; status=1; }
  done
  exit "$status"
fi

# ---------------------------------------------------------------------------------------------
# Inner part: MESH_TEST_PG_URL and MESH_TEST_REDIS_URL point at throwaway servers.
mesh=$build_dir/mesh
kafka_mock=$build_dir/mesh-kafka-mock
work=$(mktemp -d /tmp/mesh-bench.XXXXXX)
mkdir -p "$work/logs" "$work/results"
: >"$work/pids"
server_cpu=${MESH_BENCH_SERVER_CPU:-0}
client_cpu=${MESH_BENCH_CLIENT_CPU:-1}
pin=${MESH_BENCH_PIN:-1}
[ "$(nproc)" -ge 2 ] || pin=0
e2e_mode=${MESH_BENCH_E2E_MODE:-split}
latency_rate=${MESH_BENCH_LATENCY_RATE:-5000}
only=${MESH_BENCH_ONLY:-http_core post_tasks e2e startup_rss}
export PGCONNECT_TIMEOUT=10
export MESH_JWT_SECRET
MESH_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
pg_admin=$MESH_TEST_PG_URL
redis_url=$MESH_TEST_REDIS_URL

if [ "$quick" = 1 ]; then
  wrk_seconds=2; wrk_rounds=1; e2e_seconds=4; e2e_drain=8; latency_drain=3
  latency_seconds=3; latency_warmup=1; startup_runs=1; settle_ms=300; copy_min_rows=20000
else
  wrk_seconds=10; wrk_rounds=3; e2e_seconds=30; e2e_drain=90; latency_drain=10
  latency_seconds=20; latency_warmup=3; startup_runs=5; settle_ms=1000; copy_min_rows=100000
fi
wrk_conns=64
# The ingester (role all) runs its random-walk source: benchmarks never reach the Internet.
common_mesh_args=(--log-level=warn --drain-timeout-ms=2000 --ingester-source=synthetic)

cleanup() {
  local status=$?
  local pid
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$work/pids"
  for _ in $(seq 1 50); do
    local alive=0
    while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$work/pids"
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$work/pids"
  if [ "${MESH_BENCH_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
    echo "bench: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source bench/lib.sh

# Command prefixes (taskset execs its command, so a background job's pid stays the server's).
on_server_cpu=()
on_client_cpu=()
if [ "$pin" = 1 ]; then
  on_server_cpu=(taskset -c "$server_cpu")
  on_client_cpu=(taskset -c "$client_cpu")
fi

fresh_db() {
  psql_at "$pg_admin" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  echo "${pg_admin%/*}/$1"
}

# token PORT: registers a user on the gateway and prints an access token.
token() {
  local port=$1 user
  user="bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  curl -sf -m 30 -X POST "http://127.0.0.1:$port/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" >/dev/null
  curl -sf -m 30 -X POST "http://127.0.0.1:$port/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"bench-password-1\"}" | jq -er .access_token
}

post_script() {
  local token=$1 file=$2
  cat >"$file" <<EOF
-- POST /v1/tasks with a pre-registered user's token (static request: no per-request Lua).
wrk.method = "POST"
wrk.body = '{"type":"echo","payload":{"bench":"wrk","n":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
EOF
}

# metric PORT NAME [LABEL_FILTER]: sum of a Prometheus sample family from /metrics.
metric() {
  curl -sf -m 10 "http://127.0.0.1:$1/metrics" \
    | awk -v name="$2" -v filter="${3:-}" '
        { split($1, parts, "{") }
        parts[1] == name && (filter == "" || index($1, filter) > 0) { sum += $2 }
        END { printf "%.0f\n", sum }'
}

# run_wrk NAME SECONDS URL [LUA]: one bounded wrk run on the client CPU; prints its JSON.
run_wrk() {
  local name=$1 seconds=$2 url=$3 lua=${4:-}
  local args=(-t1 "-c$wrk_conns" "-d${seconds}s" --latency --timeout 5s)
  [ -n "$lua" ] && args+=(-s "$lua")
  "${on_client_cpu[@]}" timeout $((seconds + 30)) wrk "${args[@]}" "$url" >"$work/logs/wrk-$name.txt" 2>&1 \
    || { log "wrk $name failed:"; cat "$work/logs/wrk-$name.txt" >&2; return 1; }
  wrk_json "$work/logs/wrk-$name.txt" || { log "wrk $name: no summary"; cat "$work/logs/wrk-$name.txt" >&2; return 1; }
}


# ---------------------------------------------------------------------------------------------
# nginx baseline: private prefix, one worker, `return 200`.
start_nginx() {
  local port=$1 dir=$2
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok"; }
  }
}
EOF
}

# ---------------------------------------------------------------------------------------------
# http_core: GET /healthz of one worker thread vs nginx return 200.
bench_http_core() {
  local port pid best_n=0 best_m=0 rounds="[]"
  port=$(pick_port)
  start worker "${on_server_cpu[@]}" "$mesh" --role=worker --listen="127.0.0.1:$port" --kafka-brokers=embedded \
    --threads=1 "${common_mesh_args[@]}"
  pid=$started_pid
  wait_ready "$port" "$pid" worker 60
  [ "$quick" = 1 ] || { run_wrk warm-nginx 1 "$nginx_url/" >/dev/null; run_wrk warm-healthz 1 "http://127.0.0.1:$port/healthz" >/dev/null; }
  for round in $(seq 1 "$wrk_rounds"); do
    local n m
    n=$(run_wrk "nginx-get-$round" "$wrk_seconds" "$nginx_url/")
    m=$(run_wrk "healthz-$round" "$wrk_seconds" "http://127.0.0.1:$port/healthz")
    log "http_core round $round: nginx $(jq .rps <<<"$n") req/s, mesh /healthz $(jq .rps <<<"$m") req/s"
    rounds=$(jq -c --argjson n "$n" --argjson m "$m" '. + [{nginx: $n, mesh: $m}]' <<<"$rounds")
  done
  stop "$pid"
  jq -n --argjson rounds "$rounds" --arg load "$(loadavg)" --argjson seconds "$wrk_seconds" \
    --argjson conns "$wrk_conns" --argjson pin "$pin" '
    ($rounds | map(. + {ratio: (.mesh.rps / .nginx.rps)}) | sort_by(.ratio)) as $sorted |
    $sorted[($sorted | length - 1) / 2 | floor] as $median |
    ($median.mesh.rps) as $m | ($median.nginx.rps) as $n |
    {http_core: {mesh_rps: $m, nginx_rps: $n, ratio: ($m / $n), target_ratio: 1.0,
                 met: ($m / $n >= 1.0), statistic: "median of per-round ratios (nginx and mesh back to back in each round)",
                 ratio_min: ($sorted[0].ratio), ratio_max: ($sorted[-1].ratio), rounds: $rounds,
                 wrk: "-t1 -c\($conns) -d\($seconds)s", pinned: ($pin == 1),
                 server: "mesh --role=worker --threads=1 --kafka-brokers=embedded",
                 loadavg_after: $load}}' >"$work/results/http_core.json"
}

# ---------------------------------------------------------------------------------------------
# post_tasks: POST /v1/tasks on one gateway thread vs nginx answering the same POSTs.
bench_post_tasks() {
  local port pid pg_url tok best rounds="[]"
  pg_url=$(fresh_db bench_post)
  port=$(pick_port)
  start gateway "${on_server_cpu[@]}" "$mesh" --role=gateway --listen="127.0.0.1:$port" --kafka-brokers=embedded \
    --threads=1 --pg-url="$pg_url" --redis-url="$redis_url" --password-ops-limit=1 \
    --password-mem-kib=8 "${common_mesh_args[@]}"
  pid=$started_pid
  wait_ready "$port" "$pid" gateway 60
  tok=$(token "$port")
  post_script "$tok" "$work/post.lua"
  [ "$quick" = 1 ] || { run_wrk warm-post 1 "http://127.0.0.1:$port/v1/tasks" "$work/post.lua" >/dev/null; }
  local accepted_before
  accepted_before=$(metric "$port" mesh_gateway_tasks_accepted_total)
  local wrk_requests=0
  for round in $(seq 1 "$wrk_rounds"); do
    local n m
    n=$(run_wrk "nginx-post-$round" "$wrk_seconds" "$nginx_url/v1/tasks" "$work/post.lua")
    m=$(run_wrk "post-$round" "$wrk_seconds" "http://127.0.0.1:$port/v1/tasks" "$work/post.lua")
    log "post_tasks round $round: nginx $(jq .rps <<<"$n") req/s, mesh POST /v1/tasks $(jq .rps <<<"$m") req/s, errors $(jq '.non2xx + .socket_errors' <<<"$m")"
    rounds=$(jq -c --argjson n "$n" --argjson m "$m" '. + [{nginx: $n, mesh: $m}]' <<<"$rounds")
  done
  local accepted unavailable non202 metrics_text
  metrics_text=$(curl -sf -m 10 "http://127.0.0.1:$port/metrics")
  accepted=$(( $(metric "$port" mesh_gateway_tasks_accepted_total) - accepted_before ))
  unavailable=$(metric "$port" mesh_gateway_tasks_unavailable_total)
  non202=$(awk '/^mesh_http_requests_total\{/ && /route="\/v1\/tasks"/ && /method="POST"/ && !/status="202"/ { s += $2 } END { printf "%.0f\n", s }' <<<"$metrics_text")
  stop "$pid"
  jq -n --argjson rounds "$rounds" --arg load "$(loadavg)" --argjson seconds "$wrk_seconds" \
    --argjson conns "$wrk_conns" --argjson accepted "$accepted" --argjson unavailable "$unavailable" \
    --argjson non202 "$non202" --argjson pin "$pin" '
    ($rounds | map(. + {ratio: (.mesh.rps / .nginx.rps)}) | sort_by(.ratio)) as $sorted |
    $sorted[($sorted | length - 1) / 2 | floor] as $median |
    ($median.mesh.rps) as $m | ($median.nginx.rps) as $n |
    ($rounds | map(.mesh.non2xx + .mesh.socket_errors) | add) as $errors |
    {post_tasks: {mesh_rps: $m, nginx_rps: $n, ratio: ($m / $n), target_ratio: 0.35,
                  errors: $errors, server_non202: $non202, server_unavailable_503: $unavailable,
                  server_accepted: $accepted,
                  met: (($m / $n >= 0.35) and $errors == 0 and $non202 == 0),
                  statistic: "median of per-round ratios (nginx and mesh back to back in each round)",
                  ratio_min: ($sorted[0].ratio), ratio_max: ($sorted[-1].ratio), rounds: $rounds,
                  wrk: "-t1 -c\($conns) -d\($seconds)s, static POST script", pinned: ($pin == 1),
                  server: "mesh --role=gateway --threads=1 --kafka-brokers=embedded (Postgres, Redis local)",
                  loadavg_after: $load}}' >"$work/results/post_tasks.json"
}

# ---------------------------------------------------------------------------------------------
# e2e: POST -> Kafka -> worker -> Kafka -> updater -> Postgres, at full speed and at a fixed rate.
start_kafka_mock() {
  local name=$1
  # Every topic a role uses: an out-of-process mock cluster cannot have them created by mesh.
  local topic topics=()
  for topic in tasks.pending tasks.completed tasks.dlq market.trades market.ticker market.dlq \
    messages messages.dlq; do
    topics+=(--topic "$topic:12")
  done
  start "$name" "$kafka_mock" --brokers 3 "${topics[@]}"
  kafka_pid=$started_pid
  bootstrap=
  for _ in $(seq 1 300); do
    bootstrap=$(sed -n 's/^bootstrap=//p' "$work/logs/$name.log" 2>/dev/null || true)
    [ -n "$bootstrap" ] && return 0
    kill -0 "$kafka_pid" 2>/dev/null || break
    sleep 0.1
  done
  log "mesh-kafka-mock printed no bootstrap line"; cat "$work/logs/$name.log" >&2
  return 1
}

# e2e_up NAME: a fresh database and a fresh pipeline; sets pg_url, gw_port, tok, e2e_pids.
e2e_up() {
  local name=$1
  e2e_pids=()
  pg_url=$(fresh_db "bench_$name")
  gw_port=$(pick_port)
  if [ "$e2e_mode" = all ]; then
    # shellcheck disable=SC2086  # word splitting wanted: extra flags for diagnosis
    start "all-$name" "$mesh" --role=all --listen="127.0.0.1:$gw_port" --kafka-brokers=embedded --threads=2 \
      --pg-url="$pg_url" --redis-url="$redis_url" --password-ops-limit=1 --password-mem-kib=8 \
      "${common_mesh_args[@]}" ${MESH_BENCH_E2E_ALL_ARGS:-}
    e2e_pids+=("$started_pid")
    wait_ready "$gw_port" "$started_pid" "all-$name" 60
    topology="mesh --role=all --threads=2 --kafka-brokers=embedded"
  else
    start_kafka_mock "kafka-$name"
    e2e_pids+=("$kafka_pid")
    local kafka_args=(--kafka-brokers="$bootstrap" --pg-url="$pg_url" --redis-url="$redis_url")
    # shellcheck disable=SC2086
    start "gateway-$name" "$mesh" --role=gateway --listen="127.0.0.1:$gw_port" "${kafka_args[@]}" \
      --password-ops-limit=1 --password-mem-kib=8 "${common_mesh_args[@]}" ${MESH_BENCH_E2E_GATEWAY_ARGS:-}
    e2e_pids+=("$started_pid")
    wait_ready "$gw_port" "$started_pid" "gateway-$name" 60
    local role port extra_name
    for role in worker updater; do
      port=$(pick_port)
      extra_name="MESH_BENCH_E2E_${role^^}_ARGS"
      # shellcheck disable=SC2086
      start "$role-$name" "$mesh" --role="$role" --listen="127.0.0.1:$port" "${kafka_args[@]}" \
        "${common_mesh_args[@]}" ${!extra_name:-}
      e2e_pids+=("$started_pid")
      wait_ready "$port" "$started_pid" "$role-$name" 60
    done
    topology="mesh-kafka-mock (3 brokers, 12 partitions) + gateway + worker + updater processes, default flags"
  fi
  tok=$(token "$gw_port")
  # Let the consumer groups settle before the clock starts.
  sleep 2
}

# Mesh processes first, the Kafka mock last.
e2e_down() {
  local i
  for ((i = ${#e2e_pids[@]} - 1; i >= 0; i--)); do stop "${e2e_pids[$i]}"; done
}

succeeded_count() { psql_at "$pg_url" -c "SELECT count(*) FROM tasks WHERE status = 'succeeded'"; }

bench_e2e() {
  local pg_url gw_port tok topology e2e_pids=()

  # --- Throughput: wrk POSTs at full speed; succeeded rows counted every second.
  e2e_up e2e
  post_script "$tok" "$work/post-e2e.lua"
  local samples=$work/e2e-samples.txt
  : >"$samples"
  rm -f "$work/e2e-stop"
  (
    while [ ! -f "$work/e2e-stop" ]; do
      c=$(succeeded_count 2>/dev/null || echo -1)
      echo "$(date +%s%3N) $c" >>"$samples"
      sleep 1
    done
  ) &
  local sampler=$!
  local accepted_before t_start t_end wrk_out accepted
  accepted_before=$(metric "$gw_port" mesh_gateway_tasks_accepted_total)
  t_start=$(date +%s%3N)
  wrk_out=$(run_wrk e2e-post "$e2e_seconds" "http://127.0.0.1:$gw_port/v1/tasks" "$work/post-e2e.lua")
  t_end=$(date +%s%3N)
  sleep 1  # requests in flight when wrk stopped still finish on the server
  accepted=$(( $(metric "$gw_port" mesh_gateway_tasks_accepted_total) - accepted_before ))
  log "e2e: $accepted tasks accepted in ${e2e_seconds}s ($(jq .rps <<<"$wrk_out") POST/s); waiting up to ${e2e_drain}s for Postgres"
  local deadline=$((SECONDS + e2e_drain)) persisted t_done=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    persisted=$(tail -n 1 "$samples" | cut -d' ' -f2)
    if [ -n "$persisted" ] && [ "$persisted" -ge "$accepted" ]; then
      t_done=$(tail -n 1 "$samples" | cut -d' ' -f1)
      break
    fi
    sleep 0.2
  done
  touch "$work/e2e-stop"
  wait "$sampler" || true
  local final others
  final=$(succeeded_count)
  echo "$(date +%s%3N) $final" >>"$samples"
  others=$(psql_at "$pg_url" -c "SELECT coalesce(json_object_agg(status, n), '{}') FROM (SELECT status, count(*) AS n FROM tasks GROUP BY status) s")
  log "e2e: $final of $accepted succeeded ($( [ "$t_done" -gt 0 ] && echo "all after $((t_done - t_start))ms" || echo "not all within ${e2e_drain}s after the load"); statuses $others)"
  e2e_down

  # Baseline: psql \copy of as many task-shaped rows into a table with the same indexes.
  local copy_rows copy_ms c0 c1
  copy_rows=$(( accepted > copy_min_rows ? accepted : copy_min_rows ))
  [ "$copy_rows" -gt 2000000 ] && copy_rows=2000000
  psql_at "$pg_url" -c "CREATE TABLE bench_copy (LIKE tasks INCLUDING ALL)" \
    -c "\\copy (SELECT gen_random_uuid(), '00000000-0000-7000-8000-000000000001'::uuid, 'echo', 'succeeded', 2, '{\"bench\":\"wrk\",\"n\":1}'::jsonb, '{\"bench\":\"wrk\",\"n\":1}'::jsonb, NULL, 1, now(), now(), now(), now() FROM generate_series(1, $copy_rows)) TO '$work/copy.csv' WITH (FORMAT csv)" >/dev/null
  c0=$(date +%s%N)
  psql_at "$pg_url" -c "\\copy bench_copy FROM '$work/copy.csv' WITH (FORMAT csv)" >/dev/null
  c1=$(date +%s%N)
  copy_ms=$(( (c1 - c0) / 1000000 ))
  log "e2e baseline: psql \\copy of $copy_rows rows in ${copy_ms}ms"

  # --- Latency at a fixed rate, on a fresh pipeline (no backlog from the run above).
  local sustained
  local t_last
  t_last=$(tail -n 1 "$samples" | cut -d' ' -f1)
  sustained=$(jq -n --argjson a "$accepted" --argjson s "$t_start" --argjson d "$t_done" --argjson f "$final" --argjson l "$t_last" \
    'if $d > 0 then $a / (($d - $s) / 1000) else $f / (($l - $s) / 1000 + 0.0001) end | floor')
  e2e_up e2e_latency
  local lat_args=(--duration "$latency_seconds" --warmup "$latency_warmup" --sample 50 --poll-ms 5
                  --post-conns 64 --get-conns 16 --drain "$latency_drain")
  local latency latency_low="null" low_rate=0
  latency=$("${on_client_cpu[@]}" timeout $((latency_seconds + 60)) "$tools_dir/e2e_latency" "${lat_args[@]}" \
    --port "$gw_port" --token "$tok" --rate "$latency_rate" 2>"$work/logs/e2e_latency.err") \
    || { log "e2e_latency failed:"; cat "$work/logs/e2e_latency.err" >&2; return 1; }
  log "e2e latency at $latency_rate/s: $(jq -c '{achieved_rate, unresolved, gets_per_s, p50: .visible_latency_ms.p50, p99: .visible_latency_ms.p99}' <<<"$latency")"
  # If the pipeline did not keep up with the target rate, also measure at a rate it sustains,
  # on another fresh pipeline (not in --quick: a smoke test needs one run).
  if [ "$quick" = 0 ] && { jq -e --argjson r "$latency_rate" '.achieved_rate < 0.95 * $r or .unresolved > 0 or .visible_latency_ms.p99 > 1000' <<<"$latency" >/dev/null \
     || [ "$sustained" -lt "$latency_rate" ]; }; then
    e2e_down
    low_rate=$(( sustained / 2 ))
    [ "$low_rate" -ge 1000 ] && low_rate=$(( low_rate / 500 * 500 ))
    [ "$low_rate" -lt 100 ] && low_rate=100
    [ "$low_rate" -ge "$latency_rate" ] && low_rate=$(( latency_rate / 2 ))
    e2e_up e2e_latency_low
    latency_low=$("${on_client_cpu[@]}" timeout $((latency_seconds + 60)) "$tools_dir/e2e_latency" "${lat_args[@]}" \
      --port "$gw_port" --token "$tok" --rate "$low_rate" 2>>"$work/logs/e2e_latency.err") \
      || { log "e2e_latency at $low_rate/s failed (exit $?)"; latency_low="null"; }
    log "e2e latency at $low_rate/s: $(jq -c '{achieved_rate, unresolved, gets_per_s, p50: .visible_latency_ms.p50, p99: .visible_latency_ms.p99}' <<<"$latency_low" 2>/dev/null || echo failed)"
  fi
  e2e_down

  jq -n --argjson wrk "$wrk_out" --argjson accepted "$accepted" --argjson final "$final" \
    --argjson others "$others" --argjson t_start "$t_start" --argjson t_end "$t_end" --argjson t_done "$t_done" \
    --rawfile samples "$samples" --argjson latency "$latency" --argjson latency_low "$latency_low" \
    --argjson low_rate "$low_rate" --argjson rate "$latency_rate" --argjson copy_rows "$copy_rows" \
    --argjson copy_ms "$copy_ms" --arg topology "$topology" --arg load "$(loadavg)" \
    --argjson seconds "$e2e_seconds" '
    ($samples | split("\n") | map(select(length > 0) | split(" ") | map(tonumber))
      | map(select(.[1] >= 0))) as $s |
    ([range(1; $s | length)] | map(($s[.][1] - $s[. - 1][1]) / (($s[.][0] - $s[. - 1][0]) / 1000))
      | max // 0) as $peak |
    (($s | map(select(.[0] <= $t_end)) | last // [$t_start, 0])) as $at_end |
    (if $t_done > 0 then $accepted / (($t_done - $t_start) / 1000)
     else $final / (($s | last)[0] - $t_start) * 1000 end) as $sustained |
    ($copy_rows / ($copy_ms / 1000)) as $copy_rps |
    {e2e: {
      topology: $topology, load_seconds: $seconds,
      post: $wrk, accepted: $accepted, succeeded: $final, statuses: $others,
      all_persisted: ($t_done > 0 and $final >= $accepted),
      seconds_to_all_persisted: (if $t_done > 0 then ($t_done - $t_start) / 1000 else null end),
      persisted_per_s: $sustained,
      persisted_per_s_during_load: ($at_end[1] / (($at_end[0] - $t_start) / 1000)),
      backlog_at_load_end: ($accepted - $at_end[1]),
      peak_1s_per_s: $peak, samples: $s,
      target_per_s: 20000, met: ($t_done > 0 and $sustained >= 20000),
      copy_baseline: {rows: $copy_rows, ms: $copy_ms, rows_per_s: $copy_rps},
      ratio_vs_copy: ($sustained / $copy_rps),
      latency: ($latency + {target_p99_ms: 50,
                            met: ($latency.achieved_rate >= 0.95 * $rate and $latency.unresolved == 0
                                  and $latency.visible_latency_ms.p99 != null
                                  and $latency.visible_latency_ms.p99 < 50)}),
      latency_at_sustainable_rate: (if $latency_low == null then null else ($latency_low + {rate: $low_rate}) end),
      loadavg_after: $load}}' >"$work/results/e2e.json"
}

# ---------------------------------------------------------------------------------------------
# startup_rss: spawn -> /readyz 200, and idle VmRSS, per role (dependencies already up).
bench_startup_rss() {
  local pg_url role results="{}"
  pg_url=$(fresh_db bench_start)
  start_kafka_mock kafka-start
  local args=(--kafka-brokers="$bootstrap" --pg-url="$pg_url" --redis-url="$redis_url" "${common_mesh_args[@]}")
  # One start first so the schema exists: later starts find it migrated, as a restart would.
  local port
  port=$(pick_port)
  "$tools_dir/startup_rss" --port "$port" --settle-ms 0 --log "$work/logs/start-migrate.log" -- \
    "$mesh" --role=all --listen="127.0.0.1:$port" "${args[@]}" >/dev/null \
    || { log "mesh --role=all did not start:"; tail -n 20 "$work/logs/start-migrate.log" >&2; return 1; }
  # nginx for scale: master + worker.
  local nginx_runs="[]" run
  for run in $(seq 1 "$startup_runs"); do
    port=$(pick_port)
    start_nginx "$port" "$work/nginx-start-$run"
    local out
    out=$("$tools_dir/startup_rss" --port "$port" --path / --settle-ms "$settle_ms" -- \
      nginx -p "$work/nginx-start-$run" -c "$work/nginx-start-$run/nginx.conf")
    nginx_runs=$(jq -c --argjson r "$out" '. + [$r]' <<<"$nginx_runs")
  done
  # Every role, as the image runs it (GNUTLS_NO_IMPLICIT_INIT=1 is set in docker/Dockerfile).
  for role in gateway ingester worker updater stream consumer all; do
    local runs="[]"
    for run in $(seq 1 "$startup_runs"); do
      local out attempt
      for attempt in 1 2 3; do
        port=$(pick_port)
        if out=$("$tools_dir/startup_rss" --port "$port" --settle-ms "$settle_ms" --log "$work/logs/start-$role-$run.log" -- \
          env GNUTLS_NO_IMPLICIT_INIT=1 "$mesh" --role="$role" --listen="127.0.0.1:$port" "${args[@]}"); then
          break
        fi
        # Someone else may have taken the port meanwhile (a shared machine): try another.
        grep -q 'Address already in use' "$work/logs/start-$role-$run.log" && [ "$attempt" -lt 3 ] && continue
        log "mesh --role=$role did not get ready: $out"; tail -n 20 "$work/logs/start-$role-$run.log" >&2; return 1
      done
      runs=$(jq -c --argjson r "$out" '. + [$r]' <<<"$runs")
    done
    log "startup_rss $role: $(jq -c 'map({ready_ms, rss_idle_kib})' <<<"$runs")"
    results=$(jq -c --arg role "$role" --argjson runs "$runs" '. + {($role): $runs}' <<<"$results")
  done
  jq -n --argjson roles "$results" --argjson nginx "$nginx_runs" --arg load "$(loadavg)" '
    def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def summary: {ready_ms: (map(.ready_ms) | median), ready_ms_max: (map(.ready_ms) | max),
                  rss_idle_mib: (map(.rss_idle_kib) | median / 1024),
                  rss_ready_mib: (map(.rss_ready_kib) | median / 1024),
                  rss_anon_idle_mib: (map(.rss_anon_idle_kib) | median / 1024),
                  pss_idle_mib: (map(.pss_idle_kib) | median / 1024),
                  threads: (map(.threads) | median), stop_ms: (map(.stop_ms) | median), runs: .};
    {startup_rss: {
      roles: ($roles | map_values(summary
                | . + {rss_met: (.rss_idle_mib < 15), ready_met: (.ready_ms < 100)})),
      nginx: ($nginx | summary),
      target_rss_mib: 15, target_ready_ms: 100,
      note: "median of runs; dependencies (Postgres, Redis, mesh-kafka-mock with topics, migrated schema) already up; default flags, --log-level=warn",
      loadavg_after: $load}}' >"$work/results/startup_rss.json"
}

# ---------------------------------------------------------------------------------------------
load_before=$(loadavg)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "work dir $work; load average $load_before on $(nproc) CPUs$( [ "$pin" = 1 ] && echo "; servers on CPU $server_cpu, clients on CPU $client_cpu")"

nginx_port=$(pick_port)
nginx_url="http://127.0.0.1:$nginx_port"
start_nginx "$nginx_port" "$work/nginx"
start nginx "${on_server_cpu[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$nginx_url/")" = 200 ] && break
  sleep 0.05
done

failed=()
for name in $only; do
  log "== $name"
  # A subshell in the background keeps `set -e` working inside the benchmark function.
  ( set -e; "bench_$name" ) &
  if ! wait $!; then
    failed+=("$name")
    log "$name could not run"
    echo "{\"$name\": {\"error\": \"could not run; see the log above\"}}" >"$work/results/$name.json"
  fi
done

head_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" diff --quiet HEAD 2>/dev/null && echo false || echo true)
mkdir -p "$root/bench/results"
jq -s --arg started "$started_at" --arg rev "$head_rev" --argjson dirty "$dirty" \
  --arg load_before "$load_before" --arg load_after "$(loadavg)" --argjson quick "$quick" \
  --argjson cpus "$(nproc)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
  --argjson pin "$pin" --arg build "${build_dir#$root/} (RelWithDebInfo)" '
  add + {meta: {started: $started, git: $rev, dirty_worktree: $dirty, quick: ($quick == 1),
                cpus: $cpus, cpu: $cpu, build: $build, pinned: ($pin == 1),
                loadavg_before: $load_before, loadavg_after: $load_after}}' \
  "$work"/results/*.json >"$root/bench/results/latest.json"

# The table: figure, value, baseline, ratio, target.
jq -r '
  def r(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
  def i(x): if x == null then "-" else (x | round | tostring) end;
  def ok(x): if x == true then "ok" elif x == false then "MISS" else "-" end;
  ["figure", "value", "baseline", "ratio", "target", ""],
  (.http_core | if . == null then empty elif .error then ["GET /healthz req/s", "FAILED", "", "", ">= 1.0x", ""] else
    ["GET /healthz req/s (1 thread)", i(.mesh_rps), "nginx \(i(.nginx_rps))", "\(r(.ratio))x (\(r(.ratio_min))-\(r(.ratio_max)))", ">= 1.0x", ok(.met)] end),
  (.post_tasks | if . == null then empty elif .error then ["POST /v1/tasks req/s", "FAILED", "", "", ">= 0.35x", ""] else
    ["POST /v1/tasks req/s (1 thread)", i(.mesh_rps), "nginx \(i(.nginx_rps))", "\(r(.ratio))x (\(r(.ratio_min))-\(r(.ratio_max)))", ">= 0.35x", ok(.met)],
    ["POST /v1/tasks errors", "\(.errors) (server non-202: \(.server_non202))", "-", "-", "0", ok(.errors == 0 and .server_non202 == 0)] end),
  (.e2e | if . == null then empty elif .error then ["e2e", "FAILED", "", "", "", ""] else
    ["e2e persisted tasks/s (\(.load_seconds)s load)", i(.persisted_per_s), "psql copy \(i(.copy_baseline.rows_per_s)) rows/s", "\(r(.ratio_vs_copy))x", ">= 20000/s", ok(.met)],
    ["  accepted / succeeded / drained", "\(.accepted) / \(.succeeded) / \(if .all_persisted then "\(r(.seconds_to_all_persisted))s" else "NO" end)", "-", "-", "all", ok(.all_persisted)],
    ["  POST/s during e2e load", i(.post.rps), "-", "-", "-", ""],
    ["e2e POST->finished p50 / p99 ms @\(.latency.target_rate)/s", (if .latency.visible_latency_ms == null then "none finished" else "\(r(.latency.visible_latency_ms.p50)) / \(r(.latency.visible_latency_ms.p99))" end), "-", "-", "p99 < 50 ms", ok(.latency.met)],
    ["  achieved rate / unresolved / 404 after 202", "\(i(.latency.achieved_rate))/s / \(.latency.unresolved) / \(.latency.not_found_right_after_202)", "-", "-", "\(.latency.target_rate)/s / 0 / 0", ""],
    (if .latency_at_sustainable_rate then (.latency_at_sustainable_rate |
      ["e2e POST->finished p50 / p99 ms @\(.rate)/s", (if .visible_latency_ms == null then "none finished" else "\(r(.visible_latency_ms.p50)) / \(r(.visible_latency_ms.p99))" end), "-", "-", "(reduced rate)", ok(.visible_latency_ms != null and .visible_latency_ms.p99 < 50 and .unresolved == 0)],
      ["  achieved rate / unresolved", "\(i(.achieved_rate))/s / \(.unresolved)", "-", "-", "\(.rate)/s / 0", ""]) else empty end)
  end),
  (.startup_rss | if . == null then empty elif .error then ["startup / RSS", "FAILED", "", "", "", ""] else
    (. as $s | ["gateway", "ingester", "worker", "updater", "stream", "consumer", "all"][] as $role | $s.roles[$role] | select(. != null) |
      (["idle RSS MiB, \($role) (anon \(r(.rss_anon_idle_mib)))", r(.rss_idle_mib), "nginx \(r($s.nginx.rss_idle_mib)) (anon \(r($s.nginx.rss_anon_idle_mib)))", "-", "< 15 MiB", ok(.rss_met)],
       ["start to /readyz ms, \($role)", r(.ready_ms), "nginx \(r($s.nginx.ready_ms))", "-", "< 100 ms", ok(.ready_met)])) end)
  | @tsv' "$root/bench/results/latest.json" | column -t -s $'\t'
echo "load average: before $load_before, after $(loadavg) on $(nproc) CPUs; results in bench/results/latest.json"

if [ "${#failed[@]}" -gt 0 ]; then
  log "could not run: ${failed[*]}"
  exit 1
fi
