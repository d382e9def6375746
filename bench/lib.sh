# Shell helpers shared by the benchmark scripts (bench/run.sh, scale.sh, overview.sh,
# ratelimit.sh). Sourced, never run. The process helpers expect $work with a logs/ directory and
# a pids file (one pid per line, stopped by the script's cleanup).
#   bench_log_prefix   prefix of log lines (default "bench")

log() { printf '%s: %s\n' "${bench_log_prefix:-bench}" "$*" >&2; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
declare -A used_ports=()
# Listening ports come from below the ephemeral range, so no client socket can hold them.
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$ephemeral_low" -gt 12000 ] || ephemeral_low=32768
# pick_port: a free loopback port no earlier call of this script returned.
pick_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    if [ -z "${used_ports[$port]:-}" ] && port_is_free "$port"; then
      used_ports[$port]=1
      echo "$port"
      return 0
    fi
  done
  log "no free port"
  return 1
}

# start NAME CMD...: runs CMD in the background, logging to logs/NAME.log; sets $started_pid.
start() {
  local name=$1
  shift
  "$@" >"$work/logs/$name.log" 2>&1 &
  started_pid=$!
  echo "$started_pid" >>"$work/pids"
}

# stop PID: SIGTERM, then SIGKILL after 10 s; forgets the pid (no later kill hits a reused one).
stop() {
  local pid=$1
  sed -i "/^$pid\$/d" "$work/pids"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.05
  done
  log "pid $pid did not stop within 10 s of SIGTERM: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

ready() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }

# wait_ready PORT PID NAME [SECONDS]: until GET /readyz answers 200 (60 s by default).
wait_ready() {
  local port=$1 pid=$2 name=$3 seconds=${4:-60}
  local deadline=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before it was ready:"
      tail -n 20 "$work/logs/$name.log" >&2
      return 1
    fi
    ready "$port" && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on /readyz within ${seconds}s:"
  tail -n 20 "$work/logs/$name.log" >&2
  return 1
}

psql_at() { timeout 300 psql "$1" -qAtX -v ON_ERROR_STOP=1 "${@:2}"; }

# wrk_json FILE: the figures of one wrk summary (run with --latency) as JSON.
wrk_json() {
  awk '
    function to_ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { requests = $1 }
    /^ +50% / { p50 = to_ms($2) }
    /^ +90% / { p90 = to_ms($2) }
    /^ +99% / { p99 = to_ms($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); socket = $4 + $6 + $8 + $10 }
    END {
      if (rps == "") exit 1
      printf "{\"rps\":%s,\"requests\":%d,\"non2xx\":%d,\"socket_errors\":%d,", rps, requests, non2xx, socket
      printf "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f}}\n", p50, p90, p99
    }' "$1"
}
