#!/usr/bin/env bash
# Assembles the root filesystem of the runtime image (Dockerfile, stage `runtime`) from a
# built binary: the binary, stripped; exactly the shared libraries `ldd` lists, at the
# paths it lists; the CA certificates; passwd/group entries for the non-root user; and the
# empty data directory. The Dockerfile's builder stage runs it on its release build, and
# scripts/container-smoke.sh on the host's binary.
#
#   scripts/container-rootfs.sh BINARY OUTPUT_DIR
set -euo pipefail

# The image's user and group (also in the Dockerfile's USER and the manifests' securityContext).
readonly APP_UID=10001
readonly APP_GID=10001
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

if [ "$#" -ne 2 ]; then
    echo "usage: $0 BINARY OUTPUT_DIR" >&2
    exit 2
fi
binary=$1
out=$2

if [ ! -x "$binary" ]; then
    echo "$binary is not an executable; build it first (cargo build -p bulkhead)" >&2
    exit 1
fi
if [ ! -f "$CA_BUNDLE" ]; then
    echo "$CA_BUNDLE is missing; install the ca-certificates package" >&2
    exit 1
fi
for tool in ldd strip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool is missing; install libc-bin and binutils" >&2
        exit 1
    fi
done

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/data" "$out/tmp"
# Writable by anyone, as /tmp is, for runs without a read-only root filesystem.
chmod 1777 "$out/tmp"
install -m 0755 "$binary" "$out/usr/local/bin/bulkhead"
strip --strip-unneeded "$out/usr/local/bin/bulkhead"

# `ldd` prints `name => /path (address)` for libraries and `/path (address)` for the loader;
# the vDSO has no file. Each is copied (symlinks resolved) to the path the binary asks for.
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
if [ -z "$libraries" ]; then
    echo "ldd listed no libraries for $binary; a static binary needs none, but this one should" >&2
    exit 1
fi
for library in $libraries; do
    mkdir -p "$out$(dirname "$library")"
    cp -L "$library" "$out$library"
done

cp -L "$CA_BUNDLE" "$out$CA_BUNDLE"
printf 'root:x:0:0:root:/root:/sbin/nologin\nbulkhead:x:%s:%s:Bulkhead:/data:/sbin/nologin\n' "$APP_UID" "$APP_GID" >"$out/etc/passwd"
printf 'root:x:0:\nbulkhead:x:%s:\n' "$APP_GID" >"$out/etc/group"

echo "rootfs in $out:"
(cd "$out" && find . -type f -printf '  %p %s bytes\n' | sort)
