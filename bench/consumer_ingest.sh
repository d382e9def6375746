#!/usr/bin/env bash
# Consumer ingest: trades persisted per second by the consumer's write path (marketdb::Store:
# COPY of each batch into a temporary table, de-duplication on (product, trade_id), candles_1m
# and markets, one transaction per batch) against `psql \copy` of the same rows into a table
# shaped like trades (same columns, same primary key), measured in the same run on a throwaway
# Postgres (scripts/with-test-servers.sh). Rounds alternate the two; the medians and their ratio
# are printed and written to bench/results/consumer.json. Target (issue 3): ratio >= 0.8.
#
#   bench/consumer_ingest.sh
#   MESH_BENCH_TRADES=200000 MESH_BENCH_BATCH=5000 MESH_BENCH_ROUNDS=3 \
#   MESH_BENCH_BUILD_DIR=build/release bench/consumer_ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

trades=${MESH_BENCH_TRADES:-200000}
batch=${MESH_BENCH_BATCH:-5000}
rounds=${MESH_BENCH_ROUNDS:-3}
build=${MESH_BENCH_BUILD_DIR:-build/release}

for tool in psql g++ cmake jq; do
  command -v "$tool" >/dev/null || { echo "consumer_ingest: '$tool' is missing" >&2; exit 1; }
done

if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESH_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target mesh_marketdb mesh_schema -j 2 >/dev/null

mkdir -p "$build/bench"
tool="$build/bench/consumer_ingest"
# The flags every mesh target is built with (see CMakeLists.txt: mesh_flags).
g++ -std=c++20 -O2 -pthread -Iinclude -isystem /usr/include/postgresql \
  -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION -DBOOST_ASIO_NO_DEPRECATED \
  -DBOOST_JSON_NO_LIB -DBOOST_URL_NO_LIB -DBOOST_SYSTEM_DYN_LINK -DBOOST_SYSTEM_NO_LIB \
  -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB -DFMT_SHARED \
  -D_FILE_OFFSET_BITS=64 -o "$tool" bench/consumer_ingest.cpp \
  "$build/libmesh_marketdb.a" "$build/libmesh_schema.a" "$build/libmesh_pg.a" "$build/libmesh_market.a" \
  "$build/libmesh_metrics.a" "$build/libmesh_core.a" \
  -lprometheus-cpp-core -lboost_system -lspdlog -lfmt -lpq

work=$(mktemp -d /tmp/mesh-bench-consumer.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p bench/results

export trades batch rounds tool work
scripts/with-test-servers.sh bash -c '
set -euo pipefail
db="${MESH_TEST_PG_URL%/*}/bench_consumer"
psql -qX "$MESH_TEST_PG_URL" -c "CREATE DATABASE bench_consumer" >/dev/null
# A first, untimed round: migrations, the rows file for the baseline, warm caches.
"$tool" --pg-url "$db" --migrate --trades "$trades" --batch "$batch" --tsv "$work/trades.tsv" \
  >"$work/warmup.json"
psql -qX "$db" -c "CREATE TABLE copy_trades (LIKE trades INCLUDING ALL)" >/dev/null
: >"$work/rounds.jsonl"
for round in $(seq 1 "$rounds"); do
  store=$("$tool" --pg-url "$db" --trades "$trades" --batch "$batch")
  psql -qX "$db" -c "TRUNCATE copy_trades" >/dev/null
  copy_ms=$(psql -qX "$db" -c "\\timing on" -c "\\copy copy_trades FROM '"'"'$work/trades.tsv'"'"'" \
    | sed -n "s/^Time: \([0-9.]*\) ms.*/\1/p" | tail -n 1)
  copied=$(psql -qXtA "$db" -c "SELECT count(*) FROM copy_trades")
  [ "$copied" = "$trades" ] || { echo "consumer_ingest: psql copied $copied of $trades rows" >&2; exit 1; }
  echo "$store" | jq -c --argjson copy_ms "$copy_ms" --argjson n "$trades" \
    "{round: $round, store_per_second: .per_second, store_seconds: .seconds,
      copy_per_second: (\$n / (\$copy_ms / 1000) | floor), copy_seconds: (\$copy_ms / 1000)}" \
    >>"$work/rounds.jsonl"
  tail -n 1 "$work/rounds.jsonl" >&2
done
'

jq -s --argjson trades "$trades" --argjson batch "$batch" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  (map(.store_per_second) | median) as $store
  | (map(.copy_per_second) | median) as $copy
  | {benchmark: "consumer_ingest", trades: $trades, batch: $batch,
     store_per_second: $store, psql_copy_per_second: $copy,
     ratio: (($store / $copy * 100 | round) / 100), target_ratio: 0.8,
     load_average: $load, rounds: .}' --arg load "$(cut -d" " -f1-3 /proc/loadavg)" \
  "$work/rounds.jsonl" | tee bench/results/consumer.json
