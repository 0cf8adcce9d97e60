#!/usr/bin/env bash
# Rules and bridges against real peers no one here wrote:
#   1. examples/collector.toml as shipped (port and admin changed): N messages published with
#      Debian's mosquitto_pub become exactly N rows in SQLite (read with Debian's sqlite3).
#   2. examples/bridge.toml pointed at Debian's mosquitto: 10,000 QoS 1 messages published on
#      Hermod while mosquitto is stopped for BRIDGE_OUTAGE_SECS (default 10) and started again
#      all reach a persistent mosquitto_sub on mosquitto, first arrivals in order; the link's
#      state is seen on $SYS/broker/connection/cloud/state.
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any failure. Every wait
# is bounded; every process started here is stopped by its PID.
#
#   HERMOD_BIN=target/release/hermod interop/rules.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in mosquitto mosquitto_pub mosquitto_sub sqlite3 timeout python3; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || {
    echo "missing $tool (apt-get install -y mosquitto mosquitto-clients sqlite3)" >&2
    exit 2
  }
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

BIN=${HERMOD_BIN:-}
if [[ -z "$BIN" ]]; then
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
  BIN=$TARGET_DIR/${HERMOD_PROFILE:-release}/hermod
fi
[[ -x "$BIN" ]] || {
  echo "rules.sh: no hermod binary at $BIN (cargo build --locked --release -p hermod)" >&2
  exit 2
}

WORK=$(mktemp -d /tmp/hermod-rules.XXXXXX)
PIDS=()
stop_pid() {
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

PASSED=0
FAILED=0
check() { # check NAME COMMAND...
  local name=$1
  shift
  if "$@"; then
    echo "PASS $name"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $name"
    FAILED=$((FAILED + 1))
  fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
start_hermod() { # start_hermod DIR CONFIG
  NO_COLOR=1 "$BIN" serve -c "$2" >"$1/broker.log" 2>&1 &
  PIDS+=($!)
  [[ -n "${INTEROP_PIDFILE:-}" ]] && echo "$!" >>"$INTEROP_PIDFILE"
  echo $!
}
listening() { (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# ---- 1. the collector example, as shipped ---------------------------------------------------
N=${COLLECTOR_N:-1000}
mkdir -p "$WORK/collector"
P1=$(free_port)
sed -e "s/0.0.0.0:1883/127.0.0.1:$P1/" examples/collector.toml >"$WORK/collector/hermod.toml"
printf '\n[admin]\nenabled = false\n' >>"$WORK/collector/hermod.toml"
H1=$(start_hermod "$WORK/collector" "$WORK/collector/hermod.toml")
check "collector: hermod serve -c examples/collector.toml listens" wait_for 20 listening "$P1"
seq 1 "$N" | sed 's/.*/{"n": &, "temp": 21.5}/' |
  timeout 60 mosquitto_pub -p "$P1" -q 1 -i sensor-1 -t dev/gw -l
timeout 10 mosquitto_pub -p "$P1" -q 1 -t dev/gw -m "x'); DROP TABLE messages; --"
timeout 10 mosquitto_pub -p "$P1" -q 1 -t dev/other -m 'not for the rule'
DB=$WORK/collector/rules.db
rows() { sqlite3 "$DB" "SELECT count(*) FROM messages" 2>/dev/null || echo 0; }
check "collector: $N mosquitto_pub messages + 1 become $((N + 1)) rows" wait_for 30 test "$(rows)" = "$((N + 1))"
sleep 1
check "collector: no more rows than messages (dev/other not matched)" test "$(rows)" = "$((N + 1))"
check "collector: one row per payload" test "$(sqlite3 "$DB" "SELECT count(DISTINCT payload) FROM messages")" = "$((N + 1))"
check "collector: columns" test "$(sqlite3 "$DB" "SELECT clientid, topic, payload FROM messages WHERE payload LIKE '{\"n\": 7,%'")" = 'sensor-1|dev/gw|{"n": 7, "temp": 21.5}'
check "collector: the injection attempt is stored as text" test "$(sqlite3 "$DB" "SELECT payload FROM messages WHERE payload LIKE 'x%'")" = "x'); DROP TABLE messages; --"
stop_pid "$H1"

# ---- 2. a bridge to Debian's mosquitto, with mosquitto stopped for a while --------------------
M=10000
OUTAGE=${BRIDGE_OUTAGE_SECS:-10}
mkdir -p "$WORK/mosq" "$WORK/edge"
PM=$(free_port)
cat >"$WORK/mosq/mosquitto.conf" <<EOF
listener $PM 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mosq/
max_queued_messages 0
EOF
start_mosquitto() {
  "$MOSQUITTO" -c "$WORK/mosq/mosquitto.conf" >>"$WORK/mosq/log" 2>&1 &
  MOSQ_PID=$!
  PIDS+=("$MOSQ_PID")
  [[ -n "${INTEROP_PIDFILE:-}" ]] && echo "$MOSQ_PID" >>"$INTEROP_PIDFILE"
  wait_for 10 listening "$PM"
}
check "bridge: mosquitto starts" start_mosquitto
# A persistent subscriber on the central broker (it reconnects by itself after the outage).
timeout 300 stdbuf -oL mosquitto_sub -p "$PM" -c -i central -q 1 -t 'site1/#' >"$WORK/central.txt" 2>"$WORK/central.err" &
SUB_PID=$!
PIDS+=("$SUB_PID")
sleep 0.5
P2=$(free_port)
sed -e "s/0.0.0.0:1883/127.0.0.1:$P2/" -e "s/127.0.0.1:1884/127.0.0.1:$PM/" examples/bridge.toml >"$WORK/edge/hermod.toml"
printf '\n[admin]\nenabled = false\n' >>"$WORK/edge/hermod.toml"
H2=$(start_hermod "$WORK/edge" "$WORK/edge/hermod.toml")
check "bridge: hermod serve -c examples/bridge.toml listens" wait_for 20 listening "$P2"
state() { timeout 3 mosquitto_sub -p "$P2" -t '$SYS/broker/connection/cloud/state' -C 1 -W 2 2>/dev/null || true; }
check "bridge: state 1 once the link is up" wait_for 20 test "$(state)" = 1
# Commands come in from the central broker.
timeout 5 mosquitto_sub -p "$P2" -t 'cmd/#' -C 1 -W 5 -v >"$WORK/cmd.txt" 2>/dev/null &
CMD_PID=$!
sleep 0.5
timeout 5 mosquitto_pub -p "$PM" -q 1 -t cmd/reboot -m now
wait "$CMD_PID" || true
check "bridge: a command from mosquitto arrives on hermod (in)" test "$(cat "$WORK/cmd.txt")" = "cmd/reboot now"
seq 1 "$M" | timeout 120 mosquitto_pub -p "$P2" -q 1 -i edge-pub -t local/sensors/t -l &
PUB_PID=$!
sleep 0.3
stop_pid "$MOSQ_PID"
check "bridge: state 0 while mosquitto is down" wait_for 20 test "$(state)" = 0
sleep "$OUTAGE"
check "bridge: mosquitto restarts" start_mosquitto
wait "$PUB_PID" || true
arrived() { sort -un "$WORK/central.txt" | wc -l; }
progress() {
  local n
  n=$(arrived)
  if ((SECONDS >= NEXT_REPORT)); then
    echo "  ... $n of $M at ${SECONDS}s"
    NEXT_REPORT=$((SECONDS + 10))
  fi
  test "$n" = "$M"
}
NEXT_REPORT=$SECONDS
check "bridge: all $M messages reach mosquitto_sub" wait_for 120 progress
echo "bridge: $(arrived) distinct messages arrived after ${SECONDS}s"
check "bridge: first arrivals in order" python3 - "$WORK/central.txt" <<'EOF'
import sys
seen, order = set(), []
for line in open(sys.argv[1]):
    n = int(line)
    if n not in seen:
        seen.add(n)
        order.append(n)
sys.exit(0 if order == sorted(order) else 1)
EOF
echo "bridge: $(wc -l <"$WORK/central.txt") deliveries for $M messages (at least once: re-sends after the outage)"
stop_pid "$H2"
stop_pid "$SUB_PID"

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
