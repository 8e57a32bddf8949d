#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers: the one DCCSIM_AMQP_URL names, or the local one on
# 127.0.0.1:5672, which is started if installed but stopped, and installed with apt where we can.
set -euo pipefail

url="${DCCSIM_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport=$(python3 - "$url" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or (5671 if u.scheme == 'amqps' else 5672)}")
PY
)
host=${hostport% *}; port=${hostport#* }

answers() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

if answers; then
  echo "RabbitMQ answers at $host:$port"
  exit 0
fi

case "$host" in
  127.0.0.1|localhost|::1) ;;
  *)
    echo "RabbitMQ at $host:$port (DCCSIM_AMQP_URL) does not answer; start it, or unset" \
         "DCCSIM_AMQP_URL to use a local broker." >&2
    exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "RabbitMQ is not installed; installing Debian's rabbitmq-server with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null; }
  else
    cat >&2 <<'MSG'
dccsim needs RabbitMQ and none answers on 127.0.0.1:5672.
  - Debian/Ubuntu:  sudo apt-get install rabbitmq-server
  - macOS:          brew install rabbitmq && brew services start rabbitmq
  - any machine:    docker run -d -p 5672:5672 rabbitmq:3
  - or point dccsim at a broker you have:  export DCCSIM_AMQP_URL=amqp://user:pass@host:5672/
MSG
    exit 1
  fi
fi

echo "starting the local RabbitMQ (rabbitmq-server -detached)"
rabbitmq-server -detached >/dev/null 2>&1 || true
# The node registers 5-13 s after -detached returns; await_startup fails at once until then.
for _ in $(seq 1 60); do
  if rabbitmqctl -q await_startup >/dev/null 2>&1 && answers; then
    echo "RabbitMQ is up"
    exit 0
  fi
  sleep 2
done
echo "RabbitMQ did not come up within 120 s; see /var/log/rabbitmq/" >&2
exit 1
