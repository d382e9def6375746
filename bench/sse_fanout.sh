#!/usr/bin/env bash
# Stream fan-out benchmark (issue 3): 10,000 concurrent SSE clients on one stream process.
#
# Builds mesh_sse (RelWithDebInfo, build/h-sse unless MESH_SSE_BUILD says otherwise), compiles
# bench/sse_server.cpp (a Hub behind mesh's HTTP server, or a bare Asio loop as the baseline)
# and bench/sse_load.cpp (an epoll client) with g++, and runs three rounds on loopback:
#   bare  the baseline: the same frames to the same number of sockets, no locks or strands
#   hub   sse::Hub at the same publish rate
#   slow  sse::Hub with SSE_SLOW of SSE_SLOW_CLIENTS clients never reading (2 KiB receive
#         buffer), at a rate the others can take, so only the slow ones may lose events
# Server on CPU 0, clients on CPU 1 (MESH_BENCH_PIN=0 turns pinning off). Prints a summary and
# writes bench/results/sse.json.
#
# Figures: events/s delivered per core = events written to clients / server CPU seconds (user +
# system, getrusage) over the publish window; RSS per connection = (RSS with the clients
# connected - RSS idle) / clients. Targets: >= 200,000 events/s per core, < 16 KiB/connection.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${MESH_SSE_BUILD:-${MESH_BENCH_BUILD_DIR:-build/h-sse}}
CLIENTS=${SSE_CLIENTS:-10000}
RATE=${SSE_RATE:-400}            # events/s published in the throughput rounds
SECS=${SSE_SECONDS:-10}
SLOW_CLIENTS=${SSE_SLOW_CLIENTS:-1000}
SLOW=${SSE_SLOW:-100}
SLOW_RATE=${SSE_SLOW_RATE:-40}   # events/s in the slow-client round (fast clients keep up)
SLOW_SECS=${SSE_SLOW_SECONDS:-45}

ulimit -n 20000 || { echo "sse_fanout: cannot raise the open file limit to 20000" >&2; exit 1; }
if [ "$(ulimit -n)" -lt $((CLIENTS + 100)) ]; then
  echo "sse_fanout: open file limit $(ulimit -n) is too low for $CLIENTS clients" >&2
  exit 1
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" --target mesh_sse -j2 >/dev/null

FLAGS=(-O2 -g -DNDEBUG -std=c++20 -Iinclude -DBOOST_ASIO_NO_DEPRECATED
  -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION -DBOOST_JSON_NO_LIB
  -DBOOST_URL_NO_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB -DFMT_SHARED)
LIBS=("$BUILD/libmesh_sse.a" "$BUILD/libmesh_http.a" "$BUILD/libmesh_market.a"
  "$BUILD/libmesh_metrics.a" "$BUILD/libmesh_core.a" -lprometheus-cpp-core -lboost_system
  -lspdlog -lfmt -pthread)
if [ ! "$BUILD/sse_bench_server" -nt bench/sse_server.cpp ] ||
   [ ! "$BUILD/sse_bench_server" -nt "$BUILD/libmesh_sse.a" ]; then
  g++ "${FLAGS[@]}" bench/sse_server.cpp "${LIBS[@]}" -o "$BUILD/sse_bench_server"
fi
if [ ! "$BUILD/sse_load" -nt bench/sse_load.cpp ]; then
  g++ -O2 -std=c++20 bench/sse_load.cpp -o "$BUILD/sse_load"
fi

PIN_SERVER=()
PIN_LOAD=()
if [ "${MESH_BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_LOAD=(taskset -c 1)
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# run NAME MODE CLIENTS SLOW RATE SECONDS
run() {
  local name=$1 mode=$2 clients=$3 slow=$4 rate=$5 secs=$6
  "${PIN_SERVER[@]}" timeout 900 "$BUILD/sse_bench_server" --mode="$mode" --clients="$clients" \
    --rate="$rate" --seconds="$secs" >"$WORK/$name.server" 2>"$WORK/$name.server.err" &
  local server=$!
  local port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/^PORT //p' "$WORK/$name.server")
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "sse_fanout: the $name server did not start" >&2
    cat "$WORK/$name.server.err" >&2
    kill "$server" 2>/dev/null || true
    exit 1
  fi
  "${PIN_LOAD[@]}" timeout 900 "$BUILD/sse_load" --port="$port" --clients="$clients" \
    --slow="$slow" --timeout=$((secs + 400)) >"$WORK/$name.load" 2>"$WORK/$name.load.err" &
  local load=$!
  wait "$server" || { echo "sse_fanout: the $name server failed" >&2; cat "$WORK/$name.server.err" >&2; exit 1; }
  wait "$load" || { echo "sse_fanout: the $name clients failed" >&2; cat "$WORK/$name.load.err" >&2; exit 1; }
  grep '^{' "$WORK/$name.server" >"$WORK/$name.server.json"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "sse_fanout: $CLIENTS clients, $RATE events/s for ${SECS}s (bare, then hub); then $SLOW slow" \
  "of $SLOW_CLIENTS clients at $SLOW_RATE events/s for ${SLOW_SECS}s"
run bare bare "$CLIENTS" 0 "$RATE" "$SECS"
run hub hub "$CLIENTS" 0 "$RATE" "$SECS"
run slow hub "$SLOW_CLIENTS" "$SLOW" "$SLOW_RATE" "$SLOW_SECS"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p bench/results
python3 - "$WORK" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, sys, datetime
work, load_before, load_after = sys.argv[1:4]
def read(name):
    server = json.load(open(f"{work}/{name}.server.json"))
    clients = json.loads(open(f"{work}/{name}.load").read().strip().splitlines()[-1])
    return {"server": server, "clients": clients}
bare, hub, slow = read("bare"), read("hub"), read("slow")
per_core = hub["server"]["events_per_cpu_second"]
bare_per_core = bare["server"]["events_per_cpu_second"]
rss = hub["server"]["rss_per_connection_bytes"]
fast_all = slow["clients"]["fast_frames_min"] == slow["server"]["published"]
result = {
    "benchmark": "sse_fanout",
    "date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    "loadavg_before": load_before, "loadavg_after": load_after,
    "bare": bare, "hub": hub, "slow": slow,
    "events_per_cpu_second": per_core,
    "baseline_events_per_cpu_second": bare_per_core,
    "ratio_to_baseline": round(per_core / bare_per_core, 3) if bare_per_core else None,
    "rss_per_connection_bytes": rss,
    "slow_round": {"clients": slow["clients"]["clients"], "slow_clients": slow["clients"]["slow"],
                   "published": slow["server"]["published"],
                   "dropped": slow["server"]["dropped"],
                   "fast_clients_got_everything": fast_all,
                   "fast_frames_min": slow["clients"]["fast_frames_min"],
                   "max_queue_length": slow["server"]["max_queue_length"]},
    "targets": {"events_per_cpu_second": 200000, "rss_per_connection_bytes": 16384},
    "meets_targets": per_core >= 200000 and rss < 16384,
}
json.dump(result, open("bench/results/sse.json", "w"), indent=2)
print(f"events/s delivered per core: hub {per_core:,.0f}, bare asio {bare_per_core:,.0f}, "
      f"ratio {result['ratio_to_baseline']} (target >= 200,000)")
print(f"RSS per connection: hub {rss:,.0f} B (loaded {hub['server']['rss_per_connection_loaded_bytes']:,.0f} B), "
      f"bare {bare['server']['rss_per_connection_bytes']:,.0f} B (target < 16,384)")
print(f"slow round: {slow['clients']['slow']} slow of {slow['clients']['clients']} clients, "
      f"{slow['server']['published']} events, "
      f"{slow['server']['dropped']} dropped, fast clients got everything: {fast_all}, "
      f"max queue {slow['server']['max_queue_length']}")
print(f"load average before {load_before}, after {load_after}; bench/results/sse.json written")
PY
