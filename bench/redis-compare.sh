#!/usr/bin/env bash
# Side-by-side redis-benchmark of `cask serve` and redis-server, started in temp dirs on
# their own ports, in the same run. Prints one line per (server, durability, pipeline, test).
#
#   cargo build --release -p cask
#   REPEAT=2 bench/redis-compare.sh [target/release/cask]
#
# Runs every pair REPEAT times (default 2), alternating cask and redis-server, prints each
# measurement line, then a markdown table per durability level with cask/redis ratios per run
# (above 1: cask is faster).
#
# Pairs compared:
#   cask --sync interval   vs  redis-server --appendonly yes --appendfsync everysec
#   cask --sync always     vs  redis-server --appendonly yes --appendfsync always
# Each with: redis-benchmark -t $TESTS -c 50 -n 200000 -r 100000 -P {1,16} -q
#
# TESTS (default set,get,incr) takes any redis-benchmark -t list, e.g.
#   TESTS=lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset
# MODES (default "interval always") picks the durability pairs.
set -euo pipefail
bin=${1:-target/release/cask}
n=${N:-200000}
repeat=${REPEAT:-2}
tests=${TESTS:-set,get,incr}
modes=${MODES:-interval always}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    exit 1
}

run() { # label port
    for p in 1 16; do
        # Names like "LRANGE_100 (first 100 elements)" keep their first word; the LPUSH run
        # that only fills the list for LRANGE is left out.
        redis-benchmark -p "$2" -t "$tests" -c 50 -n "$n" -r 100000 -P "$p" -q 2>/dev/null \
            | tr '\r' '\n' | grep -E '^[A-Z_0-9]+( \([^)]*\))?: [0-9.]+ requests' \
            | grep -v 'needed to benchmark' \
            | sed -E 's/^([A-Z_0-9]+)( \([^)]*\))?:/\1:/' \
            | awk -v l="$1" -v p="$p" '{ printf "%-22s P=%-2s %-5s %s\n", l, p, $1, $2 }'
    done
}

results=$tmp/results.txt
: > "$results"
for round in $(seq 1 "$repeat"); do
echo "round $round" | tee -a "$results"
for mode in $modes; do
    case $mode in
        interval) fsync=everysec ;;
        always) fsync=always ;;
    esac
    mkdir -p "$tmp/cask-$mode" "$tmp/redis-$mode"
    "$bin" --dir "$tmp/cask-$mode/data" serve --port 7479 --http-port 0 --sync "$mode" 2>"$tmp/cask-$mode.log" &
    pids+=($!)
    redis-server --port 7480 --dir "$tmp/redis-$mode" --save "" --appendonly yes \
        --appendfsync "$fsync" --daemonize no >"$tmp/redis-$mode.log" 2>&1 &
    pids+=($!)
    wait_port 7479
    wait_port 7480
    run "cask sync=$mode" 7479 | tee -a "$results"
    run "redis aof=$fsync" 7480 | tee -a "$results"
    redis-cli -p 7479 SHUTDOWN >/dev/null 2>&1 || true
    redis-cli -p 7480 SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    sleep 1
done
done

python3 - "$results" <<'PY'
import re, sys
runs, cur, tests = [], None, []
for line in open(sys.argv[1]):
    if line.startswith("round"):
        cur = {}; runs.append(cur); continue
    m = re.match(r"(cask|redis) (\S+)\s+P=(\d+)\s+(\w+):\s+([\d.]+)", line)
    if m and cur is not None:
        srv, mode, p, test, rps = m.groups()
        pol = "interval" if mode in ("sync=interval", "aof=everysec") else "always"
        cur[(srv, pol, int(p), test)] = float(rps)
        if test not in tests:
            tests.append(test)
for pol, title in [("interval", "cask --sync interval vs redis-server --appendfsync everysec"),
                   ("always", "cask --sync always vs redis-server --appendfsync always")]:
    if not any(k[1] == pol for r in runs for k in r):
        continue
    print(f"\n### {title}\n")
    print("| test | -P |" + "".join(f" cask {i+1} | redis {i+1} | ratio {i+1} |" for i in range(len(runs))))
    print("|---|---:|" + "---:|---:|---:|" * len(runs))
    for p in (1, 16):
        for t in tests:
            row = f"| {t} | {p} |"
            for r in runs:
                c, rd = r.get(("cask", pol, p, t)), r.get(("redis", pol, p, t))
                row += f" {c:,.0f} | {rd:,.0f} | {c/rd:.2f} |" if c and rd else " - | - | - |"
            print(row)
PY
