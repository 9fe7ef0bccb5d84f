#!/usr/bin/env bash
# The HTTP API beside the RESP server, on the same data, in one run: redis-benchmark SET/GET
# of 100-byte values (which also fills key:000000000000..key:000000099999), then wrk PUT and
# GET of 100-byte values on the same keys over HTTP.
#
#   cargo build --release -p cask
#   bench/http-compare.sh [path/to/cask]        (default target/release/cask)
#   SYNC=always bench/http-compare.sh           (default interval)
#
# Needs redis-benchmark (redis-tools) and wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/cask}
sync=${SYNC:-interval}
duration=${DURATION:-10s}
[ -x "$bin" ] || { echo "http-compare: build first: cargo build --release -p cask" >&2; exit 1; }
command -v wrk >/dev/null || { echo "http-compare: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "http-compare: redis-benchmark not found" >&2; exit 1; }

dir=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)
CASK_LOG=warn "$bin" --dir "$dir/data" serve --port "$port" --http-port "$http_port" --sync "$sync" 2>"$dir/log" &
pid=$!
for _ in $(seq 1 100); do grep -q '^cask: listening on' "$dir/log" && break; sleep 0.1; done

echo "== cask --sync $sync, $(nproc) cores, $(date -u +%FT%TZ)"
echo "-- RESP: redis-benchmark -p $port -t set,get -d 100 -c 50 -n 200000 -r 100000 -q"
redis-benchmark -p "$port" -t set,get -d 100 -c 50 -n 200000 -r 100000 -q | tr '\r' '\n' | grep 'requests per second'
url="http://127.0.0.1:$http_port"
for op in put get; do
    echo "-- HTTP: wrk -t2 -c50 -d$duration -s bench/wrk-$op.lua $url"
    wrk -t2 -c50 -d"$duration" --latency -s "bench/wrk-$op.lua" "$url"
done
