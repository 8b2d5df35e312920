#!/usr/bin/env bash
# `make run`: the demo, then the answer to the guide's question - average cart value by country
# over the last day - from `rum-pipeline query`. The local broker is started for it unless one
# runs (or RUM_KAFKA_BOOTSTRAP is set); on exit or Ctrl-C whatever was started here is stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
QUERY=(cart_value_by_country --last 1d --agg avg,count,p95 --top 10 --by count)
if [ "${1:-}" = "--with-broker" ]; then
  shift
  .venv/bin/rum-pipeline demo "$@" || exit $?
  echo
  echo "Average cart value by country over the last day (rolling 24 h):"
  echo "\$ rum-pipeline query ${QUERY[*]}"
  exec .venv/bin/rum-pipeline query "${QUERY[@]}"
fi
exec scripts/broker.sh with "$0" --with-broker "$@"
