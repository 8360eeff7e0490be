#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests of store/postgres.
#
#   eval "$(./scripts/postgres.sh start)"   # starts one, exports CANOPY_TEST_POSTGRES and CANOPY_PG_DIR
#   ./scripts/postgres.sh stop [DIR]       # stops it (DIR defaults to $CANOPY_PG_DIR) and deletes its data
#
# start installs Debian's postgresql package only if no initdb/pg_ctl is found
# under /usr/lib/postgresql/*/bin, creates a cluster in a new temporary
# directory (trust authentication, superuser "postgres"), and starts it on the
# first free port from 54329 up, listening on 127.0.0.1 only, with its socket
# in its own directory. Run as root, the server runs as the "postgres" OS
# user (initdb refuses to run as root). Only the export lines go to stdout;
# progress goes to stderr. Each start makes its own cluster, so several test
# runs on one machine do not share a server.
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# bindir prints the newest /usr/lib/postgresql/<version>/bin holding both
# initdb and pg_ctl, or nothing.
bindir() {
  local d best=""
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then best=$d; fi
  done
  printf '%s' "$best"
}

# as_owner runs a command as the user that owns the cluster: "postgres" when
# we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_free() {
  ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

start() {
  cd /tmp
  bin=$(bindir)
  if [ -z "$bin" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root: apt-get install -y postgresql"
    log "installing postgresql from Debian's packages"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    bin=$(bindir)
    [ -n "$bin" ] || die "postgresql installed, but no initdb and pg_ctl under /usr/lib/postgresql/*/bin"
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    die "running as root, but there is no 'postgres' OS user to run the server as"
  fi
  command -v ss >/dev/null || die "ss (iproute2) is needed to find a free port"

  dir=$(mktemp -d /tmp/canopy-pg.XXXXXX)
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  # Remove the directory if anything below fails before the server is up.
  trap 'as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

  local port=54329 tries=0
  while :; do
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || die "no port from 54329 to $port could be used"
    if port_free "$port"; then
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start >&2; then
        break
      fi
      # Another run may have taken the port between the check and the start.
      log "could not start on port $port; trying the next one"
      tail -5 "$dir/server.log" >&2 || true
    fi
    port=$((port + 1))
  done
  trap - EXIT
  log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  printf 'export CANOPY_PG_DIR=%s\n' "$dir"
  printf 'export CANOPY_TEST_POSTGRES=%s\n' "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

stop() {
  local dir=${1:-${CANOPY_PG_DIR:-}}
  [ -n "$dir" ] || die "stop: which server? pass its directory or set CANOPY_PG_DIR (start exports it)"
  case "$dir" in
    /tmp/canopy-pg.*) ;;
    *) die "stop: $dir is not a directory made by postgres.sh start" ;;
  esac
  [ -d "$dir" ] || { log "stop: $dir does not exist (already stopped)"; return 0; }
  local bin
  bin=$(bindir)
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 \
      || as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $0 start | stop [DIR]" ;;
esac
