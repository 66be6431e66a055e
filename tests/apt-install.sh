#!/bin/sh
# apt-get install the Debian packages named as arguments (no recommends, no questions), with
# sudo unless root; `apt-get update` only when the install fails (a fresh machine has no lists).
set -eu
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
$APT install -y -qq --no-install-recommends "$@" \
    || { $APT update -qq && $APT install -y -qq --no-install-recommends "$@"; }
