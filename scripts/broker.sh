#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) for
# development and tests, from Maven Central jars — no Docker needed.
#
#   scripts/broker.sh start   start it, or reuse the one already running
#   scripts/broker.sh stop    stop the broker this script started (and nothing else)
#   scripts/broker.sh status  say whether it runs
#   scripts/broker.sh with CMD [ARGS...]
#                             run CMD with a broker: start one unless one runs, and stop
#                             it afterwards (pass, fail or Ctrl-C) only if it was started here
#   scripts/broker.sh settings  print the port, bootstrap and state folder it would use
#
# Settings: RUM_KAFKA__PORT or RUM_KAFKA_PORT (the pipeline's kafka.port, nested name first;
# default 9092; the controller uses the next port), RUM_KAFKA__BOOTSTRAP or RUM_KAFKA_BOOTSTRAP
# (kafka.bootstrap: when set, nothing is started: that cluster is used),
# RUM_BROKER_HEAP (default 1g), RUM_CACHE_DIR (default ~/.cache/rum-pipeline),
# RUM_BROKER_DIR (state: data, logs, pid; default .broker, relative to the repository).
# Besides PLAINTEXT on the port, the broker listens with SASL_PLAINTEXT (mechanism PLAIN,
# user rum, password rum-secret) on port + 2, for tests of the security settings.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/broker/pom.xml")
CACHE=${RUM_CACHE_DIR:-$HOME/.cache/rum-pipeline}
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
STATE=${RUM_BROKER_DIR:-.broker}
[[ "$STATE" = /* ]] || STATE="$ROOT/$STATE"
# Either name of a setting, as the pipeline reads them (it refuses both at once).
PORT=${RUM_KAFKA__PORT:-${RUM_KAFKA_PORT:-9092}}
BOOTSTRAP=${RUM_KAFKA__BOOTSTRAP:-${RUM_KAFKA_BOOTSTRAP:-}}
CONTROLLER_PORT=$((PORT + 1))
# A SASL_PLAINTEXT listener (mechanism PLAIN, one user) to test the security settings against.
SASL_PORT=$((PORT + 2))
SASL_USER=rum
SASL_PASSWORD=rum-secret
PIDFILE="$STATE/broker.pid"
LOG="$STATE/logs/server.log"
PY=${PYTHON:-"$ROOT/.venv/bin/python"}

say() { echo "broker: $*" >&2; }

need_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=("Java 17+")
  if [ ! -f "$LIBS/.complete" ]; then
    command -v mvn >/dev/null 2>&1 || missing+=("Maven")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    cat >&2 <<MSG
broker: cannot start a local Kafka broker: ${missing[*]} not found.
  The local broker runs Apache Kafka $KAFKA_VERSION from Maven Central jars, which needs
  Java 17 or newer and Maven (Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven).
  Alternatively run 'docker compose up' (see docker-compose.yml), or point the pipeline at
  an existing cluster with RUM_KAFKA__BOOTSTRAP=host:port.
MSG
    exit 1
  fi
}

fetch_jars() {
  [ -f "$LIBS/.complete" ] && return 0
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (once)"
  mkdir -p "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$ROOT/broker/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS"
  touch "$LIBS/.complete"
}

ready() {  # does a broker answer a metadata request on the port?
  "$PY" "$ROOT/scripts/kafka_ready.py" "127.0.0.1:$PORT" --timeout "${1:-2}" >/dev/null 2>&1
}

our_pid() {  # the pid of the broker this script started, if it still runs
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null && grep -q "kafka.Kafka" "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
    return 0
  fi
  return 1
}

write_config() {
  mkdir -p "$STATE/data" "$STATE/logs"
  cat > "$STATE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
log.dirs=$STATE/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Topics are created explicitly (rum-pipeline topics create) with the right
# partitions and configs; a metadata request must not create a 1-partition one.
auto.create.topics.enable=false
# Oversized actions must reach the pipeline to become bad rows of kind "size".
message.max.bytes=8388608
log.retention.hours=168
PROPS
  cat > "$STATE/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
}

# java with the broker's classpath; the quoted '*' is Java's own jar wildcard.
JAVA=(java "-Xms${RUM_BROKER_HEAP:-1g}" "-Xmx${RUM_BROKER_HEAP:-1g}" -XX:+UseG1GC
  -Dkafka.logs.dir="$STATE/logs" -Dlog4j2.configurationFile="$STATE/log4j2.properties"
  -cp "$LIBS/*")

start() {
  if [ -n "$BOOTSTRAP" ]; then
    say "kafka.bootstrap=$BOOTSTRAP is set: using that cluster, starting nothing"
    return 0
  fi
  if pid=$(our_pid); then
    if ready 10; then
      say "already running (pid $pid) on 127.0.0.1:$PORT"
      return 0
    fi
  elif ready 2; then
    say "a Kafka broker not started by this script already answers on 127.0.0.1:$PORT: using it"
    return 0
  fi
  need_tools
  fetch_jars
  write_config
  if [ ! -f "$STATE/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)
    "${JAVA[@]}" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$STATE/server.properties" >"$STATE/logs/format.log" 2>&1 || {
        say "formatting the storage failed:"; tail -20 "$STATE/logs/format.log" >&2; exit 1; }
  fi
  # setsid: the broker must outlive the shell (and a Ctrl-C in make's terminal).
  setsid "${JAVA[@]}" kafka.Kafka "$STATE/server.properties" \
    >"$STATE/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  say "starting Apache Kafka $KAFKA_VERSION (pid $!) on 127.0.0.1:$PORT, data in $STATE/data"
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    if ready 2; then
      say "ready on 127.0.0.1:$PORT"
      return 0
    fi
    if ! our_pid >/dev/null; then
      break
    fi
    sleep 1
  done
  say "the broker did not answer within 60 s; last lines of its log:"
  tail -30 "$LOG" "$STATE/logs/stdout.log" >&2 2>/dev/null || true
  stop >/dev/null 2>&1 || true
  exit 1
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    say "not running (nothing started by this script)"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped (pid $pid)"; return 0; }
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  say "killed (pid $pid) after 30 s"
}

status() {
  if pid=$(our_pid); then say "running (pid $pid) on 127.0.0.1:$PORT"; else say "not running"; return 1; fi
}

STARTED_HERE=0
with_broker() {
  if [ -z "$BOOTSTRAP" ] && ! status 2>/dev/null; then
    start
    STARTED_HERE=1
  fi
  # Ctrl-C reaches the command too (same process group); once it has ended, the
  # trap stops the broker this call started.
  trap 'if [ "$STARTED_HERE" = 1 ]; then stop; fi' EXIT
  trap 'exit 130' INT TERM
  set +e
  "$@"
  local rc=$?
  set -e
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  with) shift; with_broker "$@" ;;
  stop) stop ;;
  status) status ;;
  settings) echo "port=$PORT bootstrap=$BOOTSTRAP state=$STATE" ;;
  *) echo "usage: $0 start|stop|status|settings|with CMD..." >&2; exit 2 ;;
esac
