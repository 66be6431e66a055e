#!/bin/sh
# Install the Python tools tests/deploy needs. Idempotent: a second run changes nothing.
# Downloads only from PyPI.
#
#   <repo>/.venv-tools/bin/  checkov, kubernetes-validate, hadolint   (PyPI, tools-requirements.txt)
#
# The rest of what tests/deploy uses comes from the Go module proxy, through
# tests/install-go-tools.sh (`make tools` runs both): promtool 3.7.3 built with Kubernetes
# service discovery (Debian's promtool rejects `kubernetes_sd_configs`, the heart of
# deploy/prometheus/scrape-config.yml), kustomize when kubectl is missing, and the
# prometheus-operator CRD schemas.
#
# Environment: DEPLOY_TOOLS_VENV (default <repo>/.venv-tools), PYTHON (default python3).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${DEPLOY_TOOLS_VENV:-$REPO/.venv-tools}
PYTHON=${PYTHON:-python3}
REQUIREMENTS="$REPO/deploy/tools-requirements.txt"

log() { printf 'install-tools.sh: %s\n' "$*" >&2; }

stamp="$TOOLS/.deploy-tools-requirements"
if [ -x "$TOOLS/bin/checkov" ] && [ -f "$stamp" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
    log "python tools up to date in $TOOLS"
else
    [ -x "$TOOLS/bin/python" ] || "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
    log "installed python tools into $TOOLS"
fi

"$TOOLS/bin/checkov" --version >/dev/null
"$TOOLS/bin/kubernetes-validate" --version >/dev/null
"$TOOLS/bin/hadolint" --version
