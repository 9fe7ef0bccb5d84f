#!/usr/bin/env bash
# Two cask builds side by side on the same redis-benchmark tests, alternating, each run on
# a fresh `cask serve --sync interval` (so neither inherits the other's data or compaction).
#
#   cp target/release/cask /tmp/cask-before   # build the other commit, then:
#   ROUNDS=3 P=16 bench/ab-builds.sh /tmp/cask-before target/release/cask
#
# Env: TESTS (redis-benchmark -t list, default lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,
# zpopmin), P (pipeline depth, default 16), N (requests per test, default 400000), ROUNDS
# (default 3), PORT (default 7493). Prints requests/s per test, one line per build and round.
set -euo pipefail
a=${1:?first cask binary}
b=${2:?second cask binary}
tests=${TESTS:-lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin}
p=${P:-16}
n=${N:-400000}
rounds=${ROUNDS:-3}
port=${PORT:-7493}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

run() { # binary -> one line of "TEST: req/s"
    rm -rf "$tmp/data"
    "$1" --dir "$tmp/data" serve --port "$port" --http-port 0 --sync interval 2>"$tmp/log" &
    pid=$!
    for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" PING >/dev/null || { echo "server did not start: $(cat "$tmp/log")" >&2; exit 1; }
    redis-benchmark -p "$port" -c 50 -n "$n" -r 100000 -P "$p" -q -t "$tests" 2>/dev/null \
        | tr '\r' '\n' | grep 'requests per second' \
        | sed -E 's/ requests per second.*//; s/: +/ /' | awk '{ printf "%s %.0f  ", $1, $2 }'
    redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    wait "$pid" 2>/dev/null || true
    pid=
}
for r in $(seq 1 "$rounds"); do
    for bin in "$a" "$b"; do
        echo "round $r $(basename "$bin"): $(run "$bin")"
    done
done
