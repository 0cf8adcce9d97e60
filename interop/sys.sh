#!/usr/bin/env bash
# $SYS interop check: starts `hermod serve -c CONFIG` (sys_interval = 1) on a free loopback
# port, publishes a known load with Debian's mosquitto_pub, reads `$SYS/#` with
# `mosquitto_sub -t '$SYS/#' -v -C N -W 10`, and checks Mosquitto's names and the values.
# Prints PASS/FAIL per check and a closing "N passed, N failed" line; exits non-zero on any
# failure. Every wait is bounded; the broker is stopped (SIGTERM, then SIGKILL) by PID.
#
#   HERMOD_BIN=target/release/hermod interop/sys.sh
#   (default: <cargo target dir>/$HERMOD_PROFILE/hermod, profile default release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in mosquitto_pub mosquitto_sub timeout python3; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool (apt-get install -y mosquitto-clients)" >&2
    exit 2
  }
done

BIN=${HERMOD_BIN:-}
if [[ -z "$BIN" ]]; then
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
  BIN=$TARGET_DIR/${HERMOD_PROFILE:-release}/hermod
fi
[[ -x "$BIN" ]] || {
  echo "sys.sh: no hermod binary at $BIN (cargo build --locked --release -p hermod)" >&2
  exit 2
}

WORK=$(mktemp -d /tmp/hermod-sys.XXXXXX)
BROKER_PID=
cleanup() {
  local rc=$?
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/hermod.toml" <<EOF
allow_anonymous = true
sys_interval = 1
[[listener]]
name = "mqtt"
bind = "127.0.0.1:$PORT"
EOF
NO_COLOR=1 "$BIN" serve -c "$WORK/hermod.toml" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
[[ -n "${INTEROP_PIDFILE:-}" ]] && echo "$BROKER_PID" >>"$INTEROP_PIDFILE"
ready=0
for _ in $(seq 1 200); do
  kill -0 "$BROKER_PID" 2>/dev/null || break
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if ((ready == 0)); then
  echo "sys.sh: hermod did not start on port $PORT" >&2
  tail -n 30 "$WORK/broker.log" >&2 || true
  exit 1
fi

PASS=0
FAIL=0
check() { # check NAME COND-EXIT-STATUS
  if [[ $2 == 0 ]]; then
    echo "PASS $1"
    PASS=$((PASS + 1))
  else
    echo "FAIL $1"
    FAIL=$((FAIL + 1))
  fi
}

# A known load: N QoS 1 messages of 10 bytes (one mosquitto_pub connection).
N=20
seq 1 $N | sed 's/.*/0123456789/' >"$WORK/lines"
timeout 20 mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 -t "load/x" -l <"$WORK/lines"
# Let at least one update (1 s) include the load.
sleep 2.5

# The retained $SYS tree: one message per topic; -C bounds the count, -W the time.
timeout 20 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t '$SYS/#' -v -C 60 -W 10 >"$WORK/sys.txt" 2>"$WORK/sub.err" || true
lines=$(wc -l <"$WORK/sys.txt")
check "mosquitto_sub read the \$SYS tree ($lines lines)" "$( ((lines >= 50)) && echo 0 || echo 1)"

value() { # value TOPIC: the last value read for TOPIC
  awk -v t="$1" 'index($0, t " ") == 1 { v = substr($0, length(t) + 2) } END { print v }' "$WORK/sys.txt"
}
has() { grep -q "^$1 " "$WORK/sys.txt" && echo 0 || echo 1; }

for t in version uptime clients/connected clients/disconnected clients/expired clients/maximum \
  clients/total messages/received messages/sent messages/stored bytes/received bytes/sent \
  publish/messages/received publish/messages/sent publish/messages/dropped \
  publish/bytes/received publish/bytes/sent subscriptions/count shared_subscriptions/count \
  "retained messages/count" store/messages/count store/messages/bytes \
  load/messages/received/1min load/messages/sent/5min load/publish/received/1min \
  load/publish/sent/15min load/publish/dropped/1min load/bytes/received/1min \
  load/bytes/sent/5min load/connections/1min load/sockets/15min; do
  check "\$SYS/broker/$t is published" "$(has "\$SYS/broker/$t")"
done

v=$(value '$SYS/broker/version')
check "version is 'hermod <version>' ($v)" "$([[ $v == hermod\ * ]] && echo 0 || echo 1)"
v=$(value '$SYS/broker/uptime')
check "uptime is 'N seconds' ($v)" "$([[ $v =~ ^[0-9]+\ seconds$ ]] && echo 0 || echo 1)"
v=$(value '$SYS/broker/publish/messages/received')
check "publish/messages/received = $N ($v)" "$([[ $v == "$N" ]] && echo 0 || echo 1)"
v=$(value '$SYS/broker/publish/bytes/received')
check "publish/bytes/received = $((N * 10)) ($v)" "$([[ $v == "$((N * 10))" ]] && echo 0 || echo 1)"
v=$(value '$SYS/broker/load/publish/received/1min')
check "load/publish/received/1min > 0 ($v)" "$(python3 -c "import sys; sys.exit(0 if float('${v:-0}') > 0 else 1)" && echo 0 || echo 1)"
v=$(value '$SYS/broker/clients/maximum')
check "clients/maximum >= 1 ($v)" "$([[ ${v:-0} -ge 1 ]] && echo 0 || echo 1)"

# A client cannot publish into $SYS: the retained version stays hermod's.
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 -r -t '$SYS/broker/version' -m fake || true
v=$(timeout 15 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t '$SYS/broker/version' -C 1 -W 5 || true)
check "clients cannot publish to \$SYS ($v)" "$([[ $v == hermod\ * ]] && echo 0 || echo 1)"

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
