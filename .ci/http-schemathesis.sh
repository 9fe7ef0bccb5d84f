#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document: schemathesis (from
# PyPI) generates requests for every operation of /openapi.json and checks every response
# against the document (status codes, content types, headers, JSON schemas) and that no
# request gets a 5xx. Any failure fails CI.
#
#   .ci/http-schemathesis.sh [path/to/cask]     (default target/debug/cask)
#
# Settings in .ci/schemathesis.toml. Installs schemathesis into target/schemathesis-venv if it is not on PATH. Bounded:
# SCHEMATHESIS_MAX_EXAMPLES (default 40) cases per operation, SCHEMATHESIS_MAX_TIME (default
# 150) seconds in all.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/cask}
[ -x "$bin" ] || { echo "http-schemathesis: no executable at $bin" >&2; exit 1; }
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-40}
max_time=${SCHEMATHESIS_MAX_TIME:-150}

st=$(command -v schemathesis || true)
if [ -z "$st" ]; then
    venv=target/schemathesis-venv
    if [ ! -x "$venv/bin/schemathesis" ]; then
        if ! python3 -m venv "$venv" 2>/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install -q --disable-pip-version-check schemathesis
    fi
    st="$PWD/$venv/bin/schemathesis"
fi

dir=$(mktemp -d)
log="$dir/server.log"
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

# Two free ports (the RESP port is 0: the server picks it).
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# With a password, so that schemathesis also checks that every route but /health refuses
# requests without the bearer token.
pw=schemathesis-$$
"$bin" --dir "$dir/data" serve --port 0 --http-port "$http_port" --sync never --requirepass "$pw" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    grep -q "^cask: listening on" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "http-schemathesis: server died" >&2; exit 1; }
    sleep 0.1
done
grep -q '^cask: http listening on' "$log" || { cat "$log" >&2; echo "http-schemathesis: no HTTP listener" >&2; exit 1; }
base="http://127.0.0.1:$http_port"

status=0
# Run from the temporary directory: schemathesis keeps a cache in its working directory.
root=$PWD
(cd "$dir" && "$st" --config-file "$root/.ci/schemathesis.toml" run "$base/openapi.json" \
    --header "Authorization: Bearer $pw" \
    --checks all \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --seed 20261124 \
    --generation-database none \
    --no-color \
    --request-timeout 10) || status=$?

kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "http-schemathesis: the server died during the run" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid" || { echo "http-schemathesis: server exited with $? after SIGTERM" >&2; exit 1; }
pid=
if [ "$status" -ne 0 ]; then
    echo "http-schemathesis: FAIL (schemathesis exit $status)" >&2
    exit "$status"
fi
echo "http-schemathesis: ok"
