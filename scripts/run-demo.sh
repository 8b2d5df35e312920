#!/usr/bin/env bash
# `make run`: the demo, with the local broker started for it unless one runs (or
# RUM_KAFKA_BOOTSTRAP is set); on exit or Ctrl-C whatever was started here is stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
exec scripts/broker.sh with .venv/bin/rum-pipeline demo "$@"
