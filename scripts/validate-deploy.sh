#!/usr/bin/env bash
# Validates what `deploy/` and `compose.yaml` describe, offline:
#   - each kustomize overlay renders (`kubectl kustomize`);
#   - every rendered resource fits the Kubernetes API's schema, oldest and newest version
#     supported (kubernetes-validate, which ships the schemas);
#   - checkov's Kubernetes policies pass (exceptions are skipped in the manifests, each
#     with its reason next to it);
#   - the alerting rules parse and their unit tests pass (promtool, from Debian's
#     prometheus package, unpacked here and not installed: no service is started);
#   - compose.yaml fits the Compose Specification's JSON schema (jsonschema), for the default
#     and the `split` profile.
# Python tools are pinned and installed into a virtualenv under target/ by this script.
#
#   scripts/validate-deploy.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The Kubernetes versions the manifests are checked against: the oldest they need
# (preStop `sleep`, on by default since 1.30) and the newest the validator knows.
readonly KUBERNETES_VERSIONS=(1.30.0 1.37.0)
readonly tools=target/deploy-tools
readonly venv=$tools/venv
readonly rendered=target/deploy-rendered

log() { printf '[validate-deploy] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# kubectl (with its built-in kustomize): Debian ships it as kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
    log "installing kubectl (kubernetes-client)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi

# Pinned: a new release of either may add policies or schemas that fail here first.
if [ ! -x "$venv/bin/checkov" ] || ! cmp -s scripts/deploy-requirements.txt "$venv/requirements.txt"; then
    log "installing the validators into $venv"
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/deploy-requirements.txt
    cp scripts/deploy-requirements.txt "$venv/requirements.txt"
fi

# promtool from Debian's prometheus package, unpacked (installing it would start a server).
promtool=$tools/prometheus/usr/bin/promtool
if [ ! -x "$promtool" ]; then
    log "unpacking promtool from Debian's prometheus package"
    rm -rf "$tools/prometheus" "$tools/deb"
    mkdir -p "$tools/deb"
    if ! (cd "$tools/deb" && apt-get download prometheus >/dev/null 2>&1); then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "$tools/deb" && apt-get download prometheus >/dev/null 2>&1)
    fi
    dpkg-deb -x "$tools"/deb/prometheus_*.deb "$tools/prometheus"
    rm -rf "$tools/deb"
fi

rm -rf "$rendered"
mkdir -p "$rendered"
for overlay in deploy/overlays/*/; do
    name=$(basename "$overlay")
    log "kubectl kustomize $overlay"
    kubectl kustomize "$overlay" >"$rendered/$name.yaml"
    for version in "${KUBERNETES_VERSIONS[@]}"; do
        log "kubernetes-validate $name (Kubernetes $version, strict)"
        "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$rendered/$name.yaml"
    done
done

log "checkov (Kubernetes policies) on the rendered overlays"
"$venv/bin/checkov" --quiet --compact --framework kubernetes --directory "$rendered" \
    --skip-download --output cli

log "promtool check rules, test rules"
"$promtool" check rules deploy/observability/alerts.yaml
(cd deploy/observability && "$PWD/../../$promtool" test rules alerts-test.yaml)

log "compose.yaml against the Compose Specification (default and split profiles)"
"$venv/bin/python" scripts/validate-compose.py compose.yaml deploy/compose-spec.schema.json

log "all deployment descriptions are valid"
