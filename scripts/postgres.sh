#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server the tests may create databases on: the one at
# $ALOFT_TEST_POSTGRES_URL (default: the machine's own on 127.0.0.1:5432 as user postgres) when it
# answers, else a private one started on loopback in $ALOFT_PG_DIR (default
# target/postgres), from Debian's postgresql package (installed when absent).
#   scripts/postgres.sh         start (if needed) and print the URL
#   scripts/postgres.sh stop    stop the private server, if this script started one
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${ALOFT_PG_DIR:-$PWD/target/postgres}
port=${ALOFT_PG_PORT:-55432}
private="postgres://postgres@127.0.0.1:$port/postgres"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ "${1:-}" = stop ]; then
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_postgres "$(bin)/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
  fi
  exit 0
fi

answers() { psql "$1" -qtAc 'SELECT 1' >/dev/null 2>&1; }

if ! command -v psql >/dev/null || [ -z "$(bin)" ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

url=${ALOFT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if answers "$url"; then
  echo "$url"
  exit 0
fi
if answers "$private"; then
  echo "$private"
  exit 0
fi

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_postgres "$(bin)/initdb" -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
fi
# Loopback only, its socket in its own folder: nothing else on the machine is touched.
as_postgres "$(bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
answers "$private" || { echo "the private PostgreSQL does not answer at $private" >&2; exit 1; }
echo "$private"
