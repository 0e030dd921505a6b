#!/usr/bin/env bash
# Make sure the services the tests (postgres redis) or the local run (redis) need are answering,
# starting any that is not. Usage: scripts/ensure-services.sh redis [postgres]
set -euo pipefail

wait_for() { # name, probe command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "ensure-services: $name did not come up" >&2
  return 1
}

redis_up() { python3 - <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 6379), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
}

postgres_up() {
  if command -v pg_isready >/dev/null; then pg_isready -q -h 127.0.0.1 -p 5432; else
    python3 -c "import socket; socket.create_connection(('127.0.0.1', 5432), timeout=1)"; fi
}

for svc in "$@"; do
  case "$svc" in
    redis)
      if ! redis_up; then
        echo "ensure-services: starting redis"
        if ! command -v redis-server >/dev/null; then
          apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
        fi
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
          --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
        wait_for redis redis_up
      fi ;;
    postgres)
      if ! postgres_up; then
        echo "ensure-services: starting postgresql"
        if ! ls /etc/postgresql >/dev/null 2>&1; then
          apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
        fi
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
        wait_for postgresql postgres_up
      fi ;;
    *) echo "ensure-services: unknown service $svc" >&2; exit 2 ;;
  esac
done
