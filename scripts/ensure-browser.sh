#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed at /usr/bin/chromium for the
# end-to-end tests (Playwright drives it with executable_path; no browser is ever downloaded).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "ensure-browser: installing chromium (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
test -x /usr/bin/chromium
