#!/usr/bin/env bash
# Runs Redis's own test suite (tag 7.2.6, checked out outside this repository) against an
# already running server, and prints ok/err counts per unit.
#
#   bench/redis-suite.sh /tmp/redis 7400 > result.txt
#
# $1: a Redis 7.2.6 source tree (git archive 7.2.6 | tar -x -C /tmp/redis)
# $2: the port of the server under test (cask serve or redis-server)
set -euo pipefail
src=${1:?redis source tree}
port=${2:?port}
# UNITS="unit/type/hash unit/type/set" picks other units.
read -r -a units <<< "${UNITS:-unit/type/string unit/type/incr unit/keyspace unit/expire unit/protocol unit/info}"
args=()
for u in "${units[@]}"; do args+=(--single "$u"); done
cd "$src"
out=$(mktemp)
# --durable turns a test's exception (an unknown command, say) into a failure and goes on.
./runtest --host 127.0.0.1 --port "$port" --singledb --ignore-encoding --ignore-digest \
    --tags "-needs:debug -needs:repl -needs:config-maxmemory" --durable --clients 1 --timeout 300 \
    "${args[@]}" > "$out" 2>&1 || true
awk '
    /Testing unit\// { sub(/.*Testing /, ""); sub(/\x1b\[0m/, ""); unit = $0 }
    /^\[.*ok.*\]:/ { ok[unit]++ }
    /^\[.*(err|exception).*\]:/ { err[unit]++ }
    END { for (u in ok) printf "%-20s ok=%d err=%d\n", u, ok[u], err[u];
          for (u in err) if (!(u in ok)) printf "%-20s ok=0 err=%d\n", u, err[u] }
' "$out" | sort
echo "full log: $out"
