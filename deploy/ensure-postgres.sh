#!/usr/bin/env bash
# Make sure the local PostgreSQL answers on 127.0.0.1:5432 (tests of the PostgreSQL store use it).
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL answers on 127.0.0.1:5432"; exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && { echo "PostgreSQL is up"; exit 0; }
    sleep 1
  done
fi
echo "PostgreSQL is not available on 127.0.0.1:5432; its tests will be skipped" >&2
exit 0
