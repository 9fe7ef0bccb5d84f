#!/usr/bin/env bash
# Memory and restart time of `cask serve` and redis-server holding the same data, in one run.
#
#   cargo build --release -p cask
#   bench/redis-memory.sh [target/release/cask] [KEYS]
#
# Loads KEYS (default 1,000,000) distinct keys with 100-byte values into each server
# (cask --sync interval, redis-server --appendonly yes --appendfsync everysec), through
# `redis-cli --pipe`, then reports each server's resident memory (VmRSS) and the time from
# start to answering DBSIZE with every key after a graceful restart. Ratios are cask/redis
# (below 1 means cask uses less memory or restarts faster).
set -euo pipefail
bin=${1:-target/release/cask}
keys=${2:-1000000}
cask_port=${CASK_PORT:-7579}
redis_port=${REDIS_PORT:-7580}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

wait_ready() { # port expected-keys -> seconds waited (float) on stdout
    local start now
    start=$(date +%s.%N)
    for _ in $(seq 1 6000); do
        if [ "$(redis-cli -p "$1" DBSIZE 2>/dev/null)" = "$2" ]; then
            now=$(date +%s.%N)
            echo "$now - $start" | bc -l
            return 0
        fi
        sleep 0.01
    done
    echo "server on port $1 did not come up with $2 keys" >&2
    exit 1
}

rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

start_cask() {
    "$bin" --dir "$tmp/cask" serve --port "$cask_port" --http-port 0 --sync interval 2>>"$tmp/cask.log" &
    cask_pid=$!
    pids+=("$cask_pid")
}
start_redis() {
    redis-server --port "$redis_port" --dir "$tmp/redis" --save "" --appendonly yes \
        --appendfsync everysec --daemonize no >>"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
}

mkdir -p "$tmp/cask" "$tmp/redis"
python3 - "$keys" > "$tmp/load.resp" <<'PY'
import sys
n = int(sys.argv[1]); value = b"v" * 100; out = sys.stdout.buffer
for i in range(n):
    key = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
PY

start_cask
start_redis
wait_ready "$cask_port" 0 >/dev/null
wait_ready "$redis_port" 0 >/dev/null
base_cask=$(rss_mib "$cask_pid")
base_redis=$(rss_mib "$redis_pid")
load_cask=$( { /usr/bin/time -f %e redis-cli -p "$cask_port" --pipe < "$tmp/load.resp" >/dev/null; } 2>&1 | tail -1)
load_redis=$( { /usr/bin/time -f %e redis-cli -p "$redis_port" --pipe < "$tmp/load.resp" >/dev/null; } 2>&1 | tail -1)
[ "$(redis-cli -p "$cask_port" DBSIZE)" = "$keys" ] || { echo "cask did not store every key" >&2; exit 1; }
[ "$(redis-cli -p "$redis_port" DBSIZE)" = "$keys" ] || { echo "redis did not store every key" >&2; exit 1; }
sleep 2
rss_cask=$(rss_mib "$cask_pid")
rss_redis=$(rss_mib "$redis_pid")
redis-cli -p "$cask_port" SHUTDOWN >/dev/null 2>&1 || true
redis-cli -p "$redis_port" SHUTDOWN >/dev/null 2>&1 || true
wait "$cask_pid" 2>/dev/null || true
wait "$redis_pid" 2>/dev/null || true
disk_cask=$(du -sm "$tmp/cask" | cut -f1)
disk_redis=$(du -sm "$tmp/redis" | cut -f1)
start_cask
restart_cask=$(wait_ready "$cask_port" "$keys")
start_redis
restart_redis=$(wait_ready "$redis_port" "$keys")
rss2_cask=$(rss_mib "$cask_pid")
rss2_redis=$(rss_mib "$redis_pid")

ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo "| measure ($keys keys, 100-byte values) | cask | redis | cask/redis |"
echo "|---|---:|---:|---:|"
echo "| RSS when idle, empty (MiB) | $base_cask | $base_redis | $(ratio "$base_cask" "$base_redis") |"
echo "| load time via redis-cli --pipe (s) | $load_cask | $load_redis | $(ratio "$load_cask" "$load_redis") |"
echo "| RSS after load (MiB) | $rss_cask | $rss_redis | $(ratio "$rss_cask" "$rss_redis") |"
echo "| disk after shutdown (MiB) | $disk_cask | $disk_redis | $(ratio "$disk_cask" "$disk_redis") |"
echo "| restart until all keys served (s) | $(printf %.2f "$restart_cask") | $(printf %.2f "$restart_redis") | $(ratio "$restart_cask" "$restart_redis") |"
echo "| RSS after restart (MiB) | $rss2_cask | $rss2_redis | $(ratio "$rss2_cask" "$rss2_redis") |"
