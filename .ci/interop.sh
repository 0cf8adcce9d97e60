#!/usr/bin/env bash
# Start a broker on a free loopback port, run the interop suites against it, stop it.
#
#   .ci/interop.sh [hermod|mosquitto]      (default: $INTEROP_BROKER, else hermod)
#
# hermod:    runs $HERMOD_BIN, else <cargo target dir>/$HERMOD_PROFILE/hermod (profile default
#            release; build it first: cargo build --locked --release -p hermod), as
#            `hermod serve -p PORT`.
# mosquitto: Debian's mosquitto, the reference broker (apt-get install -y mosquitto
#            mosquitto-clients), with a throwaway config allowing anonymous clients on PORT.
# Needs mosquitto-clients and `pip install -r interop/requirements.txt`.
# After the suites, the broker gets SIGTERM and must exit with status 0 within STOP_WAIT s.
set -euo pipefail

BROKER=${1:-${INTEROP_BROKER:-hermod}}
STOP_WAIT=${STOP_WAIT:-10}
START_WAIT=${START_WAIT:-20}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n--- %s [%s]\n' "$*" "$(date +%H:%M:%S)"; }

case "$BROKER" in
hermod | mosquitto) ;;
*)
  echo "usage: $0 [hermod|mosquitto]" >&2
  exit 2
  ;;
esac

WORK=$(mktemp -d /tmp/hermod-interop.XXXXXX)
BROKER_PID=
BROKER_LOG=$WORK/broker.log

SUITE_PID=
stop_broker_on_exit() {
  local rc=$?
  if [[ -n "$SUITE_PID" ]] && kill -0 "$SUITE_PID" 2>/dev/null; then
    kill -TERM "$SUITE_PID" 2>/dev/null || true
  fi
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    echo "interop: killing broker (pid $BROKER_PID) on exit" >&2
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    sleep 1
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap stop_broker_on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

show_log() {
  echo "--- last lines of the $BROKER log ($BROKER_LOG):"
  tail -n "${1:-40}" "$BROKER_LOG" 2>/dev/null | sed 's/^/    /' || true
}

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

say "starting $BROKER on 127.0.0.1:$PORT"
if [[ $BROKER == hermod ]]; then
  BIN=${HERMOD_BIN:-}
  if [[ -z "$BIN" ]]; then
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
    BIN=$TARGET_DIR/${HERMOD_PROFILE:-release}/hermod
  fi
  [[ -x "$BIN" ]] || {
    echo "interop: no hermod binary at $BIN (cargo build --locked --release -p hermod)" >&2
    exit 1
  }
  echo "binary: $BIN"
  NO_COLOR=1 "$BIN" serve -p "$PORT" >"$BROKER_LOG" 2>&1 &
  BROKER_PID=$!
else
  MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  [[ -x "$MOSQ" ]] || {
    echo "interop: mosquitto not installed (apt-get install -y mosquitto)" >&2
    exit 1
  }
  cat >"$WORK/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
EOF
  chmod a+rx "$WORK"
  chmod a+r "$WORK/mosquitto.conf"
  "$MOSQ" -c "$WORK/mosquitto.conf" -v >"$BROKER_LOG" 2>&1 &
  BROKER_PID=$!
fi
echo "pid: $BROKER_PID"
[[ -n "${INTEROP_PIDFILE:-}" ]] && echo "$BROKER_PID" >>"$INTEROP_PIDFILE"

# Bounded wait until the port accepts connections (and the broker is still alive).
ready=0
for ((i = 0; i < START_WAIT * 10; i++)); do
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    rc=0
    wait "$BROKER_PID" || rc=$?
    BROKER_PID=
    echo "interop: $BROKER exited (status $rc) before accepting connections on port $PORT" >&2
    show_log
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if ((ready == 0)); then
  echo "interop: $BROKER did not accept connections on port $PORT within ${START_WAIT}s" >&2
  show_log
  exit 1
fi
echo "listening after ~$((i / 10)).$((i % 10))s"

# run_suite CMD...: run a test suite in the background and wait for it, so that a TERM/INT to
# this script is handled at once (the trap stops the suite and the broker).
run_suite() {
  local rc=0
  "$@" &
  SUITE_PID=$!
  wait "$SUITE_PID" || rc=$?
  SUITE_PID=
  return $rc
}

export MQTT_HOST=127.0.0.1 MQTT_PORT=$PORT INTEROP_BROKER=$BROKER PYTHONDONTWRITEBYTECODE=1
failed=()

say "interop: mosquitto_pub/mosquitto_sub against $BROKER"
rc=0
run_suite timeout 300 interop/test_mosquitto_clients.sh || rc=$?
((rc == 0)) || failed+=("mosquitto-clients (exit $rc)")

say "interop: paho-mqtt (pytest) against $BROKER"
rc=0
run_suite timeout 900 python3 -m pytest -q interop/test_paho.py || rc=$?
((rc == 0)) || failed+=("paho pytest (exit $rc)")

say "stopping $BROKER (SIGTERM to pid $BROKER_PID)"
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  rc=0
  wait "$BROKER_PID" || rc=$?
  failed+=("$BROKER died during the tests (status $rc)")
  BROKER_PID=
else
  kill -TERM "$BROKER_PID"
  stopped=0
  for ((i = 0; i < STOP_WAIT * 10; i++)); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      stopped=1
      break
    fi
    sleep 0.1
  done
  if ((stopped == 0)); then
    failed+=("$BROKER still running ${STOP_WAIT}s after SIGTERM")
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  else
    rc=0
    wait "$BROKER_PID" || rc=$?
    if ((rc == 0)); then
      echo "$BROKER exited 0 after SIGTERM"
    else
      failed+=("$BROKER exited with status $rc after SIGTERM (expected 0)")
    fi
  fi
  BROKER_PID=
fi

if ((${#failed[@]} > 0)); then
  say "interop against $BROKER: FAILED"
  printf '  - %s\n' "${failed[@]}"
  show_log 40
  exit 1
fi
say "interop against $BROKER: all passed"
