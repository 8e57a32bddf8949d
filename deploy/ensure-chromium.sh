#!/usr/bin/env bash
# The SSI portal's browser tests drive Debian's Chromium (Playwright's own download does not
# work on these machines). Install it where we can; the tests skip with a message otherwise.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"; exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  exit 0
fi
echo "Chromium is not installed (apt-get install chromium); browser tests will be skipped" >&2
exit 1
