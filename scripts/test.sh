#!/usr/bin/env bash
# Runs the whole test suite with the broker the Kafka tests need (started unless one
# runs or RUM_KAFKA_BOOTSTRAP names a cluster; stopped afterwards if started here).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/broker.sh with .venv/bin/pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: failing, an empty run proves nothing" >&2
  rc=1
fi
exit "$rc"
