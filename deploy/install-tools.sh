#!/bin/sh
# Install the tools tests/deploy needs. Idempotent: a second run changes nothing.
# Downloads only from PyPI and the Go module proxy.
#
#   <repo>/.venv-tools/bin/  checkov, kubernetes-validate, hadolint   (PyPI, tools-requirements.txt)
#                            promtool                                  (Go module proxy, see below)
#                            kustomize, only when kubectl is missing   (Go module proxy)
#
# promtool is built from Prometheus' Go module rather than taken from Debian's `prometheus`
# package (alerts/install-tools.sh installs that one for the alert tests): Debian builds
# Prometheus without Kubernetes service discovery, so its promtool rejects
# `kubernetes_sd_configs`, the heart of deploy/prometheus/scrape-config.yml. The build takes
# about 4 minutes on 2 cores the first time; afterwards the binary is reused.
#
# Environment: DEPLOY_TOOLS_VENV (default <repo>/.venv-tools), PYTHON (default python3).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${DEPLOY_TOOLS_VENV:-$REPO/.venv-tools}
PYTHON=${PYTHON:-python3}
REQUIREMENTS="$REPO/deploy/tools-requirements.txt"
PROMETHEUS_MODULE_VERSION=v0.307.3   # = Prometheus 3.7.3
PROMETHEUS_VERSION=3.7.3
KUSTOMIZE_VERSION=v5.5.0

log() { printf 'install-tools.sh: %s\n' "$*" >&2; }

find_go() {
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [ -x "$candidate" ]; then echo "$candidate"; return; fi
    done
    log "Go is needed to build promtool/kustomize; installing Debian's golang-go"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends golang-go >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends golang-go >&2; }
    command -v go
}

# --- Python tools -------------------------------------------------------------------------
stamp="$TOOLS/.deploy-tools-requirements"
if [ -x "$TOOLS/bin/checkov" ] && [ -f "$stamp" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
    log "python tools up to date in $TOOLS"
else
    [ -x "$TOOLS/bin/python" ] || "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
    log "installed python tools into $TOOLS"
fi

# --- promtool with Kubernetes service discovery ---------------------------------------------
if [ -x "$TOOLS/bin/promtool" ] \
   && "$TOOLS/bin/promtool" --version 2>&1 | grep -q "version $PROMETHEUS_VERSION "; then
    log "promtool $PROMETHEUS_VERSION present"
else
    GO=$(find_go)
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # A throw-away module: `go install pkg@version` refuses Prometheus' go.mod (it has
    # exclude directives), building it as a dependency does not.
    (
        cd "$build"
        "$GO" mod init promtool-build >/dev/null 2>&1
        "$GO" get "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" \
            2>get.log || { cat get.log >&2; exit 1; }
        "$GO" build -trimpath -o "$TOOLS/bin/promtool" \
            -ldflags "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
            github.com/prometheus/prometheus/cmd/promtool
    )
    rm -rf "$build"
    trap - EXIT
    log "built promtool $PROMETHEUS_VERSION into $TOOLS/bin"
fi

# --- kustomize (only if kubectl, which embeds it, is missing) -------------------------------
if command -v kubectl >/dev/null 2>&1; then
    log "using kubectl kustomize ($(command -v kubectl))"
elif [ -x "$TOOLS/bin/kustomize" ]; then
    log "kustomize present in $TOOLS/bin"
else
    GO=$(find_go)
    GOBIN="$TOOLS/bin" "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    log "installed kustomize $KUSTOMIZE_VERSION into $TOOLS/bin"
fi

"$TOOLS/bin/checkov" --version >/dev/null
"$TOOLS/bin/kubernetes-validate" --version >/dev/null
"$TOOLS/bin/hadolint" --version
"$TOOLS/bin/promtool" --version 2>&1 | head -n 1
