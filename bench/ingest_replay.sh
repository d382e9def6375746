#!/usr/bin/env bash
# Ingester benchmark: replayed feed messages parsed and produced per second, single io thread.
#
#   bench/ingest_replay.sh [MESSAGES]      (default 200000)
#
# Builds the ingest module (release, build/h-ingest unless MESH_BENCH_BUILD_DIR is set), compiles
# bench/ingest_replay.cpp against it with g++, generates a JSONL feed of MESSAGES matches and
# tickers, and measures in one run: Boost.JSON parsing the lines (baseline), the feed parser
# alone, a bare librdkafka producer sending the same records to an in-process mock cluster
# (baseline), and the Ingester replaying the file at speed 0 until Kafka acknowledged every
# record. Prints the figures and ratios; writes bench/results/ingest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
messages=${1:-200000}
build_dir=${MESH_BENCH_BUILD_DIR:-$root/build/h-ingest}

if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESH_TESTS=OFF >/dev/null
fi
cmake --build "$build_dir" --target mesh_ingest -j2 >"$build_dir/ingest-bench-build.log" 2>&1 \
  || { tail -n 40 "$build_dir/ingest-bench-build.log" >&2; exit 1; }

tool=$build_dir/bench-tools/ingest_replay
mkdir -p "$(dirname "$tool")" bench/results
libs=("$build_dir"/libmesh_{ingest,config,http,market,kafka,metrics,core}.a)
if [ ! -x "$tool" ] || [ bench/ingest_replay.cpp -nt "$tool" ] || [ bench/ingest_replay.sh -nt "$tool" ] || [ "${libs[0]}" -nt "$tool" ]; then
  g++ -std=c++20 -O2 -pthread -Iinclude \
    -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION -DBOOST_ASIO_NO_DEPRECATED \
    -DBOOST_JSON_NO_LIB -DBOOST_URL_NO_LIB -DBOOST_SYSTEM_DYN_LINK -DBOOST_SYSTEM_NO_LIB \
    -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB -DFMT_SHARED -D_FILE_OFFSET_BITS=64 \
    -o "$tool" bench/ingest_replay.cpp "${libs[@]}" \
    -lrdkafka -lprometheus-cpp-core -lssl -lcrypto -lboost_system -lspdlog -lfmt
fi

work=$(mktemp -d /tmp/mesh-ingest-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$tool" "$work/feed.jsonl" "$messages" bench/results/ingest.json
echo "wrote bench/results/ingest.json"
