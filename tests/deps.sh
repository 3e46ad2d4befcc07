#!/bin/sh
# Install the Debian packages tierq needs, if any is missing. As root it installs them; otherwise
# it prints the one apt-get line to run and fails.
# time and curl (the command-line tools) are used by make bench only; tzdata holds the zone files
# schedules are computed in (common/tzone.c reads /usr/share/zoneinfo).
# Extra package names as arguments are checked too (make fuzz: clang and its libFuzzer runtime).
PKGS="make gcc libcurl4-openssl-dev libjsmn-dev libzstd-dev libpq-dev postgresql tzdata time curl $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null || { echo "deps: apt-get failed"; exit 1; }
else
    echo "deps: missing packages; run as root:"
    echo "  apt-get install -y$missing"
    exit 1
fi
