#!/usr/bin/env bash
# Does a write to a collection of 1 M elements cost what it costs on one of 10?
# Starts `cask serve --sync interval`, fills one hash, set, sorted set and list with 1 M
# elements (variadic commands through redis-cli --pipe) and one of each with 10, then runs
# the same redis-benchmark command against the small and the large key (which goes first
# alternates by round; each run starts once the server is idle, so that compaction left by
# one run is not charged to the next), and prints ops/s and the large/small ratio (1.0: no
# slowdown). With PEER=1 (default when redis-server is installed) the same keys are loaded
# into a redis-server (no persistence) on port+1 and measured in the same run, so cask's
# ratio sits beside Redis's own.
#
#   cargo build --release -p cask
#   bench/collection-scale.sh [target/release/cask]
#
# Commands (-c 50 -n $N, default 200000):
#   HSET key f__rand_int__ v       (-r 10 for the small key, -r 1000000 for the large one:
#   SADD key m__rand_int__          both overwrite existing elements, since the fill names
#   ZADD key __rand_int__ m__rand_int__   them as redis-benchmark does: 12 digits, zero-padded)
#   HSET/SADD/ZADD with a new-member prefix, "-new" tests (-r 1000000 on both keys: both
#                                  insert new elements; the small key grows to ~180 k)
#   LPUSH key v                    (both grow by N)
#   LMOVE key key LEFT RIGHT       (a pop and a push: the list keeps its size)
set -euo pipefail
bin=${1:-target/release/cask}
n=${N:-200000}
big=${BIG:-1000000}
port=${PORT:-7481}
repeat=${REPEAT:-2}
tests=${TESTS:-hset sadd zadd lpush lmove hset-new sadd-new zadd-new}
tmp=$(mktemp -d)
peer=${PEER:-$(command -v redis-server >/dev/null && echo 1 || echo 0)}
pid=
rpid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
    # Wait for them to exit: a server still writing its data directory would make the
    # removal fail.
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" --dir "$tmp/data" serve --port "$port" --http-port 0 --sync interval 2>"$tmp/cask.log" &
pid=$!
for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
ports=$port
if [ "$peer" = 1 ]; then
    mkdir -p "$tmp/redis"
    redis-server --port $((port + 1)) --save '' --appendonly no --dir "$tmp/redis" >/dev/null 2>&1 &
    rpid=$!
    for _ in $(seq 1 100); do redis-cli -p $((port + 1)) PING >/dev/null 2>&1 && break; sleep 0.1; done
    ports="$port $((port + 1))"
fi

fill() { # key-prefix count port
    python3 - "$1" "$2" <<'PY' | redis-cli -p "$3" --pipe >/dev/null
import sys
prefix, count = sys.argv[1], int(sys.argv[2])
out = sys.stdout.buffer
def cmd(*args):
    b = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        b.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(b))
step = 1000
for lo in range(0, count, step):
    hi = min(count, lo + step)
    cmd("HSET", f"{prefix}:hash", *[x for i in range(lo, hi) for x in (f"f{i:012d}", "v")])
    cmd("SADD", f"{prefix}:set", *[f"m{i:012d}" for i in range(lo, hi)])
    cmd("ZADD", f"{prefix}:zset", *[x for i in range(lo, hi) for x in (i, f"m{i:012d}")])
    cmd("RPUSH", f"{prefix}:list", *["v"] * (hi - lo))
PY
}
for p in $ports; do
    start=$(date +%s)
    fill small 10 "$p"
    fill big "$big" "$p"
    echo "port $p filled: $(redis-cli -p "$p" HLEN big:hash) hash fields, $(redis-cli -p "$p" SCARD big:set) set members, $(redis-cli -p "$p" ZCARD big:zset) zset members, $(redis-cli -p "$p" LLEN big:list) list elements in $(( $(date +%s) - start )) s"
done
echo "cask after the fill: $(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ')"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
wait_idle() { # until the server has used < 20 ms of CPU in half a second (at most 60 s)
    local p=$1 a b
    for _ in $(seq 1 120); do
        a=$(cpu_ticks "$p"); sleep 0.5; b=$(cpu_ticks "$p")
        [ $((b - a)) -lt 2 ] && return
    done
}
bench() { # port r command... -> requests per second
    local p=$1 r=$2; shift 2
    # Background work left by the previous measurement (compaction, hint files, the
    # sweeper) would be charged to this one: start from an idle server.
    if [ "$p" = "$port" ]; then wait_idle "$pid"; else wait_idle "$rpid"; fi
    redis-benchmark -p "$p" -c 50 -n "$n" -r "$r" -q "$@" 2>/dev/null | tr '\r' '\n' \
        | grep -oE '[0-9.]+ requests per second' | tail -1 | awk '{ print $1 }'
}
printf '%-9s %-28s %12s %12s %7s\n' server command small big ratio
for round in $(seq 1 "$repeat"); do
    for t in $tests; do
        for p in $ports; do
            server=cask; [ "$p" != "$port" ] && server=redis
            # K stands for the key (small:... or big:...); rs/rb: -r for the small/big run.
            rs=10; rb=$big
            case $t in
                hset) cmd=(HSET K:hash f__rand_int__ v); name="HSET key f__rand_int__ v" ;;
                sadd) cmd=(SADD K:set m__rand_int__); name="SADD key m__rand_int__" ;;
                zadd) cmd=(ZADD K:zset __rand_int__ m__rand_int__); name="ZADD key score m__rand_int__" ;;
                hset-new) rs=$big; cmd=(HSET K:hash "n${round}__rand_int__" v); name="HSET key n__rand_int__ v" ;;
                sadd-new) rs=$big; cmd=(SADD K:set "n${round}__rand_int__"); name="SADD key n__rand_int__" ;;
                zadd-new) rs=$big; cmd=(ZADD K:zset __rand_int__ "n${round}__rand_int__"); name="ZADD key score n__rand_int__" ;;
                lpush) rb=10; cmd=(LPUSH K:list v); name="LPUSH key v" ;;
                lmove) rb=10; cmd=(LMOVE K:list K:list LEFT RIGHT); name="LMOVE key key LEFT RIGHT" ;;
            esac
            # Alternate which key goes first, so that neither always follows the other.
            if [ $((round % 2)) = 1 ]; then
                s=$(bench "$p" "$rs" "${cmd[@]/K:/small:}"); b=$(bench "$p" "$rb" "${cmd[@]/K:/big:}")
            else
                b=$(bench "$p" "$rb" "${cmd[@]/K:/big:}"); s=$(bench "$p" "$rs" "${cmd[@]/K:/small:}")
            fi
            awk -v srv="$server" -v n="$name" -v s="$s" -v b="$b" 'BEGIN { printf "%-9s %-28s %12.0f %12.0f %7.2f\n", srv, n, s, b, b / s }'
        done
    done
done
redis-cli -p "$port" SHUTDOWN >/dev/null 2>&1 || true
