#!/usr/bin/env bash
# Installs what the real-browser tests need, and nothing when it is all there:
# Debian's chromium (headless, driven by playwright-core; Playwright's own browser
# downloads are never used), tests/browser/node_modules and web/node_modules from their lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${RUM_CHROMIUM:-/usr/bin/chromium}"
BROWSER_DIR=tests/browser

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $* with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    echo "installing $* with sudo apt-get" >&2
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "the browser tests need $*: install them with your package manager" \
      "(Debian/Ubuntu: apt-get install $*), or set RUM_CHROMIUM to a Chromium binary" >&2
    exit 1
  fi
}

if [ ! -x "$CHROMIUM" ]; then
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi

# npm ci again whenever a lock file changed since the last install: the browser tests'
# packages, and web/ (the explorer's charting library, checked against its vendored copy).
for dir in "$BROWSER_DIR" web; do
  stamp="$dir/node_modules/.installed"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ]; then
    echo "installing node packages (npm ci in $dir)" >&2
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$stamp"
  fi
done
