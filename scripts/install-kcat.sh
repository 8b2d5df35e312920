#!/usr/bin/env bash
# Installs kcat from the distribution's packages; the tests use it as an independent Kafka client.
set -euo pipefail
if command -v kcat >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing kcat with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
  sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
else
  echo "kcat is needed by the tests: install it with your package manager (Debian/Ubuntu: apt-get install kcat; macOS: brew install kcat)" >&2
  exit 1
fi
