#!/bin/sh
# Install promtool/prometheus and amtool/prometheus-alertmanager (Debian/Ubuntu) for the alert tests.
#
# Idempotent. Debian's packages start daemons listening on 0.0.0.0 as soon as they are installed;
# a policy-rc.d that exits 101 forbids that during the install, and afterwards any daemon that
# was started anyway (e.g. by systemd ignoring policy-rc.d) is stopped. A policy-rc.d that was
# already present (Docker images ship one) is put back untouched.
set -eu

PACKAGES="prometheus prometheus-alertmanager"
POLICY=/usr/sbin/policy-rc.d
BACKUP="$POLICY.gateway-monitor-backup"

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

have_tools() {
    command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
        && command -v prometheus >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1
}

restore_policy() {
    if [ -e "$BACKUP" ]; then
        $SUDO mv -f "$BACKUP" "$POLICY"
    else
        $SUDO rm -f "$POLICY"
    fi
}

stop_daemons() {
    # The Debian unit / init script names; harmless when absent.
    for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
        if command -v systemctl >/dev/null 2>&1; then
            if [ -d /run/systemd/system ]; then
                $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
            fi
            # Also keeps them from starting at the next boot (works without a running systemd).
            $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
        fi
        if [ -x "/etc/init.d/$svc" ]; then
            $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        fi
    done
    # Anything still running as the packaged daemon user (never processes started by tests,
    # which run as the invoking user with their own flags under a temp dir).
    command -v pgrep >/dev/null 2>&1 || return 0
    for bin in /usr/bin/prometheus /usr/bin/prometheus-alertmanager /usr/bin/prometheus-node-exporter; do
        for pid in $(pgrep -x -f "$bin( .*)?" 2>/dev/null || true); do
            if [ "$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ')" = "prometheus" ]; then
                $SUDO kill "$pid" 2>/dev/null || true
            fi
        done
    done
}

if ! have_tools; then
    if [ -e "$POLICY" ] && [ ! -e "$BACKUP" ]; then
        $SUDO cp -p "$POLICY" "$BACKUP"
    fi
    trap restore_policy EXIT INT TERM
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    # `env` because sudo drops the caller's environment. Try without `apt-get update` first so
    # a re-run on a machine with fresh lists stays offline-fast.
    APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
    if ! $APT install -y --no-install-recommends $PACKAGES; then
        $APT update
        $APT install -y --no-install-recommends $PACKAGES
    fi
    restore_policy
    trap - EXIT INT TERM
fi

stop_daemons

if ! have_tools; then
    echo "install-tools.sh: promtool/amtool/prometheus/prometheus-alertmanager still missing" >&2
    exit 1
fi
promtool --version 2>&1 | head -n 1
amtool --version 2>&1 | head -n 1
