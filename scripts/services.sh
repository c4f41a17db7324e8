#!/usr/bin/env bash
# Starts/stops a local Postgres 15 cluster and Redis under var/ and writes var/services.env.
# Usage: scripts/services.sh start|stop|status
# Ports default to a value derived from this checkout's path so that several checkouts
# on one machine never collide; override with QUIZAPP_PG_PORT / QUIZAPP_REDIS_PORT.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VAR="$ROOT/var"
mkdir -p "$VAR"
offset=$(( $(printf '%s' "$ROOT" | cksum | cut -d' ' -f1) % 700 ))
PG_PORT="${QUIZAPP_PG_PORT:-$((55100 + offset))}"
REDIS_PORT="${QUIZAPP_REDIS_PORT:-$((56100 + offset))}"
PG_BIN="${QUIZAPP_PG_BIN:-$(dirname "$(command -v pg_ctl || echo /usr/local/bin/pg_ctl)")}"
REDIS_DIR="$VAR/redis"
PG_LOG="$VAR/postgres.log"

as_pg_user() {
  # initdb refuses root: run the cluster as the 'postgres' OS user when we are root.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_data_dir() {
  local d="$VAR/pgdata"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$VAR"; then
    # The checkout is not traversable by the postgres user (e.g. under /root): keep the
    # cluster in a per-checkout directory it can reach, linked from var/pgdata.
    local real="/var/tmp/quizapp-pg-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    mkdir -p "$real" && chown postgres "$real" && chmod 700 "$real"
    ln -sfn "$real" "$d"
    echo "$real"
  else
    mkdir -p "$d"
    [ "$(id -u)" -eq 0 ] && chown postgres "$d"
    chmod 700 "$d"
    echo "$d"
  fi
}

start_postgres() {
  local data; data="$(pg_data_dir)"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg_user "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
  fi
  touch "$PG_LOG"; [ "$(id -u)" -eq 0 ] && chown postgres "$PG_LOG"
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$data" -l "$PG_LOG" -o "-p $PG_PORT" -w -t 60 start >/dev/null
  fi
  for db in quizapp quizapp_test; do
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
      psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
  done
  echo "$data" > "$VAR/pgdata.path"
}

stop_postgres() {
  [ -f "$VAR/pgdata.path" ] || return 0
  local data; data="$(cat "$VAR/pgdata.path")"
  if as_pg_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
}

start_redis() {
  mkdir -p "$REDIS_DIR"
  if [ -f "$REDIS_DIR/redis.pid" ] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null; then
    return 0
  fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
    --save '' --appendonly no --maxclients 10000 --tcp-backlog 511
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

write_env() {
  # Only what the caller did not set: an operator's DATABASE_URL / REDIS_URL always wins.
  {
    echo "# written by scripts/services.sh"
    if [ -z "${DATABASE_URL:-}" ]; then
      echo "DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/quizapp"
      echo "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/quizapp_test"
      echo "QUIZAPP_PGDATA=$(cat "$VAR/pgdata.path")"
      echo "QUIZAPP_PG_PORT=$PG_PORT"
      echo "QUIZAPP_PG_LOG=$PG_LOG"
    fi
    if [ -z "${REDIS_URL:-}" ]; then
      echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
      echo "TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/1"
      echo "QUIZAPP_REDIS_PORT=$REDIS_PORT"
    fi
  } > "$VAR/services.env"
}

case "${1:-}" in
  start)
    [ -n "${DATABASE_URL:-}" ] || start_postgres
    [ -n "${REDIS_URL:-}" ] || start_redis
    write_env
    ;;
  stop)
    stop_redis
    stop_postgres
    ;;
  status)
    cat "$VAR/services.env" 2>/dev/null || echo "not started"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
