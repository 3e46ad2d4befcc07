#!/bin/sh
# Start or stop a private PostgreSQL server for tests, the demo and benchmarks.
#   tests/pg.sh start DIR   initdb into DIR/data (once), start it listening on a unix socket in DIR
#                           only (no TCP), print the conninfo on stdout
#   tests/pg.sh stop DIR    stop it (fast shutdown)
# PostgreSQL refuses to run as root, so as root the server runs as the unprivileged user "nobody"
# (DIR is handed to that user); otherwise as the current user.
set -eu
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "pg.sh: no PostgreSQL server found under /usr/lib/postgresql (run make deps)" >&2; exit 1; }
# The server's programs start in DIR: as "nobody" the caller's working directory (a clone under a
# private home) may be out of reach, and initdb/pg_ctl complain when they cannot enter it.
as_owner() {
    if [ "$(id -u)" = 0 ]; then (cd "$dir" && runuser -u nobody -- "$@"); else "$@"; fi
}
case "$cmd" in
start)
    if [ "$(id -u)" = 0 ]; then chown -R nobody "$dir"; chmod 755 "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bindir/initdb" -D "$dir/data" -U tierq --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        # fsync off: a test database is thrown away; it makes runs faster and never affects results.
        as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "${PG_EXTRA_OPTS:-} -k '$dir' -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB" \
            >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    fi
    echo "host=$dir user=tierq dbname=postgres"
    ;;
stop)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
restart)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -l "$dir/server.log" restart >/dev/null
    ;;
*)
    echo "usage: tests/pg.sh start|stop|restart DIR" >&2; exit 2 ;;
esac
