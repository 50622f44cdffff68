#!/usr/bin/env bash
# Installs what `scripts/test-all.sh` needs and starts the services its tests use, when they are
# missing: the wasm32-unknown-unknown target, cargo-nextest, a nightly toolchain with cargo-fuzz
# (for the fuzz targets), PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) and NATS on
# 127.0.0.1:4222. Idempotent: what is there already is left alone. `scripts/test-all.sh` runs it
# first, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
if [ "${FUZZ_SECONDS:-10}" != 0 ] && [ -d fuzz ]; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fi

# Debian packages are installed only when missing, and only as root (CI and these machines run
# as root); elsewhere the message says what to install.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $*; install it (Debian: apt-get install $*)" >&2
    return 1
  fi
  if [ -z "${apt_updated:-}" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_for_port() {
  for _ in $(seq 60); do port_open "$1" && return 0; sleep 1; done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n 1)" main start
  wait_for_port 5432
fi
if ! port_open 4222; then
  if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    apt_install nats-server
  fi
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$nats" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for_port 4222
fi
