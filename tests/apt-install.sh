#!/bin/sh
# apt-get install the Debian packages named as arguments (no recommends, no questions), with
# sudo unless root; `apt-get update` only when the install fails (a fresh machine has no lists).
# Holds APT_LOCK while it runs: `make test` runs its set-up steps side by side, and apt-get
# fails at once when another apt-get holds dpkg's lock.
set -eu
APT_LOCK=${APT_LOCK:-${TMPDIR:-/tmp}/gateway-monitor-apt.lock}
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
exec 9>"$APT_LOCK"
flock 9
$APT install -y -qq --no-install-recommends "$@" \
    || { $APT update -qq && $APT install -y -qq --no-install-recommends "$@"; }
