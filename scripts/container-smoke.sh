#!/usr/bin/env bash
# Builds the container image's runtime stage from the binary built on this machine and
# smoke-tests it as an operator would run it: non-root, read-only root filesystem, no
# capabilities, one writable volume, a PostgreSQL of its own on loopback. It places an
# order through the API, waits until the order is confirmed, then stops the container with
# SIGTERM and checks that it drained and exited 0. Everything it made is removed on exit.
#
#   scripts/container-smoke.sh                  # the debug binary CI already built
#   BULKHEAD_BINARY=target/release/bulkhead scripts/container-smoke.sh
#
# Needs root (rootful podman); installs podman and runc from Debian's packages if missing.
# No registry is reached: the image is `scratch` plus a root filesystem made here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

binary=${BULKHEAD_BINARY:-target/debug/bulkhead}
readonly image=localhost/bulkhead:smoke
readonly container="bulkhead-smoke-$$"
readonly app_uid=10001

log() { printf '[container-smoke] %s\n' "$*"; }
fail() {
    printf '[container-smoke] FAILED: %s\n' "$*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "run as root: rootful podman (and the throwaway PostgreSQL runs as the postgres user)"
fi

install_missing() {
    local missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    # crun, podman's default, fails on this machine's hybrid cgroups.
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    command -v strip >/dev/null 2>&1 || missing+=(binutils)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# PostgreSQL's server binaries, where .ci/run and the embedded server look for them.
pg_bin_dir() {
    if [ -n "${BULKHEAD_PG_BIN_DIR:-}" ]; then
        echo "$BULKHEAD_PG_BIN_DIR"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    else
        local found
        found=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1)
        [ -n "$found" ] || fail "no PostgreSQL server binaries; apt-get install postgresql"
        dirname "$found"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_missing

work=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-smoke.XXXXXX")
chmod 0755 "$work"
pg_started=""

# Podman with state of its own under $work (vfs: no overlay mount needed inside this
# machine's own container), runc, cgroupfs (no systemd) and file events (no journald).
pm() {
    podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
        --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"
}

cleanup() {
    local status=$?
    set +e
    if [ "$status" -ne 0 ] && pm container exists "$container" 2>/dev/null; then
        log "container output:"
        pm logs "$container" 2>&1 | tail -50
    fi
    pm rm -f -t 0 "$container" >/dev/null 2>&1
    pm rmi -f "$image" >/dev/null 2>&1
    if [ -n "$pg_started" ]; then
        # The postmaster's own pid (runuser's does not pass signals on); SIGINT: fast stop.
        local postmaster
        postmaster=$(head -1 "$work/pg/data/postmaster.pid" 2>/dev/null)
        if [ -n "$postmaster" ]; then
            kill -INT "$postmaster" 2>/dev/null
            for _ in $(seq 100); do kill -0 "$postmaster" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

if [ ! -x "$binary" ]; then
    log "building $binary"
    cargo build -p bulkhead
fi

log "assembling the runtime root filesystem from $binary"
scripts/container-rootfs.sh "$binary" "$work/context/rootfs" >/dev/null
log "building the image (Dockerfile, target runtime, ROOTFS=prebuilt)"
pm build --quiet --format docker --pull=never \
    --build-arg ROOTFS=prebuilt --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --target runtime --tag "$image" --file Dockerfile "$work/context" >/dev/null
size=$(pm image inspect --format '{{.Size}}' "$image")
compressed=$(pm save --format docker-archive "$image" 2>/dev/null | gzip -c | wc -c)
log "image: $((size / 1024 / 1024)) MiB, $((compressed / 1024 / 1024)) MiB compressed ($binary)"
if [ -n "${BULKHEAD_IMAGE_MAX_COMPRESSED_MIB:-}" ] && [ $((compressed / 1024 / 1024)) -gt "$BULKHEAD_IMAGE_MAX_COMPRESSED_MIB" ]; then
    fail "the image is larger than ${BULKHEAD_IMAGE_MAX_COMPRESSED_MIB} MiB compressed"
fi
[ "$(pm image inspect --format '{{.Config.User}}' "$image")" = "$app_uid:$app_uid" ] || fail "the image does not run as $app_uid"

# A throwaway PostgreSQL on loopback, as the postgres user (it refuses root), in $work.
pg_bin=$(pg_bin_dir)
pg_user=postgres
id "$pg_user" >/dev/null 2>&1 || pg_user=nobody
pg_port=$(free_port)
pg_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
mkdir -p "$work/pg"
printf '%s\n' "$pg_password" >"$work/pg/password"
chown -R "$pg_user" "$work/pg"
log "starting PostgreSQL ($pg_bin) on 127.0.0.1:$pg_port"
runuser -u "$pg_user" -- "$pg_bin/initdb" --pgdata="$work/pg/data" --username=bulkhead \
    --pwfile="$work/pg/password" --auth=scram-sha-256 --encoding=UTF8 >"$work/pg/initdb.log" 2>&1 ||
    fail "initdb: $(tail -5 "$work/pg/initdb.log")"
runuser -u "$pg_user" -- "$pg_bin/postgres" -D "$work/pg/data" -h 127.0.0.1 -p "$pg_port" -k "$work/pg" \
    >"$work/pg/server.log" 2>&1 &
pg_started=yes
for _ in $(seq 100); do
    PGPASSWORD=$pg_password "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U bulkhead -d postgres && break
    sleep 0.2
done
PGPASSWORD=$pg_password "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U bulkhead -d postgres ||
    fail "PostgreSQL did not start: $(tail -5 "$work/pg/server.log")"

# The one writable volume, owned by the image's user.
mkdir -p "$work/data"
chown "$app_uid:$app_uid" "$work/data"
app_port=$(free_port)
base="http://127.0.0.1:$app_port"
log "running the image: uid $app_uid, read-only root, no capabilities, host network, port $app_port"
# Podman's default ulimits exceed this machine's hard limits, which runc cannot raise; and
# its init process is refused even the shell's full process limit, so a few thousand (far
# more threads than the server starts) it is.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
pm run --detach --name "$container" \
    --user "$app_uid:$app_uid" --read-only --cap-drop=ALL --security-opt=no-new-privileges \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    --network host --volume "$work/data:/data" \
    --env "DATABASE_URL=postgres://bulkhead:$pg_password@127.0.0.1:$pg_port/postgres" \
    --env "BULKHEAD_ADDR=127.0.0.1:$app_port" \
    --env BULKHEAD_SHUTDOWN_TIMEOUT=20s \
    --env "BULKHEAD_ADMIN_PASSWORD=smoke test operator passphrase" \
    "$image" >"$work/run.log" 2>&1 || fail "podman run: $(cat "$work/run.log")"

log "waiting for $base/health/ready"
ready=""
for _ in $(seq 120); do
    if curl -fsS -o /dev/null "$base/health/ready" 2>/dev/null; then
        ready=yes
        break
    fi
    [ "$(pm inspect --format '{{.State.Running}}' "$container")" = "true" ] || fail "the container exited"
    sleep 0.5
done
[ -n "$ready" ] || fail "not ready after 60 s: $(curl -sS "$base/health/ready")"
pm healthcheck run "$container" >/dev/null || fail "the image's HEALTHCHECK (bulkhead healthcheck) failed"

# The shop's own flow, as in tests/tests/scenarios/shop.rs.
api() {
    local method=$1 path=$2
    shift 2
    curl -sS --fail-with-body -X "$method" "$base/api/v1$path" -H 'content-type: application/json' "$@"
}
email="smoke-$$@example.com"
password="a perfectly fine passphrase"
api POST /users -d "{\"email\":\"$email\",\"password\":\"$password\",\"display_name\":\"Smoke\"}" >/dev/null ||
    fail "registering a customer"
token=$(api POST /auth/login -d "{\"email\":\"$email\",\"password\":\"$password\"}" | jq -r '.data.access_token')
[ -n "$token" ] && [ "$token" != null ] || fail "signing in"
sku=$(api GET '/products?limit=100&in_stock=true' | jq -r '[.data[] | select(.sku == "MUG-001")][0].sku // .data[0].sku')
[ -n "$sku" ] && [ "$sku" != null ] || fail "no product in the demo catalogue"
order=$(api POST /orders -H "authorization: Bearer $token" -H "idempotency-key: smoke-$$" -d "{
    \"lines\": [{\"sku\": \"$sku\", \"quantity\": 1}],
    \"shipping_address\": {\"name\": \"Smoke\", \"line1\": \"1 High St\", \"city\": \"Leeds\", \"postal_code\": \"LS1 1AA\", \"country\": \"GB\"},
    \"payment_method\": \"pm_card_visa\"}") || fail "placing an order: $order"
order_id=$(jq -r '.data.id' <<<"$order")
log "order $order_id placed ($sku); waiting for it to be confirmed"
status=""
for _ in $(seq 120); do
    status=$(api GET "/orders/$order_id" -H "authorization: Bearer $token" | jq -r '.data.status')
    [ "$status" = confirmed ] && break
    sleep 0.5
done
[ "$status" = confirmed ] || fail "order $order_id is $status, not confirmed, after 60 s"

log "stopping the container with SIGTERM"
pm kill --signal SIGTERM "$container" >/dev/null
exit_code=$(timeout 60 podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
    --runtime runc --cgroup-manager cgroupfs --events-backend file wait "$container") ||
    fail "the container did not stop within 60 s of SIGTERM"
logs=$(pm logs "$container" 2>&1)
[ "$exit_code" = 0 ] || fail "the container exited with $exit_code after SIGTERM"
for drained in "shutdown requested; draining" "HTTP server stopped" "closing databases"; do
    grep -q "$drained" <<<"$logs" || fail "the log does not say \"$drained\""
done
log "passed: ready, order confirmed, drained and exited 0 on SIGTERM"
