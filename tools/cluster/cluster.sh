#!/usr/bin/env bash
# A local chat cluster: redis-server, N reactor-server instances sharing rooms through it
# (--hub redis://...) and HAProxy in front (tcp mode, health checks, balance leastconn), all on
# 127.0.0.1 with free ports, their config, logs and pids in one directory.
#
#   cluster.sh start [DIR]          start everything (DIR: new temp dir); prints DIR
#   cluster.sh stop DIR             stop everything started there, remove nothing
#   cluster.sh restart-redis DIR    kill redis-server (SIGKILL) and start it on the same port
#   cluster.sh kill-instance DIR I  SIGKILL instance I (1..N)
#   cluster.sh start-instance DIR I start instance I again (new port, HAProxy keeps its old one:
#                                   use it for tests of the survivors, not to rebuild the pool)
#
# DIR/cluster.env holds REDIS_PORT, HAPROXY_PORT, INSTANCE_PORTS, HAPROXY_SOCKET for scripts.
# Environment: REACTOR_SERVER (default: reactor-server next to this script's build or on PATH),
# INSTANCES (3), TTL (seconds, 3), REDIS_SERVER, HAPROXY.
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or time runs out.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

find_server() {
  if [ -n "${REACTOR_SERVER:-}" ]; then echo "$REACTOR_SERVER"; return; fi
  local here; here=$(cd "$(dirname "$0")" && pwd)
  for candidate in "$here/../../build/tools/reactor-server" "$(command -v reactor-server || true)"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "reactor-server not found: set REACTOR_SERVER"
}

start_redis() {
  local dir=$1 port=$2
  "${REDIS_SERVER:-redis-server}" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --client-output-buffer-limit "pubsub 32mb 8mb 60" \
    >>"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  wait_for 10 redis_ping "$port" || die "redis-server on port $port does not answer PING (see $dir/redis.log)"
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# start_instance DIR I: starts reactor-server I and records its port.
start_instance() {
  local dir=$1 i=$2
  local out="$dir/instance$i.out"
  : >"$out"
  "$SERVER" --protocol chat --listen tcp://127.0.0.1:0 \
    --hub "redis://127.0.0.1:$REDIS_PORT?ttl=${TTL:-3}" >"$out" 2>"$dir/instance$i.log" &
  echo $! >"$dir/instance$i.pid"
  wait_for 10 grep -q '^listening on ' "$out" ||
    die "instance $i did not start: $(cat "$dir/instance$i.log")"
  sed -n 's/^listening on tcp:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out" | head -1 >"$dir/instance$i.port"
}

write_haproxy_config() {
  local dir=$1
  {
    cat <<CFG
global
  maxconn ${MAXCONN:-8000}
  stats socket $dir/haproxy.sock mode 600 level admin
  pidfile $dir/haproxy.pid

defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  retries 3
  option redispatch

frontend chat
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend chats

backend chats
  balance leastconn
  # A chat server greets every connection: a health check is one greeting read.
  option tcp-check
  tcp-check connect
  tcp-check expect string welcome
CFG
    for i in $(seq 1 "$N"); do
      echo "  server s$i 127.0.0.1:$(cat "$dir/instance$i.port") check inter 500ms fall 2 rise 2"
    done
  } >"$dir/haproxy.cfg"
}

load_env() {
  local dir=$1
  [ -f "$dir/cluster.env" ] || die "$dir: no cluster.env (not started by cluster.sh?)"
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
}

# Stops everything with a pid file in DIR: HAProxy first, Redis last.
stop_all() {
  local dir=$1 file
  stop_pid_file "$dir/haproxy.pid"
  for file in "$dir"/instance*.pid; do stop_pid_file "$file"; done
  stop_pid_file "$dir/redis.pid"
}

# Running and not a zombie (our children outlive this script; whoever adopts them reaps them).
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
dead() { ! alive "$1"; }

stop_pid_file() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 10 dead "$pid" || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

cmd=${1:-}
case "$cmd" in
  start)
    SERVER=$(find_server)
    N=${INSTANCES:-3}
    command -v "${HAPROXY:-haproxy}" >/dev/null || die "haproxy not found"
    dir=${2:-$(mktemp -d /tmp/reactor-cluster-XXXXXX)}
    mkdir -p "$dir"
    trap 'stop_all "$dir"' EXIT  # a failed start leaves nothing running
    REDIS_PORT=$(free_port)
    start_redis "$dir" "$REDIS_PORT"
    ports=()
    for i in $(seq 1 "$N"); do
      start_instance "$dir" "$i"
      ports+=("$(cat "$dir/instance$i.port")")
    done
    HAPROXY_PORT=$(free_port)
    write_haproxy_config "$dir"
    "${HAPROXY:-haproxy}" -c -q -f "$dir/haproxy.cfg" || die "bad HAProxy config $dir/haproxy.cfg"
    "${HAPROXY:-haproxy}" -D -f "$dir/haproxy.cfg" 2>>"$dir/haproxy.log" ||
      die "haproxy did not start (see $dir/haproxy.log)"
    wait_for 10 test -s "$dir/haproxy.pid" || die "haproxy wrote no pid file"
    cat >"$dir/cluster.env" <<ENV
REDIS_PORT=$REDIS_PORT
HAPROXY_PORT=$HAPROXY_PORT
HAPROXY_SOCKET=$dir/haproxy.sock
INSTANCES=$N
INSTANCE_PORTS="${ports[*]}"
SERVER=$SERVER
TTL=${TTL:-3}
ENV
    trap - EXIT
    echo "$dir"
    ;;
  stop)
    dir=${2:?usage: cluster.sh stop DIR}
    [ -d "$dir" ] || die "$dir: no such directory"
    stop_all "$dir"
    ;;
  restart-redis)
    dir=${2:?usage: cluster.sh restart-redis DIR}
    load_env "$dir"
    pid=$(cat "$dir/redis.pid")
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 10 dead "$pid" || die "redis-server $pid does not die"
    start_redis "$dir" "$REDIS_PORT"
    ;;
  kill-instance)
    dir=${2:?usage: cluster.sh kill-instance DIR I}
    i=${3:?usage: cluster.sh kill-instance DIR I}
    load_env "$dir"
    kill -KILL "$(cat "$dir/instance$i.pid")"
    rm -f "$dir/instance$i.pid"
    ;;
  start-instance)
    dir=${2:?usage: cluster.sh start-instance DIR I}
    i=${3:?usage: cluster.sh start-instance DIR I}
    load_env "$dir"
    start_instance "$dir" "$i"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
