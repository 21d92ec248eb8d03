#!/usr/bin/env bash
# Start-up time of the `cargo run` binary: from exec to the first 200 on /health, with a
# fresh data dir (cold: initdb, provisioning, migrations) and the same dir again (warm).
# Usage: bench/startup.sh [runs]   (builds the debug binary first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q -p bulkhead
bin=$PWD/target/debug/bulkhead
port=18099
runs=${1:-3}

measure() {
    local dir=$1 start end pid
    start=$(date +%s%N)
    BULKHEAD_DATA_DIR=$dir BULKHEAD_ADDR=127.0.0.1:$port LOG_FORMAT=json "$bin" > /dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.01; done
    end=$(date +%s%N)
    kill -INT "$pid"
    wait "$pid"
    echo $(((end - start) / 1000000))
}

for i in $(seq 1 "$runs"); do
    dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-start-XXXX")
    chmod 755 "$dir"
    cold=$(measure "$dir")
    warm=$(measure "$dir")
    echo "run $i: cold ${cold} ms, warm ${warm} ms"
    rm -rf "$dir"
done
