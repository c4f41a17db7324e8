#!/usr/bin/env bash
# Starts/stops a local Postgres 15 cluster and Redis under var/ and writes var/services.env.
# Usage: scripts/services.sh start|stop|status|app-port
# Ports default to a value derived from this checkout's path so that several checkouts
# on one machine never collide; override with QUIZAPP_PG_PORT / QUIZAPP_REDIS_PORT. They stay below
# the kernel's ephemeral range (32768 and up by default), which outgoing connections draw from.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VAR="$ROOT/var"
mkdir -p "$VAR"
offset=$(( $(printf '%s' "$ROOT" | cksum | cut -d' ' -f1) % 700 ))
PG_PORT="${QUIZAPP_PG_PORT:-$((25100 + offset))}"
REDIS_PORT="${QUIZAPP_REDIS_PORT:-$((26100 + offset))}"
LOCAL_DB="postgresql://postgres@127.0.0.1:$PG_PORT/quizapp"
LOCAL_TEST_DB="postgresql://postgres@127.0.0.1:$PG_PORT/quizapp_test"
LOCAL_REDIS="redis://127.0.0.1:$REDIS_PORT/0"
LOCAL_TEST_REDIS="redis://127.0.0.1:$REDIS_PORT/1"
PG_BIN="${QUIZAPP_PG_BIN:-$(dirname "$(command -v pg_ctl || echo /usr/local/bin/pg_ctl)")}"
REDIS_DIR="$VAR/redis"
CHECKOUT_ID="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
# Redis: AOF fsynced every second (sessions survive a restart) and a memory cap that evicts only
# keys with an expiry (sessions, limits, caches), never the AI budget or job bookkeeping.
REDIS_MAXMEMORY="${QUIZAPP_REDIS_MAXMEMORY:-256mb}"
# Redis also listens on a Unix socket (the app on the same box talks to it without the loopback
# TCP stack: about a quarter less CPU per page). sun_path holds 107 bytes: a deeper checkout
# keeps TCP only.
REDIS_SOCKET="$REDIS_DIR/redis.sock"
[ "${#REDIS_SOCKET}" -lt 100 ] || REDIS_SOCKET=""

as_pg_user() {
  # initdb refuses root: run the cluster as the 'postgres' OS user when we are root.
  # From /: the postgres user may not be able to enter the current directory (a 0700 checkout).
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_home() {
  # Where the cluster's data dir, log and socket live: var/ when the user running Postgres can
  # reach it, else (root with a checkout under /root or in a 0700 mktemp -d) a per-checkout dir
  # under /var/tmp owned by postgres, linked from var/pg so `ls var/` still finds it.
  if [ "$(id -u)" -eq 0 ] && ! (cd / && runuser -u postgres -- test -x "$VAR"); then
    local real="/var/tmp/quizapp-pg-$CHECKOUT_ID"
    mkdir -p "$real" && chown postgres "$real" && chmod 700 "$real"
    ln -sfn "$real" "$VAR/pg"
    echo "$real"
  else
    mkdir -p "$VAR/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres "$VAR/pg"
    chmod 700 "$VAR/pg"
    echo "$VAR/pg"
  fi
}

pg_socket_dir() {
  # Unix socket paths are limited to 107 bytes: a deep checkout gets a short dir under /var/tmp.
  local home="$1"
  if [ "${#home}" -le 80 ]; then echo "$home"; return; fi
  local short="/var/tmp/quizapp-pgsock-$CHECKOUT_ID"
  mkdir -p "$short"
  [ "$(id -u)" -eq 0 ] && chown postgres "$short"
  chmod 755 "$short"
  echo "$short"
}

start_postgres() {
  local home data log sock
  home="$(pg_home)"
  if [ -f "$VAR/pgdata/PG_VERSION" ] && [ ! -e "$home/data" ]; then
    # A cluster made by an earlier version of this script: keep using it where it is.
    data="$(readlink -f "$VAR/pgdata")"
  else
    data="$home/data"
  fi
  log="$home/postgres.log"
  sock="$(pg_socket_dir "$home")"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg_user mkdir -p "$data"
    as_pg_user chmod 700 "$data"
    as_pg_user "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
  fi
  as_pg_user touch "$log"
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    if ! as_pg_user "$PG_BIN/pg_ctl" -D "$data" -l "$log" -o "-p $PG_PORT -k $sock" -w -t 60 \
      start >/dev/null; then
      echo "postgres did not start; its log ($log):" >&2
      tail -n 20 "$log" >&2 || true
      return 1
    fi
  fi
  for db in quizapp quizapp_test; do
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
      psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
  done
  echo "$data" > "$VAR/pgdata.path"
  echo "$log" > "$VAR/pglog.path"
  echo "$sock" > "$VAR/pgsocket.path"
}

stop_postgres() {
  [ -f "$VAR/pgdata.path" ] || return 0
  local data; data="$(cat "$VAR/pgdata.path")"
  if as_pg_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
}

# One definition, also used by tests/test_redis_persistence.py (`services.sh redis-flags`).
REDIS_PERSISTENCE=(--save "" --appendonly yes --appendfsync everysec
  --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy volatile-lru)

start_redis() {
  mkdir -p "$REDIS_DIR"
  if [ -f "$REDIS_DIR/redis.pid" ] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null; then
    return 0
  fi
  local socket_flags=()
  [ -z "$REDIS_SOCKET" ] || socket_flags=(--unixsocket "$REDIS_SOCKET" --unixsocketperm 700)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
    "${REDIS_PERSISTENCE[@]}" --maxclients 10000 --tcp-backlog 511 "${socket_flags[@]}"
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis did not start; see $REDIS_DIR/redis.log" >&2
  return 1
}

stop_redis() {
  local pidfile="$REDIS_DIR/redis.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

# Unset, or one of this file's own URLs (a recipe that loaded it ran `make services` again, e.g.
# make test's PgBouncer job with DATABASE_URL set to the test database): the local service.
local_db() { case "${DATABASE_URL:-}" in "" | "$LOCAL_DB" | "$LOCAL_TEST_DB") return 0 ;; esac; return 1; }
local_redis() { case "${REDIS_URL:-}" in "" | "$LOCAL_REDIS" | "$LOCAL_TEST_REDIS") return 0 ;; esac; return 1; }

write_env() {
  # Only what the caller did not set: an operator's DATABASE_URL / REDIS_URL always wins.
  {
    echo "# written by scripts/services.sh"
    if local_db; then
      echo "DATABASE_URL=$LOCAL_DB"
      echo "TEST_DATABASE_URL=$LOCAL_TEST_DB"
      echo "QUIZAPP_PGDATA=$(cat "$VAR/pgdata.path")"
      echo "QUIZAPP_PG_PORT=$PG_PORT"
      echo "QUIZAPP_PG_LOG=$(cat "$VAR/pglog.path")"
      echo "QUIZAPP_PG_SOCKET_DIR=$(cat "$VAR/pgsocket.path")"
    fi
    if local_redis; then
      echo "REDIS_URL=$LOCAL_REDIS"
      echo "TEST_REDIS_URL=$LOCAL_TEST_REDIS"
      echo "QUIZAPP_REDIS_PORT=$REDIS_PORT"
      # The same Redis over its Unix socket (make stack and make bench use it), when it has one.
      if [ -n "$REDIS_SOCKET" ] && [ -S "$REDIS_SOCKET" ]; then echo "QUIZAPP_REDIS_SOCKET=$REDIS_SOCKET"; fi
    fi
  } > "$VAR/services.env"
}

case "${1:-}" in
  start)
    if local_db; then start_postgres; fi
    if local_redis; then start_redis; fi
    write_env
    ;;
  stop)
    stop_redis
    stop_postgres
    ;;
  status)
    cat "$VAR/services.env" 2>/dev/null || echo "not started"
    ;;
  redis-flags)
    printf '%q ' "${REDIS_PERSISTENCE[@]}"; echo
    ;;
  app-port)
    # make run: the first free port from 8000 + the checkout's offset, so checkouts never collide.
    port=$((8000 + offset))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
    ;;
  *) echo "usage: $0 start|stop|status|app-port" >&2; exit 2 ;;
esac
