#!/usr/bin/env bash
# Worker scaling curve without a cluster (issue 5, "Scaling without a cluster"): completed
# CPU-heavy tasks per second with 1, 2 and 4 `mesh --role=worker` PROCESSES (--cpu-threads=1
# each, so processes are what scales) on one mesh-kafka-mock (3 brokers, every topic with
# MESH_BENCH_PARTITIONS partitions), throwaway Postgres and Redis (scripts/with-test-servers.sh).
#
#   bench/scale.sh
#   MESH_BENCH_BUILD_DIR=build/release MESH_BENCH_SKIP_BUILD=1 MESH_BENCH_TASKS=4000 bench/scale.sh
#
# One run per worker count K, each on a fresh pipeline (mock cluster, database, gateway,
# updater). MESH_BENCH_START=cold (the default): POST MESH_BENCH_TASKS sha256 tasks through the
# gateway with hey (every one must get 202, i.e. Kafka acknowledged it) and wait until the
# updater has stored all of them as queued; then start the K workers at once (the clock starts)
# and poll Postgres until all N tasks are `succeeded`. MESH_BENCH_START=warm: start the K
# workers first and wait until their consumer group holds every partition, then start the clock
# and POST the N tasks (the POSTs overlap the work).
#   tasks/s          N / (max(finished_at) - clock start). cold: worker process start,
#                    readiness, the consumer group join and the work, nothing subtracted.
#                    finished_at is the worker's clock (same host) stored by the updater, so
#                    the poll interval does not blur the figure.
#   steady tasks/s   N / (max(finished_at) - min(started_at)): from the first task a worker
#                    took to the last one finished (no process start, no group join).
# Rebalances while the clock runs (a worker assigned partitions more than once; cold: more
# than its first assignment) are counted: in-flight tasks of revoked partitions run twice
# (executions > N) and the group stops consuming until it re-forms.
# The ratio of K is its tasks/s over the tasks/s of K=1 measured in the same round. With
# MESH_BENCH_ROUNDS > 1 the worker counts run in alternating order (1 2 4, 4 2 1, ...) and the
# figures are medians (ratios: medians of the per-round ratios).
# Prints a table, writes bench/results/scale.json and draws bench/results/scale.svg (and
# scale.png when gnuplot has the pngcairo or png terminal) with bench/scale.gnuplot; warm
# runs write scale-warm.json, .svg and .png.
# Everything listens on 127.0.0.1; every process started here is stopped on exit (trap).
#
# Environment:
#   MESH_BENCH_BUILD_DIR   build with mesh and mesh-kafka-mock (default build/h-bench)
#   MESH_BENCH_SKIP_BUILD=1  use the binaries as they are (else: cmake --preset release + ninja)
#   MESH_BENCH_TASKS       tasks per run (default 3000)
#   MESH_BENCH_START       cold (default: backlog first, clock from the workers' spawn) or warm
#                          (workers first until their group holds every partition, clock from
#                          the first POST of the backlog)
#   MESH_BENCH_WORKERS     worker counts (default "1 2 4"; must include 1, the baseline)
#   MESH_BENCH_ROUNDS      rounds over the worker counts (default 1)
#   MESH_BENCH_SHA_ROUNDS  sha256 rounds per task (default 100000: about 9 ms of CPU here)
#   MESH_BENCH_PARTITIONS  partitions of every topic (default 12: divides 1, 2, 3, 4, 6 workers)
#   MESH_BENCH_WORKER_ARGS extra worker flags (default "--worker-max-inflight=16")
#   MESH_BENCH_RUN_TIMEOUT seconds one run may take to finish its tasks (default 900)
#   MESH_BENCH_LOG_LEVEL   workers' --log-level (default info: partition assignments are logged and
#                          counted; the gateway and the updater log at warn)
#   MESH_BENCH_KEEP=1      keep the logs (kept anyway on failure)
set -euo pipefail
script_dir=$(cd "$(dirname "$0")" && pwd)
cd "${MESH_BENCH_ROOT:-$(dirname "$0")/..}"
root=$(pwd)

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/scale.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

build_dir=${MESH_BENCH_BUILD_DIR:-$root/build/h-bench}
case "$build_dir" in /*) ;; *) build_dir=$root/$build_dir ;; esac
n_tasks=${MESH_BENCH_TASKS:-3000}
worker_counts=${MESH_BENCH_WORKERS:-1 2 4}
rounds=${MESH_BENCH_ROUNDS:-1}
sha_rounds=${MESH_BENCH_SHA_ROUNDS:-100000}
partitions=${MESH_BENCH_PARTITIONS:-12}
worker_args=${MESH_BENCH_WORKER_ARGS---worker-max-inflight=16}
run_timeout=${MESH_BENCH_RUN_TIMEOUT:-900}
start_mode=${MESH_BENCH_START:-cold}
# cold: bench/results/scale.{json,svg,png}; warm: bench/results/scale-warm.{json,svg,png}.
results=bench/results/scale
[ "$start_mode" = warm ] && results+=-warm
worker_log_level=${MESH_BENCH_LOG_LEVEL:-info}

# The helpers shared by the benchmarks; the inner part sources the copy beside its own copy.
bench_log_prefix=scale
source "$script_dir/lib.sh"

# ---------------------------------------------------------------------------------------------
# Outer part: check, build, run the inner part beside throwaway Postgres and Redis, then the
# table and the figure.
if [ -z "${MESH_BENCH_INNER:-}" ]; then
  for tool in hey jq psql curl gnuplot column; do
    command -v "$tool" >/dev/null || {
      echo "bench/scale.sh: '$tool' is missing (apt-get install -y hey jq postgresql-client curl gnuplot-nox bsdextrautils)" >&2
      exit 1
    }
  done
  case "${MESH_BENCH_START:-cold}" in cold|warm) ;; *) echo "bench/scale.sh: MESH_BENCH_START is cold or warm" >&2; exit 2 ;; esac
  [[ " $worker_counts " == *" 1 "* ]] || { echo "bench/scale.sh: MESH_BENCH_WORKERS must include 1 (the baseline)" >&2; exit 2; }
  for value in $worker_counts "$n_tasks" "$rounds" "$sha_rounds" "$partitions"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "bench/scale.sh: '$value' is not a positive integer" >&2; exit 2; }
  done
  if [ "${MESH_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "building mesh (release) in ${build_dir#$root/}"
    cmake --preset release -B "$build_dir" >/dev/null
    ninja -C "$build_dir" mesh mesh-kafka-mock >"$build_dir/bench-build.log" 2>&1 \
      || { tail -n 40 "$build_dir/bench-build.log" >&2; exit 1; }
  fi
  [ -x "$build_dir/mesh" ] && [ -x "$build_dir/mesh-kafka-mock" ] \
    || { echo "bench/scale.sh: no mesh and mesh-kafka-mock in $build_dir" >&2; exit 1; }

  work=$(mktemp -d /tmp/mesh-bench-scale.XXXXXX)
  chmod 755 "$work"
  mkdir -p "$work/logs" "$work/bin"
  # Copies of the binaries, this script and the plot script: a rebuild of the build directory
  # (or an edit of the scripts) while the benchmark runs must not change what runs.
  cp "$build_dir/mesh" "$build_dir/mesh-kafka-mock" "$work/bin/"
  cp "$script_dir/$(basename "$0")" "$work/scale.sh"
  cp "$script_dir/lib.sh" "$work/lib.sh"
  cp bench/scale.gnuplot "$work/scale.gnuplot"
  : >"$work/pids"
  servers_pid=
  # The inner part stops its own processes (its EXIT trap); this one also does it when it is
  # signalled itself, then lets scripts/with-test-servers.sh stop Postgres and Redis.
  finish() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$servers_pid" ] && kill -0 "$servers_pid" 2>/dev/null; then
      [ -s "$work/inner.pid" ] && kill -TERM "$(cat "$work/inner.pid")" 2>/dev/null
      wait "$servers_pid" 2>/dev/null
    fi
    # Whatever the inner part could not stop (it was killed hard): stop it here.
    local pid
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$work/pids"
    if [ "${MESH_BENCH_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
      log "logs kept in $work"
    else
      rm -rf "$work"
    fi
    exit "$status"
  }
  trap finish EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p bench/results
  rm -f "$results.json"
  MESH_BENCH_INNER=1 MESH_BENCH_WORK=$work MESH_BENCH_BUILD_DIR=$build_dir MESH_BENCH_ROOT=$root \
    scripts/with-test-servers.sh bash "$work/scale.sh" &
  servers_pid=$!
  wait "$servers_pid" || { servers_pid=; log "the benchmark failed (logs: $work/logs)"; exit 1; }
  servers_pid=

  json=$results.json
  # The table.
  jq -r '
    def r(x): (x * 100 | round / 100 | tostring);
    def i(x): (x | round | tostring);
    ["workers", "tasks/s", "ratio to 1", "ideal", "steady tasks/s", "ratio", "seconds", "executions", "worker CPU s", "busy cores", "rebalanced runs"],
    (.results[] | [(.workers | tostring), i(.tasks_per_s), "\(r(.ratio))x", "\(.workers)x",
       i(.steady_tasks_per_s), "\(r(.steady_ratio))x", r(.seconds), (.executions | tostring),
       r(.worker_cpu_seconds), r(.busy_cores), "\(.runs_rebalanced_while_timed)/\(.runs)"])
    | @tsv' "$json" | column -t -s $'\t'
  jq -r '"start \(.start): \(.tasks) sha256 tasks of \(.task.payload.rounds) rounds (\(.cpu_ms_per_task | . * 100 | round / 100) ms of worker CPU each, measured at 1 worker), \(.partitions) partitions, \(.cpus) CPUs, load average \(.meta.loadavg_before) before, \(.meta.loadavg_after) after; \(.rounds) round(s)"' "$json"

  # The figure: tasks/s (median) per worker count, with the ideal line K x tasks/s at K=1.
  jq -r '.results[] | "\(.workers) \(.tasks_per_s) \(.ideal_tasks_per_s) \(.steady_tasks_per_s)"' "$json" \
    >"$work/scale.dat"
  plot() {
    gnuplot -e "datafile='$work/scale.dat'; outfile='$2'; term='$1'; cores=$(jq .cpus "$json");
                base=$(jq '.results[] | select(.workers == 1) | .tasks_per_s' "$json");
                measured='$(jq -r 'if .start == "cold" then "measured: workers spawned to last task finished" else "measured: first POST of the backlog to last task finished" end' "$json")';
                subtitle='$(jq -r '"\(.start) start, \(.tasks) sha256 tasks (\(.task.payload.rounds) rounds each), \(.partitions) partitions, --cpu-threads=1 per worker, median of \(.rounds)"' "$json")'" \
      "$work/scale.gnuplot"
  }
  plot svg "$results.svg"
  figures=$results.svg
  terminals=$(gnuplot -e 'set terminal' 2>&1)
  if grep -qw pngcairo <<<"$terminals"; then
    plot pngcairo "$results.png" && figures+=" $results.png"
  elif grep -qw png <<<"$terminals"; then
    plot png "$results.png" && figures+=" $results.png"
  fi
  echo "results in $json; figure: $figures"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Inner part: MESH_TEST_PG_URL and MESH_TEST_REDIS_URL point at throwaway servers.
work=$MESH_BENCH_WORK
echo $$ >"$work/inner.pid"
mesh=$work/bin/mesh
kafka_mock=$work/bin/mesh-kafka-mock
pg_admin=$MESH_TEST_PG_URL
redis_url=$MESH_TEST_REDIS_URL
export PGCONNECT_TIMEOUT=10 PGOPTIONS="-c client_min_messages=warning"
export MESH_JWT_SECRET
MESH_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
read -r -a extra_worker_args <<<"$worker_args"
common_args=(--drain-timeout-ms=2000 --kafka-partitions="$partitions")
topics=(tasks.pending tasks.completed tasks.dlq market.trades market.ticker market.dlq messages messages.dlq)
body="{\"type\":\"sha256\",\"payload\":{\"data\":\"mesh scale bench\",\"rounds\":$sha_rounds}}"

cleanup() {
  local status=$?
  set +e
  local pid
  while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$work/pids"
  for _ in $(seq 1 100); do
    local alive=0
    while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$work/pids"
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$work/pids"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# alive NAME PID: fails loudly when a process of the pipeline is gone (its exit status, its log).
alive() {
  kill -0 "$2" 2>/dev/null && return 0
  local status=0
  wait "$2" 2>/dev/null || status=$?
  log "$1 (pid $2) exited with status $status$( [ "$status" -gt 128 ] && echo " (signal $((status - 128)))"):"
  tail -n 20 "$work/logs/$1.log" >&2
  return 1
}

# metric PORT NAME: sum of one sample family from /metrics.
metric() {
  curl -sf -m 10 "http://127.0.0.1:$1/metrics" \
    | awk -v name="$2" '{ split($1, parts, "{") } parts[1] == name { sum += $2 } END { printf "%.3f\n", sum }'
}

now_ms() { date +%s%3N; }

# The helpers below use run_once's locals (name, k, ports, wpids, gw_port, tok, bootstrap).

# post_backlog: N sha256 tasks POSTed with hey; every one must get 202 (Kafka acknowledged it).
post_backlog() {
  # hey sends n / c requests per connection: c must divide n.
  local conns accepted
  for conns in 32 25 20 16 10 8 5 4 2 1; do ((n_tasks % conns == 0)) && break; done
  timeout 600 hey -n "$n_tasks" -c "$conns" -m POST -T application/json -H "Authorization: Bearer $tok" \
    -d "$body" "http://127.0.0.1:$gw_port/v1/tasks" >"$work/logs/hey-$name.txt"
  accepted=$(awk '$1 == "[202]" { print $2 }' "$work/logs/hey-$name.txt")
  [ "${accepted:-0}" = "$n_tasks" ] \
    || { log "only ${accepted:-0} of $n_tasks POSTs got 202:"; sed -n '/Status code/,$p' "$work/logs/hey-$name.txt" >&2; return 1; }
}

# spawn_workers: K worker processes at once.
spawn_workers() {
  local i
  for ((i = 0; i < k; i++)); do
    start "worker$i-$name" "$mesh" --role=worker --listen="127.0.0.1:${ports[$i]}" --kafka-brokers="$bootstrap" \
      --threads=1 --cpu-threads=1 --node-name="scale-worker-$i" --log-level="$worker_log_level" \
      "${common_args[@]}" "${extra_worker_args[@]}"
    wpids+=("$started_pid")
  done
}

group_line='"msg":"partitions (assigned|revoked)","group":"mesh-worker"'
# assignment_count I: how many times worker I logged an assignment.
assignment_count() {
  grep -cF '"msg":"partitions assigned","group":"mesh-worker"' "$work/logs/worker$1-$name.log" || true
}

# note_ready: records when each worker first answers 200 on /readyz (ms after the spawn).
note_ready() {
  local i
  for ((i = 0; i < k; i++)); do
    if [ "${ready_ms[$i]}" = null ] && ready "${ports[$i]}"; then ready_ms[i]=$(( $(now_ms) - spawned )); fi
  done
}

# wait_group_formed: until every worker's last group event is an assignment and together they
# hold every partition (120 s at most).
wait_group_formed() {
  local deadline=$((SECONDS + 120)) i last held
  while [ "$SECONDS" -lt "$deadline" ]; do
    held=0
    note_ready
    for ((i = 0; i < k; i++)); do
      alive "worker$i-$name" "${wpids[$i]}" || return 1
      last=$(grep -E "$group_line" "$work/logs/worker$i-$name.log" | tail -n 1 || true)
      [[ "$last" == *'"partitions assigned"'* ]] || { held=-1; break; }
      held=$((held + $(grep -o 'tasks\.pending/[0-9]*' <<<"$last" | wc -l)))
    done
    [ "$held" = "$partitions" ] && return 0
    sleep 0.2
  done
  log "the $k workers did not form a group holding all $partitions partitions within 120 s"
  return 1
}

# run_once ROUND K: one measurement on a fresh pipeline; appends one JSON line to runs.jsonl.
run_once() {
  local round=$1 k=$2 name="r$1-k$2"
  local pids=() names=() db pg_url gw_port up_port bootstrap=
  log "round $round, $k worker(s): fresh pipeline"
  local topic_args=() topic
  for topic in "${topics[@]}"; do topic_args+=(--topic "$topic:$partitions"); done
  start "kafka-$name" "$kafka_mock" --brokers 3 "${topic_args[@]}"
  local kafka_pid=$started_pid
  for _ in $(seq 1 300); do
    bootstrap=$(sed -n 's/^bootstrap=//p' "$work/logs/kafka-$name.log")
    [ -n "$bootstrap" ] && break
    kill -0 "$kafka_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$bootstrap" ] || { log "mesh-kafka-mock printed no bootstrap line:"; cat "$work/logs/kafka-$name.log" >&2; return 1; }

  db="scale_${round}_$k"
  psql_at "$pg_admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  pg_url="${pg_admin%/*}/$db"
  local deps=(--kafka-brokers="$bootstrap" --pg-url="$pg_url" "${common_args[@]}")

  gw_port=$(pick_port)
  start "gateway-$name" "$mesh" --role=gateway --listen="127.0.0.1:$gw_port" "${deps[@]}" --log-level=warn \
    --redis-url="$redis_url" --password-ops-limit=1 --password-mem-kib=8
  pids+=("$started_pid"); names+=("gateway-$name")
  wait_ready "$gw_port" "$started_pid" "gateway-$name"
  up_port=$(pick_port)
  start "updater-$name" "$mesh" --role=updater --listen="127.0.0.1:$up_port" "${deps[@]}" --log-level=warn
  pids+=("$started_pid"); names+=("updater-$name")
  wait_ready "$up_port" "$started_pid" "updater-$name"

  local user tok
  user="scale_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  curl -sf -m 30 -X POST "http://127.0.0.1:$gw_port/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"scale-bench-password\"}" >/dev/null
  tok=$(curl -sf -m 30 -X POST "http://127.0.0.1:$gw_port/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"scale-bench-password\"}" | jq -er .access_token)

  local ports=() wpids=() ready_ms=() i t0 spawned load_before post_ms=null deadline
  for ((i = 0; i < k; i++)); do ports+=("$(pick_port)"); ready_ms+=(null); done
  if [ "$start_mode" = cold ]; then
    # The backlog first, all of it stored as queued; the clock starts with the workers' spawn.
    post_backlog || return 1
    local stored=0
    deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ]; do
      alive "kafka-$name" "$kafka_pid" && alive "${names[1]}" "${pids[1]}" || return 1
      stored=$(psql_at "$pg_url" -c "SELECT count(*) FROM tasks")
      [ "$stored" = "$n_tasks" ] && break
      sleep 0.2
    done
    [ "$stored" = "$n_tasks" ] || { log "the updater stored $stored of $n_tasks queued tasks within 120 s"; return 1; }
    load_before=$(loadavg)
    t0=$(now_ms)
    spawned=$t0
    spawn_workers
  else
    # warm: the workers first, until the group has formed (every partition assigned, no
    # rebalance pending); the clock starts with the first POST of the backlog.
    spawned=$(now_ms)
    spawn_workers
    wait_group_formed || return 1
    load_before=$(loadavg)
    t0=$(now_ms)
    post_backlog || return 1
    post_ms=$(( $(now_ms) - t0 ))
  fi
  local assignments_at_start=()
  for ((i = 0; i < k; i++)); do assignments_at_start+=("$(assignment_count "$i")"); done

  local done_count=0 failed=0 counts
  deadline=$((SECONDS + run_timeout))
  while :; do
    alive "kafka-$name" "$kafka_pid" && alive "${names[1]}" "${pids[1]}" || return 1
    for ((i = 0; i < k; i++)); do alive "worker$i-$name" "${wpids[$i]}" || return 1; done
    note_ready
    counts=$(psql_at "$pg_url" -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FILTER (WHERE status = 'failed') FROM tasks")
    read -r done_count failed <<<"$counts"
    [ "$failed" = 0 ] || { log "$failed tasks failed"; return 1; }
    [ "$done_count" = "$n_tasks" ] && [[ " ${ready_ms[*]} " != *" null "* ]] && break
    [ "$SECONDS" -lt "$deadline" ] || { log "$done_count of $n_tasks succeeded within ${run_timeout}s"; return 1; }
    sleep 0.2
  done
  local times first_start last_finish
  times=$(psql_at "$pg_url" -c "SELECT floor(extract(epoch FROM min(started_at)) * 1000)::bigint || ' ' || floor(extract(epoch FROM max(finished_at)) * 1000)::bigint FROM tasks")
  read -r first_start last_finish <<<"$times"
  local executions=() cpu=()
  for ((i = 0; i < k; i++)); do
    executions+=("$(metric "${ports[$i]}" mesh_worker_tasks_total)")
    cpu+=("$(metric "${ports[$i]}" process_cpu_seconds_total)")
  done
  local load_after
  load_after=$(loadavg)
  # Partition assignments before the workers stop (a stop revokes, it does not assign).
  local assignments=()
  for ((i = 0; i < k; i++)); do
    assignments+=("$(( $(assignment_count "$i") - assignments_at_start[i] ))")
  done
  for ((i = 0; i < k; i++)); do stop "${wpids[$i]}"; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[$i]}"; done
  stop "$kafka_pid"

  jq -nc --argjson round "$round" --argjson k "$k" --argjson n "$n_tasks" --argjson t0 "$t0" \
    --argjson first "$first_start" --argjson last "$last_finish" \
    --argjson ready "[$(IFS=,; echo "${ready_ms[*]}")]" \
    --argjson executions "[$(IFS=,; echo "${executions[*]}")]" \
    --argjson cpu "[$(IFS=,; echo "${cpu[*]}")]" \
    --argjson assignments "[$(IFS=,; echo "${assignments[*]}")]" \
    --argjson before "[$(IFS=,; echo "${assignments_at_start[*]}")]" \
    --arg mode "$start_mode" --argjson post_ms "$post_ms" --argjson spawned "$spawned" \
    --arg load_before "$load_before" --arg load_after "$load_after" '
    (($last - $t0) / 1000) as $seconds | (($last - $first) / 1000) as $steady |
    {round: $round, workers: $k, tasks: $n,
     seconds: $seconds, tasks_per_s: ($n / $seconds),
     first_task_started_s: (($first - $t0) / 1000), steady_seconds: $steady,
     steady_tasks_per_s: ($n / $steady),
     workers_ready_ms: $ready,
     executions_per_worker: ($executions | map(round)), executions: ($executions | add | round),
     start: $mode, backlog_post_s: (if $post_ms == null then null else $post_ms / 1000 end),
     workers_spawned_before_clock_s: (($t0 - $spawned) / 1000),
     partition_assignments_per_worker: ($before | to_entries | map(.value + $assignments[.key])),
     partition_assignments_after_clock_start: $assignments,
     rebalanced_while_timed: ($assignments | any(. > (if $mode == "cold" then 1 else 0 end))),
     worker_cpu_seconds_per_worker: $cpu, worker_cpu_seconds: ($cpu | add),
     busy_cores: (($cpu | add) / $seconds),
     loadavg_before: $load_before, loadavg_after: $load_after}' | tee -a "$work/runs.jsonl" \
    | jq -r '"round \(.round), \(.workers) worker(s): \(.tasks) tasks in \(.seconds)s = \(.tasks_per_s | round) tasks/s (steady \(.steady_tasks_per_s | round)/s), executions \(.executions_per_worker), assignments \(.partition_assignments_per_worker), worker CPU \(.worker_cpu_seconds | . * 100 | round / 100)s, ready after \(.workers_ready_ms) ms"' >&2
}

load_first=$(loadavg)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "start $start_mode: $n_tasks sha256 tasks x $sha_rounds rounds, workers: $worker_counts, $rounds round(s), $partitions partitions; load average $load_first on $(nproc) CPUs"
: >"$work/runs.jsonl"
read -r -a counts_forward <<<"$worker_counts"
for ((round = 1; round <= rounds; round++)); do
  order=("${counts_forward[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((j = ${#counts_forward[@]} - 1; j >= 0; j--)); do order+=("${counts_forward[$j]}"); done
  fi
  for k in "${order[@]}"; do run_once "$round" "$k"; done
done

head_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -s --argjson n "$n_tasks" --argjson sha "$sha_rounds" --argjson partitions "$partitions" \
  --argjson rounds "$rounds" --argjson cpus "$(nproc)" --arg worker_args "$worker_args" \
  --arg started "$started_at" --arg rev "$head_rev" --arg build "${build_dir#$root/}" \
  --arg load_before "$load_first" --arg load_after "$(loadavg)" --arg mode "$start_mode" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  . as $runs
  | ($runs | map(select(.workers == 1)) | map({key: (.round | tostring), value: .}) | from_entries) as $base
  | ($runs | map(select(.workers == 1) | .tasks_per_s) | median) as $base_rate
  | ($runs | map(select(.workers == 1) | .worker_cpu_seconds / .executions * 1000) | median) as $cpu_ms
  | {benchmark: "scale",
     start: $mode,
     method: (if $mode == "cold" then "per worker count: a fresh mesh-kafka-mock (3 brokers), database, gateway and updater; N tasks POSTed (all 202) and stored as queued first; then K worker processes started at once; the clock starts at their spawn. tasks_per_s = N / (max(finished_at) - clock start); steady_tasks_per_s = N / (max(finished_at) - min(started_at)); ratio = tasks_per_s(K) / tasks_per_s(1) of the same round, median over rounds."
              else "per worker count: a fresh mesh-kafka-mock (3 brokers), database, gateway and updater; K worker processes started first, until their group holds every partition; the clock starts at the first of N POSTs (all 202). tasks_per_s = N / (max(finished_at) - clock start); steady_tasks_per_s = N / (max(finished_at) - min(started_at)); ratio = tasks_per_s(K) / tasks_per_s(1) of the same round, median over rounds." end),
     tasks: $n, task: {type: "sha256", payload: {data: "mesh scale bench", rounds: $sha}},
     cpu_ms_per_task: $cpu_ms, partitions: $partitions, rounds: $rounds, cpus: $cpus, cpu: $cpu,
     worker: "mesh --role=worker --threads=1 --cpu-threads=1 \($worker_args)",
     results: ($runs | group_by(.workers) | map(
       . as $group | $group[0].workers as $k |
       {workers: $k,
        tasks_per_s: ($group | map(.tasks_per_s) | median),
        ratio: ($group | map(.tasks_per_s / $base[.round | tostring].tasks_per_s) | median),
        ideal_tasks_per_s: ($k * $base_rate),
        steady_tasks_per_s: ($group | map(.steady_tasks_per_s) | median),
        steady_ratio: ($group | map(.steady_tasks_per_s / $base[.round | tostring].steady_tasks_per_s) | median),
        seconds: ($group | map(.seconds) | median),
        first_task_started_s: ($group | map(.first_task_started_s) | median),
        executions: ($group | map(.executions) | median),
        worker_cpu_seconds: ($group | map(.worker_cpu_seconds) | median),
        busy_cores: ($group | map(.busy_cores) | median),
        runs: ($group | length),
        runs_rebalanced_while_timed: ($group | map(select(.rebalanced_while_timed)) | length)})),
     runs: $runs,
     meta: {started: $started, git: $rev, build: $build, loadavg_before: $load_before,
            loadavg_after: $load_after}}' "$work/runs.jsonl" >"$root/$results.json"
