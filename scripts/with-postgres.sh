#!/usr/bin/env bash
# Run a command beside a throwaway PostgreSQL 15 server.
#
#   scripts/with-postgres.sh [--durable] CMD [ARG...]
#
# Starts a private server on a free port of 127.0.0.1, in a fresh temporary directory, with an
# empty database `meterworks_test`, and runs CMD with
#   METERWORKS_TEST_POSTGRES_URL=postgresql://USER@127.0.0.1:PORT/meterworks_test
# exported. Whatever CMD's exit status, the server is stopped and its directory deleted; the
# script exits with CMD's status.
#
# By default the server trades durability for speed (fsync, synchronous_commit and
# full_page_writes off): right for tests, whose data is thrown away. Benchmarks must NOT use
# those settings, or they measure a database that does not keep its promises: `--durable`
# leaves them at PostgreSQL's defaults, and `make bench` passes it.
set -euo pipefail

durable=0
if [[ "${1:-}" == "--durable" ]]; then
    durable=1
    shift
fi
if [[ $# -eq 0 ]]; then
    echo "usage: $0 [--durable] CMD [ARG...]" >&2
    exit 2
fi

say() { echo "with-postgres: $*" >&2; }

# The server binaries: version 15 when present, else the newest installed.
find_bindir() {
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    local candidate
    candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$candidate" && -x "$candidate/postgres" ]]; then
        echo "$candidate"
        return 0
    fi
    return 1
}

install_postgres() {
    if [[ $(id -u) -ne 0 ]]; then
        say "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin, and only root"
        say "can install them. Install them first, e.g.: sudo apt-get install -y postgresql"
        exit 1
    fi
    say "installing PostgreSQL (apt-get install postgresql)"
    # The package would otherwise create and start a system-wide `main` cluster on port 5432,
    # which nothing here uses and which would be left running.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/meterworks.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    # Should the package still have started a cluster, stop it: nothing may be left running.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header | awk '$4 == "online" {print $1, $2}' |
            while read -r cluster_version cluster_name; do
                pg_ctlcluster "$cluster_version" "$cluster_name" stop || true
            done
    fi
}

bindir=$(find_bindir) || {
    install_postgres
    bindir=$(find_bindir) || { say "PostgreSQL installed, yet no server binaries found"; exit 1; }
}
version=$("$bindir/postgres" --version | awk '{print $3}')
if [[ "$version" != 15.* ]]; then
    say "warning: PostgreSQL 15 is not installed; using $version from $bindir"
fi

# PostgreSQL refuses to run as root: as root, the server runs as an unprivileged system user.
if [[ $(id -u) -eq 0 ]]; then
    pg_user=postgres
    if ! id -u "$pg_user" >/dev/null 2>&1; then
        pg_user=meterworks-pg
        id -u "$pg_user" >/dev/null 2>&1 \
            || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
    fi
    as_pg() { (cd "$workdir" && runuser -u "$pg_user" -- "$@"); }
else
    pg_user=$(id -un)
    as_pg() { (cd "$workdir" && "$@"); }
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/meterworks-pg.XXXXXX")
datadir="$workdir/data"
logfile="$workdir/server.log"
started=0

cleanup() {
    if [[ $started -eq 1 ]]; then
        as_pg "$bindir/pg_ctl" stop -D "$datadir" -m fast -w -t 60 >/dev/null 2>&1 \
            || as_pg "$bindir/pg_ctl" stop -D "$datadir" -m immediate -w -t 30 >/dev/null 2>&1 \
            || say "could not stop the server in $datadir"
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chmod 755 "$workdir"
[[ $(id -u) -ne 0 ]] || chown "$pg_user" "$workdir"

# C.UTF-8 sorts text by code point, as SQLite does, so both dialects order strings alike.
as_pg "$bindir/initdb" -D "$datadir" -U "$pg_user" -A trust --encoding=UTF8 --locale=C.UTF-8 \
    --no-sync >"$workdir/initdb.log" 2>&1 || {
    cat "$workdir/initdb.log" >&2
    say "initdb failed"
    exit 1
}

# pg_ctl hands these to a shell: the socket directory is quoted for that.
options="-c listen_addresses=127.0.0.1 -k '$workdir' -c max_connections=200"
if [[ $durable -eq 0 ]]; then
    # Tests only: a crash loses data, which a test server never keeps anyway.
    options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Another process may take the port between the probe and the server's bind: try a few ports.
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    started=1
    if as_pg "$bindir/pg_ctl" start -D "$datadir" -l "$logfile" -w -t 60 \
        -o "-p $port $options" >/dev/null 2>&1; then
        break
    fi
    started=0
    if [[ $attempt -eq 5 ]]; then
        cat "$logfile" >&2 || true
        say "the server did not start"
        exit 1
    fi
done

for _ in $(seq 1 100); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$pg_user" -d postgres; then
        break
    fi
    sleep 0.1
done
"$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$pg_user" -d postgres || {
    cat "$logfile" >&2
    say "the server does not answer on port $port"
    exit 1
}
"$bindir/psql" -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$pg_user" -d postgres \
    -c "CREATE DATABASE meterworks_test" >/dev/null

export METERWORKS_TEST_POSTGRES_URL="postgresql://$pg_user@127.0.0.1:$port/meterworks_test"
say "PostgreSQL $version (durable=$durable) at $METERWORKS_TEST_POSTGRES_URL"

set +e
"$@"
status=$?
set -e
exit $status
