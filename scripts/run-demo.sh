#!/usr/bin/env bash
# `make run`: `rum-pipeline serve` (the explorer and the monitors) in the background, the demo,
# the answer to the guide's question - average cart value by country over the last day - from
# `rum-pipeline query`, then the monitors the demo traffic tripped. The local broker is started
# for it unless one runs (or kafka.bootstrap is set); on exit or Ctrl-C whatever was started
# here is stopped. In a terminal, serve stays up after the demo until Ctrl-C.
# SERVE_PORT: the explorer's port (default 8081; another free one when it is taken).
set -uo pipefail
cd "$(dirname "$0")/.."
QUERY=(cart_value_by_country --last 1d --agg avg,count,p95 --top 10 --by count)
#: The monitor of config/rollups.yaml that the demo traffic trips.
DEMO_MONITOR=demo_checkout_rush
CLI=.venv/bin/rum-pipeline

# Start serve on port $1; sets SERVE_PID and URL (empty when it did not start).
start_serve() {
  : >"$SERVE_LOG"
  "$CLI" serve --port "$1" --monitor-interval 2 >>"$SERVE_LOG" 2>&1 &
  SERVE_PID=$!
  URL=
  for _ in $(seq 1 120); do
    URL=$(sed -n 's/^serve: listening on \(http:[^ ]*\).*/\1/p' "$SERVE_LOG" | head -n 1)
    [ -n "$URL" ] && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.5
  done
  return 1
}

stop_serve() {
  if [ -n "${SERVE_PID:-}" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
    kill -TERM "$SERVE_PID" 2>/dev/null
    wait "$SERVE_PID" 2>/dev/null
  fi
}

if [ "${1:-}" = "--with-broker" ]; then
  shift
  "$CLI" topics create >/dev/null || exit $?
  DATA=${RUM_WORKER__DATA_DIR:-${RUM_DATA_DIR:-.rum-data}}  # worker.data_dir, nested name first
  mkdir -p "$DATA"
  SERVE_LOG="$DATA/demo-serve.log"
  trap stop_serve EXIT
  if ! start_serve "${SERVE_PORT:-8081}"; then
    echo "serve could not use port ${SERVE_PORT:-8081} (see $SERVE_LOG); trying a free port"
    stop_serve
    start_serve 0 || { echo "serve did not start: see $SERVE_LOG" >&2; exit 1; }
  fi
  echo "Explorer: $URL/ (rum-pipeline serve, log: $SERVE_LOG)"
  "$CLI" demo "$@" || exit $?
  echo
  echo "Average cart value by country over the last day (rolling 24 h):"
  echo "\$ rum-pipeline query ${QUERY[*]}"
  "$CLI" query "${QUERY[@]}" || exit $?
  echo
  echo "Monitors evaluated by serve every 2 s (config/rollups.yaml); the demo traffic trips $DEMO_MONITOR:"
  .venv/bin/python scripts/show_monitors.py "$URL" --wait-for "$DEMO_MONITOR" --timeout 60 || exit $?
  echo
  echo "Explorer: $URL/"
  if [ -t 0 ]; then
    echo "serve keeps running for the explorer; Ctrl-C stops it."
    wait "$SERVE_PID"
  fi
  exit 0
fi
exec scripts/broker.sh with "$0" --with-broker "$@"
