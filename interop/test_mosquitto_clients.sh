#!/usr/bin/env bash
# Interop tests: Debian's mosquitto_pub / mosquitto_sub (package mosquitto-clients) against a
# running MQTT broker given by MQTT_HOST (default 127.0.0.1, loopback only) and MQTT_PORT.
# Prints PASS/FAIL per case and a closing "N passed, N failed" line; exits non-zero on any
# failure. Every wait is bounded (mosquitto_sub -W / -C, plus `timeout` around each client).
#
#   MQTT_PORT=1883 interop/test_mosquitto_clients.sh [case-name-substring]
set -euo pipefail

HOST=${MQTT_HOST:-127.0.0.1}
PORT=${MQTT_PORT:?MQTT_PORT must be set to the broker port}
W=${MQTT_TIMEOUT:-5} # seconds a subscriber waits for what must arrive
ONLY=${1:-}

case "$HOST" in
127.* | localhost | ::1) ;;
*)
  echo "MQTT_HOST=$HOST is not a loopback address; refusing" >&2
  exit 2
  ;;
esac

for tool in mosquitto_pub mosquitto_sub timeout stdbuf; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool (apt-get install -y mosquitto-clients)" >&2
    exit 2
  }
done

TMP=$(mktemp -d /tmp/hermod-interop-sh.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------------------------------------
# helpers (used inside a case, which runs in its own subshell with set -e)

RUN_ID=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
BG_PIDS=() # background clients started by the current case

pub() { timeout $((W + 5)) mosquitto_pub -h "$HOST" -p "$PORT" "$@"; }

# sub ARGS...: a foreground subscriber, bounded by -W and by timeout.
sub() { timeout $((W + 5)) mosquitto_sub -h "$HOST" -p "$PORT" "$@"; }

# sub_bg OUT ARGS...: a background subscriber writing to OUT, with -d so that OUT also shows
# when its SUBACK arrived (see wait_ready); its PID is appended to BG_PIDS and put in LAST_PID.
# The caller must bound it with -C and/or -W.
sub_bg() {
  local out=$1
  shift
  : >"$out" # created here, before the fork: a wait_for on it never sees an older file
  # stdbuf: -d's debug lines are not flushed by mosquitto_sub itself (its messages are).
  timeout $((W + 10)) stdbuf -oL mosquitto_sub -h "$HOST" -p "$PORT" -d "$@" >"$out" 2>"$out.err" &
  BG_PIDS+=($!)
  LAST_PID=$!
}

kill_bg() {
  local p
  for p in "${BG_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
}

# wait_for FILE PATTERN [SECONDS]: wait until a line of FILE matches PATTERN (grep -E).
wait_for() {
  local file=$1 pat=$2 secs=${3:-$W} i
  for ((i = 0; i < secs * 20; i++)); do
    if grep -Eq -- "$pat" "$file" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "timed out after ${secs}s waiting for /$pat/ in $file:" >&2
  sed 's/^/      | /' "$file" >&2 || true
  return 1
}

# Readiness of a background subscriber: its SUBACK has arrived (mosquitto_sub -d prints
# "Client ... received SUBACK"), so anything published from now on must reach it. This does
# not rely on retained messages, so a broken retain feature fails only the retain cases.
wait_ready() { wait_for "$1" '^Client .* received SUBACK'; }

# msgs FILE: the message lines of a -d subscriber's output (its debug lines removed).
msgs() { grep -Ev '^(Client .* (sending|received) [A-Z]+|Subscribed \(mid: )' "$1" || true; }

# wait_pid PID OUT: wait for a background subscriber bounded by -C (and -W); it must exit 0,
# i.e. have received its -C messages before -W expired (27).
wait_pid() {
  local rc=0
  wait "$1" || rc=$?
  if ((rc != 0)); then
    echo "subscriber exited $rc$([[ $rc == 27 ]] && echo ' (-W expired before -C messages)'); it printed:" >&2
    sed 's/^/      | /' "$2" "$2.err" >&2 || true
  fi
  return $rc
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [[ "$2" != "$3" ]]; then
    echo "$1: expected:" >&2
    printf '%s\n' "$2" | sed 's/^/      > /' >&2
    echo "    got:" >&2
    printf '%s\n' "$3" | sed 's/^/      < /' >&2
    return 1
  fi
}

# quiet_sub ARGS...: a foreground subscriber that must receive nothing for 1-2 s (-W);
# prints what it got, and fails unless -W expired (status 27).
quiet_sub() {
  local rc=0 out
  out=$(timeout 10 mosquitto_sub -h "$HOST" -p "$PORT" "$@" 2>/dev/null) || rc=$?
  printf '%s' "$out"
  [[ $rc == 27 ]] || {
    echo "(subscriber exited $rc, expected 27: -W expired)" >&2
    return 1
  }
}

# ---------------------------------------------------------------------------------------------
# cases: each function runs in a subshell; any failing command fails the case.

# QoS round trip: one publisher at QoS $2, three subscribers at QoS 0/1/2; each must receive
# the payload once, with QoS min(pub, sub) and RETAIN 0.
case_qos() {
  local v=$1 q=$2 t="hermod-it/$RUN_ID/qos/$1/$2" sq pids=()
  for sq in 0 1 2; do
    sub_bg "$TMP/q$sq" -V "$v" -q "$sq" -F '%t|%q|%r|%p' -C 1 -W "$W" -t "$t"
    pids+=("$LAST_PID")
  done
  for sq in 0 1 2; do wait_ready "$TMP/q$sq"; done
  pub -V "$v" -q "$q" -t "$t" -m "payload $v q$q"
  for sq in 0 1 2; do
    wait_pid "${pids[$sq]}" "$TMP/q$sq"
    expect_eq "subscriber at QoS $sq" "$t|$((q < sq ? q : sq))|0|payload $v q$q" "$(msgs "$TMP/q$sq")"
  done
}

# -r: a retained message reaches a later subscriber with the retain flag; an empty retained
# payload (-n) clears it.
case_retained() {
  local v=$1 t="hermod-it/$RUN_ID/ret/$1"
  pub -V "$v" -q 1 -r -t "$t" -m kept
  expect_eq "new subscriber gets the retained message, retain flag set" \
    "$t|1|1|kept" "$(sub -V "$v" -q 1 -F '%t|%q|%r|%p' -C 1 -W "$W" -t "$t")"
  pub -V "$v" -q 1 -r -t "$t" -n
  expect_eq "after clearing" "" "$(quiet_sub -V "$v" -t "$t" -W 1)"
}

# -R: stale (retained) messages are not printed, live ones are.
case_retained_filter() {
  local v=$1 t="hermod-it/$RUN_ID/retR/$1"
  pub -V "$v" -q 1 -r -t "$t" -m stale
  sub_bg "$TMP/r" -V "$v" -q 1 -R -v -C 1 -W "$W" -t "$t"
  local pid=$LAST_PID
  wait_ready "$TMP/r"
  pub -V "$v" -q 1 -t "$t" -m live
  wait_pid "$pid" "$TMP/r"
  expect_eq "-R output" "$t live" "$(msgs "$TMP/r")"
  if [[ $v == mqttv5 ]]; then
    # With v5, mosquitto_sub -R subscribes with Retain Handling 2 (Options 0x20): the broker
    # must not send the retained message at all [MQTT-3.3.1-11].
    grep -q "Options: 0x20" "$TMP/r"
    if grep -q "received PUBLISH (d0, q1, r1" "$TMP/r"; then
      echo "broker sent a retained message despite Retain Handling 2" >&2
      return 1
    fi
  else
    # v3: the broker sends it, mosquitto_sub drops it.
    grep -q "received PUBLISH (d0, q1, r1" "$TMP/r" || {
      echo "the retained message itself never arrived (so -R filtered nothing)" >&2
      return 1
    }
  fi
  pub -V "$v" -q 1 -r -t "$t" -n
}

# -C: exits 0 after exactly N messages even if more are available.
case_count() {
  local v=$1 p="hermod-it/$RUN_ID/count/$1" i out
  for i in 1 2 3 4; do pub -V "$v" -q 1 -r -t "$p/$i" -m "m$i"; done
  out=$(sub -V "$v" -q 1 -C 2 -W "$W" -t "$p/#")
  expect_eq "-C 2 line count" 2 "$(printf '%s\n' "$out" | wc -l)"
  printf '%s\n' "$out" | grep -Eqx 'm[1-4]'
  out=$(sub -V "$v" -q 1 -C 4 -W "$W" -t "$p/#" | sort)
  expect_eq "-C 4 gets all retained" "$(printf 'm1\nm2\nm3\nm4')" "$out"
  for i in 1 2 3 4; do pub -V "$v" -q 1 -r -t "$p/$i" -n; done
}

# -W: a subscriber on a silent topic gives up after about W seconds with status 27.
case_timeout() {
  local v=$1 rc=0 start end out
  start=$(date +%s%N)
  out=$(timeout 10 mosquitto_sub -h "$HOST" -p "$PORT" -V "$v" -t "hermod-it/$RUN_ID/silent" -W 1 2>&1) || rc=$?
  end=$(date +%s%N)
  expect_eq "-W exit status" 27 "$rc"
  expect_eq "-W message" "Timed out" "$out"
  local ms=$(((end - start) / 1000000))
  ((ms >= 900 && ms < 4000)) || {
    echo "-W 1 took ${ms} ms" >&2
    return 1
  }
}

# -v: "topic payload", payload kept verbatim (spaces included); mosquitto_sub 2.0.11 itself
# prints an empty payload as "(null)" with -v (client-side formatting, not the broker).
case_verbose() {
  local v=$1 t="hermod-it/$RUN_ID/verbose/$1/a b"
  sub_bg "$TMP/v" -V "$v" -v -C 2 -W "$W" -t "$t"
  local pid=$LAST_PID
  wait_ready "$TMP/v"
  pub -V "$v" -t "$t" -m "hello  world"
  pub -V "$v" -t "$t" -n
  wait_pid "$pid" "$TMP/v"
  expect_eq "-v output" "$(printf '%s\n' "$t hello  world" "$t (null)")" "$(msgs "$TMP/v")"
}

# Will: published when the client dies (SIGKILL), not after a clean disconnect.
case_will() {
  local v=$1 t="hermod-it/$RUN_ID/will/$1"
  sub_bg "$TMP/obs" -V "$v" -q 1 -F '%t|%q|%r|%p' -C 1 -W "$W" -t "$t"
  local obs=$LAST_PID
  wait_ready "$TMP/obs"
  # The dying client: mosquitto_sub without a `timeout` wrapper (stdbuf execs it: same PID), so
  # SIGKILL hits the client itself; bounded by -W in case the kill never comes.
  : >"$TMP/dying"
  stdbuf -oL mosquitto_sub -h "$HOST" -p "$PORT" -V "$v" -d -t "$t/dummy" -W $((W + 5)) \
    --will-topic "$t" --will-payload "died $v" --will-qos 1 >"$TMP/dying" 2>&1 &
  local dying=$!
  BG_PIDS+=("$dying")
  wait_ready "$TMP/dying" # connected, will registered
  kill -KILL "$dying"
  wait "$dying" 2>/dev/null || true
  wait_pid "$obs" "$TMP/obs"
  expect_eq "observer after SIGKILL" "$t|1|0|died $v" "$(msgs "$TMP/obs")"

  # Clean exit (-E: exit once subscribed, with DISCONNECT): no will.
  sub -V "$v" -t "$t/dummy" -E --will-topic "$t" --will-payload "must not appear" --will-qos 1
  expect_eq "observer after clean disconnect" "" "$(quiet_sub -V "$v" -q 1 -t "$t" -W 2)"
}

# Persistent session: -c -i ID subscribes at QoS 1 and leaves; messages published while it is
# offline are delivered, in order, when it comes back (without subscribing to that topic again).
case_persistent() {
  local v=$1 t="hermod-it/$RUN_ID/persist/$1" other="hermod-it/$RUN_ID/persist/other"
  local id="hermod-ps-$RUN_ID-${v#mqttv}" i
  sub -V "$v" -c -i "$id" -q 1 -t "$t" -E
  for i in 1 2 3 4 5; do pub -V "$v" -q 1 -t "$t" -m "offline $i"; done
  pub -V "$v" -q 1 -t "$t/not-subscribed" -m nope
  expect_eq "queued messages on reconnect" "$(printf 'offline %s\n' 1 2 3 4 5)" \
    "$(sub -V "$v" -c -i "$id" -q 1 -C 5 -W "$W" -t "$other")"
  # Remove the session: a clean connection with the same id; nothing is queued after that.
  sub -V "$v" -i "$id" -t "$other" -E
  pub -V "$v" -q 1 -t "$t" -m "after clean"
  expect_eq "after the session was cleaned" "" "$(quiet_sub -V "$v" -c -i "$id" -q 1 -t "$other" -W 1)"
  sub -V "$v" -i "$id" -t "$other" -E
}

# Shared subscription with two mosquitto_sub members: every message to exactly one member.
case_shared() {
  local v=$1 t="hermod-it/$RUN_ID/shared/$1" n=20 g="g$RUN_ID" i
  sub_bg "$TMP/m1" -V "$v" -q 1 -W $((W + 3)) -t "\$share/$g/$t"
  local m1=$LAST_PID
  sub_bg "$TMP/m2" -V "$v" -q 1 -W $((W + 3)) -t "\$share/$g/$t"
  local m2=$LAST_PID
  wait_ready "$TMP/m1"
  wait_ready "$TMP/m2"
  for ((i = 1; i <= n; i++)); do pub -V "$v" -q 1 -t "$t" -m "s$i"; done
  # Wait (bounded) until n messages arrived in all, then a little longer for duplicates.
  for ((i = 0; i < W * 20; i++)); do
    (($( (msgs "$TMP/m1" && msgs "$TMP/m2") | wc -l) >= n)) && break
    sleep 0.05
  done
  sleep 0.5
  kill -TERM "$m1" "$m2" 2>/dev/null || true
  wait "$m1" "$m2" 2>/dev/null || true
  local got expected
  got=$( (msgs "$TMP/m1" && msgs "$TMP/m2") | sort)
  expected=$(for ((i = 1; i <= n; i++)); do echo "s$i"; done | sort)
  echo "member 1 got $(msgs "$TMP/m1" | wc -l), member 2 got $(msgs "$TMP/m2" | wc -l)"
  expect_eq "all messages, each exactly once across the group" "$expected" "$got"
}

# ---------------------------------------------------------------------------------------------

PASSED=0
FAILED=0
FAILED_NAMES=()

run_case() {
  local name=$1
  shift
  [[ -z "$ONLY" || "$name" == *"$ONLY"* ]] || return 0
  local rc=0 t0 t1
  t0=$(date +%s%N)
  set +e
  (
    set -euo pipefail
    # shellcheck disable=SC2030,SC2031 # intended: TMP is per case, inside this subshell
    TMP=$(mktemp -d "$TMP/case.XXXXXX") # files of this case only
    BG_PIDS=()
    trap kill_bg EXIT
    "$@"
  ) >"$TMP/case.log" 2>&1 </dev/null
  rc=$?
  set -e
  t1=$(date +%s%N)
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    printf 'PASS %-40s (%d ms)\n' "$name" $(((t1 - t0) / 1000000))
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    printf 'FAIL %-40s (exit %d)\n' "$name" "$rc"
    # shellcheck disable=SC2031
    sed 's/^/    /' "$TMP/case.log"
  fi
}

echo "mosquitto clients against $HOST:$PORT ($(mosquitto_pub --help 2>&1 | sed -n 's/^mosquitto_pub version \([^ ]*\).*/\1/p'))"

for v in mqttv31 mqttv311 mqttv5; do
  for q in 0 1 2; do
    run_case "qos$q-$v" case_qos "$v" "$q"
  done
done
for v in mqttv311 mqttv5; do
  run_case "retained-$v" case_retained "$v"
  run_case "retained-filter-R-$v" case_retained_filter "$v"
  run_case "count-C-$v" case_count "$v"
  run_case "verbose-v-$v" case_verbose "$v"
  run_case "will-sigkill-$v" case_will "$v"
  run_case "persistent-session-$v" case_persistent "$v"
  run_case "shared-subscription-$v" case_shared "$v"
done
run_case "timeout-W-mqttv311" case_timeout mqttv311

echo "clients: $PASSED passed, $FAILED failed"
if ((FAILED > 0)); then
  printf 'failed: %s\n' "${FAILED_NAMES[*]}"
  exit 1
fi
