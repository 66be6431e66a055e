#!/bin/sh
# Install the test tools that come from the Go module proxy. Idempotent; cached per user, so a
# second run (or a second clone) builds and downloads nothing.
#
#   prometheus, promtool     Prometheus 3.7.3   (module github.com/prometheus/prometheus v0.307.3)
#   alertmanager, amtool     Alertmanager 0.29.0 (module github.com/prometheus/alertmanager v0.29.0)
#   thanos-rules-check       Thanos 0.42.5's own rule-file check (module github.com/thanos-io/thanos
#                            v0.42.5, package pkg/rules), built from tests/tools/thanos-rules-check
#   kustomize v5.5.0         only when kubectl (which embeds it) is missing
#   CRD schemas              prometheus-operator v0.93.0: the module's
#                            example/prometheus-operator-crd/*.yaml (PodMonitor, ServiceMonitor,
#                            PrometheusRule), checked against sum.golang.org by `go mod download`
#
# They are the "current" version line of the alert tests (alerts/install-tools.sh installs the
# "old" one, Debian's 2.42 and 0.25) and the tools of tests/deploy. Debian's promtool cannot
# stand in: Debian builds Prometheus without Kubernetes service discovery.
#
# Built or fetched once into $CACHE/<tool>-<version>/ and linked into <repo>/.venv-tools/bin and
# <repo>/.venv-tools/schemas. Go >= 1.24 is needed to build Prometheus 3.7; when none is
# installed (Debian 12's golang-go is 1.19) the Go toolchain itself is fetched from the Go module
# proxy (module golang.org/toolchain, checked against the SHA-256 below) into $CACHE.
#
# Environment: GATEWAY_MONITOR_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/gateway-monitor),
# DEPLOY_TOOLS_VENV (default <repo>/.venv-tools), GO (a go binary to use; else `go` on PATH).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${DEPLOY_TOOLS_VENV:-$REPO/.venv-tools}
CACHE=${GATEWAY_MONITOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway-monitor}

PROMETHEUS_VERSION=3.7.3
PROMETHEUS_MODULE_VERSION=v0.307.3
ALERTMANAGER_VERSION=0.29.0
THANOS_VERSION=0.42.5  # also in tests/tools/thanos-rules-check/go.mod; needs Go >= 1.26.10
OPERATOR_VERSION=v0.93.0
KUSTOMIZE_VERSION=v5.5.0
GO_MIN_MINOR=24
GO_BOOTSTRAP=1.26.8
GO_BOOTSTRAP_SHA256_linux_amd64=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
CRDS="podmonitors prometheusrules servicemonitors"

log() { printf 'install-go-tools.sh: %s\n' "$*" >&2; }

go_minor() {  # "go1.26.8" -> 26 (0 when unreadable)
    "$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p' | grep . || echo 0
}

fetch_go() {
    arch=$(uname -m)
    case "$arch" in
        x86_64) arch=amd64 ;;
        *) log "no Go >= 1.$GO_MIN_MINOR found and no pinned toolchain for $arch: install Go"; exit 1 ;;
    esac
    dest="$CACHE/go-$GO_BOOTSTRAP"
    if [ ! -x "$dest/bin/go" ]; then
        module="v0.0.1-go$GO_BOOTSTRAP.linux-$arch"
        log "fetching Go $GO_BOOTSTRAP from the Go module proxy (golang.org/toolchain@$module)"
        mkdir -p "$CACHE"
        python3 - "https://proxy.golang.org/golang.org/toolchain/@v/$module.zip" \
            "$GO_BOOTSTRAP_SHA256_linux_amd64" "$dest" "golang.org/toolchain@$module/" <<'EOF'
import hashlib, io, os, shutil, sys, urllib.request, zipfile
url, sha256, dest, prefix = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=300).read()
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"{url}: SHA-256 {hashlib.sha256(data).hexdigest()} is not the pinned {sha256}")
tmp = dest + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
with zipfile.ZipFile(io.BytesIO(data)) as archive:
    for info in archive.infolist():
        name = info.filename.removeprefix(prefix)
        if name == info.filename or not name or info.is_dir():
            continue
        target = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(target, (info.external_attr >> 16) & 0o777 or 0o644)
os.rename(tmp, dest)
EOF
    fi
    echo "$dest/bin/go"
}

find_go() {
    for candidate in "$(command -v go 2>/dev/null || true)" "$CACHE/go-$GO_BOOTSTRAP/bin/go"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(go_minor "$candidate")" -ge "$GO_MIN_MINOR" ]; then
            echo "$candidate"
            return
        fi
    done
    fetch_go
}

# Go reads the module proxy and sum.golang.org over HTTPS with the system's CA certificates.
ensure_ca_certificates() {
    [ -s /etc/ssl/certs/ca-certificates.crt ] || sh "$REPO/tests/apt-install.sh" ca-certificates >&2
}

# Prometheus' documented way to build with a subset of its service discoveries is plugins.yml and
# `make plugins`, which rewrite plugins/plugins.go. The same here, in a copy of the module whose
# plugins.go registers Kubernetes only (file and http are always in): it spares compiling the
# cloud SDKs, about half of the build. Kubernetes is what deploy/prometheus/scrape-config.yml
# uses; the rule engine, notifier and TSDB the alert tests use are untouched.
only_kubernetes_sd() {
    src=$("$GO" list -m -f '{{.Dir}}' github.com/prometheus/prometheus)
    cp -R "$src" prometheus
    chmod -R u+w prometheus
    printf '%s\n' 'package plugins' '' \
        'import _ "github.com/prometheus/prometheus/discovery/kubernetes" // Register kubernetes plugin.' \
        > prometheus/plugins/plugins.go
    "$GO" mod edit -replace github.com/prometheus/prometheus=./prometheus
}

# build DIR MODULE_VERSION VERSION PACKAGE... : `go build` the packages into DIR, in a throw-away
# module (`go install pkg@version` refuses Prometheus' go.mod, which has exclude directives;
# building it as a dependency does not). One `go build` links every binary of a module.
build() {
    dir=$1 module_version=$2 version=$3
    shift 3
    work=$(mktemp -d)
    (
        cd "$work"
        "$GO" mod init gateway-monitor-tools >/dev/null 2>&1
        for package in "$@"; do
            "$GO" get "$package@$module_version" 2>>get.log || { cat get.log >&2; exit 1; }
        done
        case $1 in github.com/prometheus/prometheus/*) only_kubernetes_sd ;; esac
        mkdir -p "$dir.tmp"
        "$GO" build -trimpath -o "$dir.tmp/" \
            -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" "$@"
    ) || { rm -rf "$work" "$dir.tmp"; exit 1; }
    rm -rf "$work" "$dir"
    mv "$dir.tmp" "$dir"
}

link() {  # link FILE... into $TOOLS/bin
    mkdir -p "$TOOLS/bin"
    for file in "$@"; do ln -sfn "$file" "$TOOLS/bin/$(basename "$file")"; done
}

mkdir -p "$CACHE"
GO=${GO:-}  # found (or fetched) on first need

# binaries DIR MODULE_VERSION VERSION PACKAGE... : the packages' binaries, built into DIR unless
# they are there already, linked into $TOOLS/bin.
binaries() {
    dir=$1 module_version=$2 version=$3
    shift 3
    cached=yes
    for package in "$@"; do [ -x "$dir/${package##*/}" ] || cached=; done
    if [ -n "$cached" ]; then
        log "$(basename "$dir") cached in $dir"
    else
        ensure_ca_certificates
        GO=${GO:-$(find_go)}
        log "building $(basename "$dir") with $GO (a few minutes the first time)"
        build "$dir" "$module_version" "$version" "$@"
    fi
    for package in "$@"; do link "$dir/${package##*/}"; done
}

binaries "$CACHE/prometheus-$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION" "$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
binaries "$CACHE/alertmanager-$ALERTMANAGER_VERSION" "v$ALERTMANAGER_VERSION" "$ALERTMANAGER_VERSION" \
    github.com/prometheus/alertmanager/cmd/alertmanager github.com/prometheus/alertmanager/cmd/amtool

# --- thanos-rules-check: `thanos tools rules-check` without the rest of Thanos ------------------
# The thanos binary takes ~3.5 min and 240 MB of modules to build cold (98 MB binary); the check
# itself is rules.ValidateAndCount of Thanos's exported package pkg/rules. The main package of
# tests/tools/thanos-rules-check calls it as the thanos command does (~1.5 min cold, 24 MB). Its
# go.mod pins Thanos and carries Thanos's replace directives, so every module compiled in is the
# version of Thanos's own build; its go.sum is checked by `go build` (-mod=readonly), the rest
# against sum.golang.org. Thanos needs Go >= 1.26.10: an older Go fetches that toolchain from the
# module proxy (GOTOOLCHAIN=auto; golang.org/toolchain, checked against sum.golang.org too).
# Rebuilt when the version or the tool's sources change (.source holds their SHA-256).
src="$REPO/tests/tools/thanos-rules-check"
dir="$CACHE/thanos-rules-check-$THANOS_VERSION"
grep -q "^	github.com/thanos-io/thanos v$THANOS_VERSION\$" "$src/go.mod" \
    || { log "$src/go.mod does not require github.com/thanos-io/thanos v$THANOS_VERSION"; exit 1; }
source_sha=$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -d' ' -f1)
if [ -x "$dir/thanos-rules-check" ] && [ "$(cat "$dir/.source" 2>/dev/null)" = "$source_sha" ]; then
    log "thanos-rules-check-$THANOS_VERSION cached in $dir"
else
    ensure_ca_certificates
    GO=${GO:-$(find_go)}
    log "building thanos-rules-check-$THANOS_VERSION with $GO (a minute or two the first time)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$src" && GOTOOLCHAIN=auto "$GO" build -mod=readonly -buildvcs=false -trimpath \
        -ldflags "-s -w" -o "$dir.tmp/thanos-rules-check" .) || { rm -rf "$dir.tmp"; exit 1; }
    echo "$source_sha" > "$dir.tmp/.source"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
link "$dir/thanos-rules-check"

# --- prometheus-operator CRD schemas ------------------------------------------------------------
dir="$CACHE/prometheus-operator-$OPERATOR_VERSION"
if [ ! -f "$dir/.complete" ]; then
    ensure_ca_certificates
    GO=${GO:-$(find_go)}
    module_dir=$(cd "$CACHE" && "$GO" mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$OPERATOR_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [ -d "$module_dir/example/prometheus-operator-crd" ] \
        || { log "go mod download gave no module directory for prometheus-operator"; exit 1; }
    rm -rf "$dir" && mkdir -p "$dir"
    for crd in $CRDS; do
        cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$dir/"
    done
    cp "$module_dir/LICENSE" "$dir/LICENSE"
    touch "$dir/.complete"
    log "copied the $OPERATOR_VERSION CRDs ($CRDS) into $dir"
fi
mkdir -p "$TOOLS/schemas"
ln -sfn "$dir" "$TOOLS/schemas/prometheus-operator-$OPERATOR_VERSION"

# --- kustomize (only if kubectl, which embeds it, is missing) -----------------------------------
if command -v kubectl >/dev/null 2>&1; then
    log "using kubectl kustomize ($(command -v kubectl))"
else
    dir="$CACHE/kustomize-$KUSTOMIZE_VERSION"
    if [ ! -x "$dir/kustomize" ]; then
        ensure_ca_certificates
        GO=${GO:-$(find_go)}
        GOBIN="$dir" "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
        log "installed kustomize $KUSTOMIZE_VERSION into $dir"
    fi
    link "$dir/kustomize"
fi

"$TOOLS/bin/prometheus" --version 2>&1 | head -n 1
"$TOOLS/bin/alertmanager" --version 2>&1 | head -n 1
"$TOOLS/bin/thanos-rules-check" --version
