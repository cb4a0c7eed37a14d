#!/usr/bin/env bash
# Make sure PostgreSQL (trust auth for postgres on 127.0.0.1) and Redis answer on localhost:
# start them if installed and stopped, install them with apt-get if absent. Also installs
# Debian's Chromium, which the report's browser test drives.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

wait_until() {  # wait_until SECONDS COMMAND...: poll until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

if ! command -v pg_isready >/dev/null || ! postgres_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -1)
    # Tests connect as postgres over TCP without a password, like the CI machines.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  wait_until 60 postgres_up || { echo "PostgreSQL did not come up" >&2; exit 1; }
fi

if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || { echo "installing Redis"; apt_install redis-server; }
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_until 30 redis_up || { echo "Redis did not come up" >&2; exit 1; }
fi

# The report's browser test drives Debian's Chromium headless.
if ! command -v chromium >/dev/null; then
  echo "installing Chromium (for the report's browser test)"
  apt_install chromium
fi
echo "PostgreSQL and Redis are up; Chromium is installed"
