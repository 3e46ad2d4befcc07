#!/bin/sh
# Install the Debian packages tierq needs, if any is missing. As root it installs them; otherwise
# it prints the one apt-get line to run and fails.
# time and curl (the command-line tools) are used by make bench only; tzdata holds the zone files
# schedules are computed in (common/tzone.c reads /usr/share/zoneinfo); postgresql-NN-cron is the
# pg_cron extension, for the test of the README's pg_cron recipe only.
# Extra package names as arguments are checked too (make fuzz: clang and its libFuzzer runtime).
PKGS="make gcc libcurl4-openssl-dev libjsmn-dev libzstd-dev libpq-dev postgresql tzdata time curl $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# pg_cron for the server's major version (tests/integration/pgcron.sh: the pg_cron recipe of the
# README); the version is known once postgresql is installed, so it is a second step.
cron_pkg() {
    maj=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$maj" ] && echo "postgresql-$maj-cron"
}
install() {
    if [ "$(id -u)" = 0 ]; then
        echo "deps: installing$1"
        export DEBIAN_FRONTEND=noninteractive
        { [ -n "${updated:-}" ] || apt-get update -qq; } && apt-get install -y -qq $1 >/dev/null ||
            { echo "deps: apt-get failed"; exit 1; }
        updated=1
    else
        echo "deps: missing packages; run as root:"
        echo "  apt-get install -y$1"
        exit 1
    fi
}
[ -z "$missing" ] || install "$missing"
p=$(cron_pkg)
if [ -n "$p" ] && ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    install " $p"
fi
exit 0
