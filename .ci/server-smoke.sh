#!/usr/bin/env bash
# Smoke test of `cask serve` with the real Redis tools: a redis-cli session whose replies
# are checked, a short redis-benchmark, SHUTDOWN, a restart, and a check that the data
# survived. Installs nothing: needs redis-cli and redis-benchmark on PATH.
#
#   .ci/server-smoke.sh [path/to/cask]     (default target/debug/cask)
set -euo pipefail

bin=${1:-target/debug/cask}
[ -x "$bin" ] || { echo "server-smoke: no executable at $bin" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "server-smoke: redis-cli not found" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "server-smoke: redis-benchmark not found" >&2; exit 1; }

dir=$(mktemp -d)
log="$dir/server.log"
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "server-smoke: FAIL: $*" >&2
    echo "--- server log ---" >&2
    cat "$log" >&2 || true
    exit 1
}

start() {
    : > "$log"
    "$bin" --dir "$dir/data" serve --port 0 --http-port 0 --sync always >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^cask: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || fail "server exited during startup"
        sleep 0.1
    done
    fail "server did not report its address"
}

# expect "<expected reply>" redis-cli args...
expect() {
    local want=$1; shift
    local got
    got=$(redis-cli -p "$port" "$@" 2>&1) || fail "redis-cli $* exited non-zero: $got"
    [ "$got" = "$want" ] || fail "redis-cli $*: expected '$want', got '$got'"
}

start
echo "server-smoke: cask on port $port"
expect PONG PING
expect OK SET greeting "hello world"
expect "hello world" GET greeting
expect 1 INCR counter
expect 11 INCRBY counter 10
expect OK SET temp value
expect 1 EXPIRE temp 100
ttl=$(redis-cli -p "$port" TTL temp)
[ "$ttl" = 100 ] || [ "$ttl" = 99 ] || fail "TTL temp: expected 100 (or 99 on a slow machine), got '$ttl'"
expect -1 TTL greeting
expect -2 TTL missing
expect 1 DEL temp
expect 0 EXISTS temp
expect "" GET missing
expect "ERR unknown command 'NOSUCH', with args beginning with: 'x' " NOSUCH x
expect "ERR wrong number of arguments for 'get' command" GET
for i in $(seq 1 30); do redis-cli -p "$port" SET "scan:$i" "$i" >/dev/null; done
n=$(redis-cli -p "$port" --scan --pattern 'scan:*' | wc -l)
[ "$n" -eq 30 ] || fail "SCAN found $n keys instead of 30"
redis-cli -p "$port" INFO | grep -q '^# Cask' || fail "INFO has no Cask section"
redis-cli -p "$port" INFO keyspace | grep -q '^db0:keys=32,' || fail "INFO keyspace: $(redis-cli -p "$port" INFO keyspace)"

echo "server-smoke: redis-benchmark"
bench=$(redis-benchmark -p "$port" -t set,get,incr -n 10000 -q 2>&1) || fail "redis-benchmark failed: $bench"
echo "$bench" | tr '\r' '\n' | grep -E '^(SET|GET|INCR): [0-9.]+ requests' || true
for t in SET GET INCR; do
    echo "$bench" | tr '\r' '\n' | grep -q "^$t: .* requests per second" || fail "no $t result: $bench"
done
# redis-benchmark uses its own keys (key:__rand_int__, counter:__rand_int__): ours are intact.
expect 11 GET counter

redis-cli -p "$port" SHUTDOWN >/dev/null 2>&1 || true
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "server exited with status $status after SHUTDOWN"
pid=

start
expect "hello world" GET greeting
expect 11 GET counter
n=$(redis-cli -p "$port" --scan --pattern 'scan:*' | wc -l)
[ "$n" -eq 30 ] || fail "after restart SCAN found $n keys instead of 30"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "server exited with status $status after SIGTERM"
pid=
echo "server-smoke: OK"
