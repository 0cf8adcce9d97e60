#!/usr/bin/env bash
# Interop checks of Hermod's transports and access control against a real `hermod serve -c`
# process, with the configuration example of the issue (TCP, TLS with client certificates and
# a CRL, WebSocket; plus a server-only TLS listener and a WSS listener), all on loopback ports
# chosen by the OS.
#
#   HERMOD_BIN=target/release/hermod interop/access/run.sh
#
# Checks: mosquitto_pub/sub over TLS with --cafile and with --cert/--key; unknown-CA, expired
# and revoked (CRL) certificates refused; the certificate's CN as username feeding the ACL;
# paho-mqtt (Python) and MQTT.js (Node) over ws and wss; password files written by
# mosquitto_passwd -c -b and by `hermod passwd -b` (right/wrong password, anonymous refused);
# SIGHUP with a broken ACL (old rules stay) then a fixed one (applies to open connections,
# which are not dropped). Prints PASS/FAIL per check; exits non-zero on any failure.
#
# Installs nothing. Needs:
#   apt:  mosquitto mosquitto-clients (mosquitto_pub, mosquitto_sub, mosquitto_passwd), openssl,
#         python3, nodejs + npm (Node >= 18), coreutils (timeout, stdbuf)
#   pip:  paho-mqtt==2.2.0            (pip install -r interop/requirements.txt)
#   npm:  MQTT.js 5.x                 (cd interop/access && npm ci)
#   the hermod binary: $HERMOD_BIN, else <cargo target dir>/release/hermod or /debug/hermod
#
# Every wait is bounded; only the processes this script starts are stopped (by PID).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=${MQTT_TIMEOUT:-5}
export NO_COLOR=1

die() {
  echo "run.sh: $*" >&2
  exit 2
}

for tool in mosquitto_pub mosquitto_sub mosquitto_passwd openssl python3 node timeout stdbuf; do
  command -v "$tool" >/dev/null || die "missing $tool (see the header of this script for the packages)"
done
python3 -c 'import paho.mqtt.client' 2>/dev/null || die "paho-mqtt missing: pip install -r interop/requirements.txt"
[[ -d "$HERE/node_modules/mqtt" ]] || die "MQTT.js missing: (cd interop/access && npm ci)"

if [[ -n "${HERMOD_BIN:-}" ]]; then
  HERMOD=$HERMOD_BIN
else
  TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') ||
    die "cannot find the cargo target directory; set HERMOD_BIN"
  # Whichever of release/debug exists; the newer one if both do.
  HERMOD=
  for p in "$TARGET/release/hermod" "$TARGET/debug/hermod"; do
    if [[ -x "$p" ]] && { [[ -z "$HERMOD" ]] || [[ "$p" -nt "$HERMOD" ]]; }; then
      HERMOD=$p
    fi
  done
  [[ -n "$HERMOD" ]] || die "no hermod binary in $TARGET/{release,debug}; cargo build -p hermod, or set HERMOD_BIN"
fi
[[ -x "$HERMOD" ]] || die "HERMOD_BIN=$HERMOD is not executable"
HERMOD=$(cd "$(dirname "$HERMOD")" && pwd)/$(basename "$HERMOD")
echo "hermod: $HERMOD"

TMP=$(mktemp -d /tmp/hermod-access.XXXXXX)
PIDS=() # every process started here, stopped by PID on exit (checks run in subshells and
# also append to $TMP/pids)
track() {
  PIDS+=("$1")
  echo "$1" >>"$TMP/pids"
}
cleanup() {
  local p
  [[ -f "$TMP/pids" ]] && mapfile -t PIDS <"$TMP/pids"
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 20); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

PASSED=0
FAILED=0
FAILED_NAMES=()
# check NAME FUNCTION ARGS...: runs the function in a subshell (set -e); PASS or FAIL.
check() {
  local name=$1
  shift
  local rc=0
  (
    set -e
    "$@"
  ) >"$TMP/check.log" 2>&1 || rc=$?
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    echo "PASS $name"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    echo "FAIL $name"
    sed 's/^/      | /' "$TMP/check.log"
  fi
}

# wait_for FILE PATTERN [SECONDS]: until a line of FILE matches PATTERN (grep -E).
wait_for() {
  local file=$1 pat=$2 secs=${3:-$W} i
  for ((i = 0; i < secs * 20; i++)); do
    grep -Eq -- "$pat" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "timed out after ${secs}s waiting for /$pat/ in $file:" >&2
  sed 's/^/      > /' "$file" >&2 || true
  return 1
}

count() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }

# wait_count FILE PATTERN N [SECONDS]: until at least N lines of FILE match PATTERN.
wait_count() {
  local file=$1 pat=$2 n=$3 secs=${4:-$W} i
  for ((i = 0; i < secs * 20; i++)); do
    (($(count "$file" "$pat") >= n)) && return 0
    sleep 0.05
  done
  echo "timed out after ${secs}s waiting for $n lines /$pat/ in $file:" >&2
  sed 's/^/      > /' "$file" >&2 || true
  return 1
}

# ---------------------------------------------------------------------------------------------
# Certificates (openssl): a CA with a server certificate (localhost, 127.0.0.1), client
# certificates device-42 (good), old-device (expired 2000-2001), stolen-device (revoked, in the
# CRL), and intruder (signed by another CA).

CONF=$TMP/conf
CERTS=$CONF/certs
CA=$TMP/ca
mkdir -p "$CERTS" "$CA/newcerts"
: >"$CA/index.txt"
echo 1000 >"$CA/serial"
echo 01 >"$CA/crlnumber"
cat >"$CA/openssl.cnf" <<EOF
[ ca ]
default_ca = hermod_ca
[ hermod_ca ]
dir = $CA
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $CERTS/ca.pem
private_key = $CA/ca.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[ crl_ext ]
authorityKeyIdentifier = keyid
EOF

gen_certs() {
  local ossl="openssl"
  newkey() { $ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  newkey "$CA/ca.key"
  $ossl req -x509 -new -key "$CA/ca.key" -subj "/CN=Hermod Interop CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$CERTS/ca.pem"
  sign() { # NAME CN EXT [openssl ca options...]
    local name=$1 cn=$2 ext=$3
    shift 3
    newkey "$CERTS/$name.key"
    $ossl req -new -key "$CERTS/$name.key" -subj "/CN=$cn" -out "$CA/$name.csr"
    $ossl ca -batch -notext -config "$CA/openssl.cnf" -extensions "$ext" -in "$CA/$name.csr" \
      -out "$CERTS/$name.pem" "$@" 2>"$CA/$name.log"
  }
  sign server localhost server_ext
  sign client device-42 client_ext
  sign expired old-device client_ext -startdate 20000101000000Z -enddate 20010101000000Z
  sign revoked stolen-device client_ext
  $ossl ca -batch -config "$CA/openssl.cnf" -revoke "$CERTS/revoked.pem" 2>"$CA/revoke.log"
  $ossl ca -batch -config "$CA/openssl.cnf" -gencrl -crlexts crl_ext -out "$CERTS/ca.crl" 2>"$CA/crl.log"
  # Another CA and its client.
  newkey "$CA/other.key"
  $ossl req -x509 -new -key "$CA/other.key" -subj "/CN=Some Other CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$CA/other.pem"
  newkey "$CERTS/foreign.key"
  $ossl req -new -key "$CERTS/foreign.key" -subj "/CN=intruder" -out "$CA/foreign.csr"
  $ossl x509 -req -in "$CA/foreign.csr" -CA "$CA/other.pem" -CAkey "$CA/other.key" -set_serial 77 \
    -days 30 -extfile "$CA/openssl.cnf" -extensions client_ext -out "$CERTS/foreign.pem" 2>/dev/null
  $ossl verify -CAfile "$CERTS/ca.pem" "$CERTS/client.pem" >/dev/null
}
gen_certs || die "certificate generation failed (see $CA/*.log)"

# ---------------------------------------------------------------------------------------------
# Password file: mosquitto_passwd -c -b for root/alice, then `hermod passwd -b` adds bob.

mosquitto_passwd -c -b "$CONF/passwd" root root-pw || die "mosquitto_passwd -c -b failed"
mosquitto_passwd -b "$CONF/passwd" alice alice-pw || die "mosquitto_passwd -b failed"
"$HERMOD" passwd -b "$CONF/passwd" bob bob-pw || die "hermod passwd -b failed"

ACL_GOOD="user root
topic readwrite #

user alice
topic readwrite home/alice/#
topic read fence/alice
# So that alice's shared/# subscription is granted (it can match a readable topic) while
# shared/x and shared/y stay denied until the reload (reload_acl).
topic read shared/news

user bob
topic readwrite home/bob/#

user device-42
topic readwrite devices/device-42/#
"
printf '%s' "$ACL_GOOD" >"$CONF/acl"

# The issue's example, verbatim but for the bind addresses (OS-chosen loopback ports), plus a
# server-only TLS listener and a WSS listener.
cat >"$CONF/hermod.toml" <<'EOF'
allow_anonymous = false
password_file = "passwd"
acl_file = "acl"
[[listener]]
bind = "127.0.0.1:0"
[[listener]]
bind = "127.0.0.1:0"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
cafile = "certs/ca.pem"
require_certificate = true
crlfile = "certs/ca.crl"
use_identity_as_username = true
[[listener]]
bind = "127.0.0.1:0"
transport = "ws"          # tcp | tls | ws | wss
path = "/mqtt"
[[listener]]
bind = "127.0.0.1:0"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
[[listener]]
bind = "127.0.0.1:0"
transport = "wss"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
path = "/mqtt"
EOF

# ---------------------------------------------------------------------------------------------
# Start the broker (from another folder: relative paths resolve against the config's folder).

LOG=$TMP/hermod.log
(cd "$TMP" && exec "$HERMOD" serve -c "$CONF/hermod.toml") >"$LOG" 2>&1 &
HERMOD_PID=$!
track "$HERMOD_PID"
wait_for "$LOG" 'hermod started' 10 || die "hermod did not start"
ADDRS=$(sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep 'hermod started' | grep -oE '127\.0\.0\.1:[0-9]+' | sed 's/.*://')
read -r -a PORT <<<"$(tr "\n" " " <<<"$ADDRS")"
((${#PORT[@]} == 5)) || die "expected 5 listener addresses in the start-up log, got: $ADDRS"
P_TCP=${PORT[0]} P_MTLS=${PORT[1]} P_WS=${PORT[2]} P_TLS=${PORT[3]} P_WSS=${PORT[4]}
echo "hermod pid $HERMOD_PID: tcp $P_TCP, tls+client certs $P_MTLS, ws $P_WS, tls $P_TLS, wss $P_WSS"

H=127.0.0.1
CAFILE=$CERTS/ca.pem
pub() { timeout $((W + 5)) mosquitto_pub -h "$H" "$@"; }
# sub_bg OUT ARGS...: background mosquitto_sub -d (line-buffered), PID in LAST_PID.
sub_bg() {
  local out=$1
  shift
  : >"$out"
  timeout $((W + 20)) stdbuf -oL mosquitto_sub -h "$H" -d "$@" >"$out" 2>&1 &
  LAST_PID=$!
  track "$LAST_PID"
}
msgs() { grep -Ev '^(Client .* (sending|received) [A-Z]+|Subscribed \(mid: )' "$1" || true; }
cert_args() { echo --cafile "$CAFILE" --cert "$CERTS/$1.pem" --key "$CERTS/$1.key"; }

# ---------------------------------------------------------------------------------------------
# Checks

tls_cafile() {
  sub_bg "$TMP/s1" -p "$P_TLS" --cafile "$CAFILE" -u alice -P alice-pw -t 'home/alice/#' -C 1 -W "$W" -v
  local pid=$LAST_PID
  wait_for "$TMP/s1" 'received SUBACK'
  pub -p "$P_TLS" --cafile "$CAFILE" -u alice -P alice-pw -t home/alice/t -m 'over tls' -q 1
  wait "$pid"
  [[ "$(msgs "$TMP/s1")" == "home/alice/t over tls" ]]
}

tls_client_cert() {
  sub_bg "$TMP/s2" -p "$P_TCP" -u root -P root-pw -t 'devices/#' -C 1 -W "$W" -v
  local pid=$LAST_PID
  wait_for "$TMP/s2" 'received SUBACK'
  # shellcheck disable=SC2046
  pub -p "$P_MTLS" $(cert_args client) -t devices/device-42/t -m 'with cert' -q 1
  wait "$pid"
  [[ "$(msgs "$TMP/s2")" == "devices/device-42/t with cert" ]]
}

# The certificate's CN is the username: device-42 may publish to devices/device-42/# only; a
# subscriber on the same certificate receives only its own topics.
tls_identity_acl() {
  sub_bg "$TMP/s3" -p "$P_TCP" -u root -P root-pw -t 'devices/#' -t 'fence/#' -v
  local spy=$LAST_PID
  wait_for "$TMP/s3" 'received SUBACK'
  # shellcheck disable=SC2046
  sub_bg "$TMP/s4" -p "$P_MTLS" $(cert_args client) -t 'devices/#' -C 1 -W "$W" -v
  local dev=$LAST_PID
  wait_for "$TMP/s4" 'received SUBACK'
  # shellcheck disable=SC2046
  pub -p "$P_MTLS" $(cert_args client) -V 5 -q 1 -t devices/device-43/t -m 'not mine' || true
  pub -p "$P_TCP" -u root -P root-pw -q 1 -t devices/device-43/x -m 'not for 42'
  pub -p "$P_TCP" -u root -P root-pw -q 1 -t devices/device-42/x -m 'for 42'
  pub -p "$P_TCP" -u root -P root-pw -q 1 -t fence/x -m fence
  wait_for "$TMP/s3" '^fence/x fence'
  wait "$dev"
  kill "$spy" 2>/dev/null || true
  [[ "$(msgs "$TMP/s4")" == "devices/device-42/x for 42" ]] || {
    echo "device-42 received: $(msgs "$TMP/s4")" >&2
    return 1
  }
  if grep -q 'not mine' "$TMP/s3"; then
    echo "device-42's publish to devices/device-43/t was delivered" >&2
    return 1
  fi
}

tls_refused() { # LEAF: the handshake fails, mosquitto_pub exits non-zero
  local out rc=0
  # shellcheck disable=SC2046
  out=$(pub -p "$P_MTLS" $(cert_args "$1") -t "devices/$1" -m x -q 1 2>&1) || rc=$?
  echo "exit $rc: $out"
  ((rc != 0)) && ! grep -q 'Connection Refused' <<<"$out"
}

paho_ws() {
  timeout 60 python3 "$HERE/ws_paho.py" --host "$H" --ws-port "$P_WS" --wss-port "$P_WSS" \
    --cafile "$CAFILE" --username alice --password alice-pw --topic home/alice/paho
}

mqttjs_ws() {
  timeout 60 node "$HERE/ws_mqttjs.mjs" --host "$H" --ws-port "$P_WS" --wss-port "$P_WSS" \
    --cafile "$CAFILE" --username alice --password alice-pw --topic home/alice/mqttjs
}

# password USER PASSWORD VERSION EXPECTED: EXPECTED is "ok" or a fragment of mosquitto_pub's
# refusal message.
password() {
  local user=$1 pw=$2 v=$3 want=$4 out rc=0 args=()
  [[ -n "$user" ]] && args+=(-u "$user")
  [[ -n "$pw" ]] && args+=(-P "$pw")
  out=$(pub -p "$P_TCP" "${args[@]}" -V "$v" -q 1 -t "home/$user/pw" -m x 2>&1) || rc=$?
  echo "exit $rc: $out"
  if [[ $want == ok ]]; then
    ((rc == 0))
  else
    ((rc != 0)) && grep -qi -- "$want" <<<"$out"
  fi
}

last_reload() { grep -E 'configuration reloaded|reload failed' "$LOG" | tail -1; }

# SIGHUP: reload and wait for the broker's log line about it.
sighup() {
  local before
  before=$(count "$LOG" 'configuration reloaded|reload failed')
  kill -HUP "$HERMOD_PID"
  for _ in $(seq 1 100); do
    (($(count "$LOG" 'configuration reloaded|reload failed') > before)) && return 0
    sleep 0.05
  done
  echo "no reload log line after SIGHUP" >&2
  return 1
}

# One mosquitto_pub -l connection (alice) publishing shared/x on demand and one mosquitto_sub
# connection (alice, shared/# and fence/alice) stay open through: allowed nothing on shared/ ->
# broken ACL + SIGHUP (still denied) -> fixed ACL + SIGHUP (the same connections may now
# publish and receive). Neither reconnects.
reload_acl() {
  local fifo=$TMP/alice.fifo
  mkfifo "$fifo"
  sub_bg "$TMP/r-spy" -p "$P_TCP" -u root -P root-pw -t 'shared/#' -t 'fence/#' -v
  local spy=$LAST_PID
  sub_bg "$TMP/r-alice" -p "$P_TCP" -u alice -P alice-pw -i alice-sub -t 'shared/#' -t fence/alice -v
  local asub=$LAST_PID
  timeout 60 stdbuf -oL mosquitto_pub -h "$H" -p "$P_TCP" -u alice -P alice-pw -i alice-pub -d -V 5 -q 1 \
    -t shared/x -l <"$fifo" >"$TMP/r-pub" 2>&1 &
  local apub=$!
  track "$apub"
  exec 7>"$fifo"
  wait_for "$TMP/r-spy" 'received SUBACK'
  wait_for "$TMP/r-alice" 'received SUBACK'
  wait_for "$TMP/r-pub" 'received CONNACK'

  step() { # N: alice publishes shared/x "a-N", root publishes shared/y "r-N" then fences
    echo "a-$1" >&7
    wait_count "$TMP/r-pub" "received PUBACK" "$1"
    pub -p "$P_TCP" -u root -P root-pw -q 1 -t shared/y -m "r-$1"
    pub -p "$P_TCP" -u root -P root-pw -q 1 -t fence/alice -m "f-$1"
    wait_for "$TMP/r-alice" "^fence/alice f-$1"
    wait_for "$TMP/r-spy" "^fence/alice f-$1"
  }
  allowed() { # N: 0 if both alice's publish and the delivery to alice went through
    local p=0 d=0
    grep -q "^shared/x a-$1" "$TMP/r-spy" && p=1
    grep -q "^shared/y r-$1" "$TMP/r-alice" && d=1
    echo "step $1: alice's publish delivered=$p, delivery to alice=$d"
    [[ "$p$d" == 11 ]] && return 0
    [[ "$p$d" == 00 ]] && return 1
    echo "step $1: publish and delivery disagree" >&2
    return 2
  }
  local rc
  step 1
  rc=0 && allowed 1 || rc=$?
  ((rc == 1)) || { echo "before reload: expected denied" >&2; return 1; }

  printf '%s\ntopic sometimes shared/#\n' "$ACL_GOOD" >"$CONF/acl"
  sighup
  last_reload | grep -q 'reload failed' || { echo "a broken ACL must make the reload fail" >&2; return 1; }
  step 2
  rc=0 && allowed 2 || rc=$?
  ((rc == 1)) || { echo "after a broken ACL: expected the old rules (denied)" >&2; return 1; }
  # The old rules still allow what they allowed.
  pub -p "$P_TCP" -u alice -P alice-pw -q 1 -t home/alice/still -m ok
  printf '%s\nuser alice\ntopic readwrite shared/#\n' "$ACL_GOOD" >"$CONF/acl"
  sighup
  last_reload | grep -q 'configuration reloaded' || { echo "the fixed ACL did not load: $(last_reload)" >&2; return 1; }
  step 3
  rc=0 && allowed 3 || rc=$?
  ((rc == 0)) || { echo "after the fix: the same connections must be allowed" >&2; return 1; }
  exec 7>&-
  kill "$spy" "$asub" 2>/dev/null || true
  local connacks
  connacks=$(count "$TMP/r-alice" 'received CONNACK')
  ((connacks == 1)) || { echo "alice's subscriber connected $connacks times" >&2; return 1; }
  connacks=$(count "$TMP/r-pub" 'received CONNACK')
  ((connacks == 1)) || { echo "alice's publisher connected $connacks times" >&2; return 1; }
  printf '%s' "$ACL_GOOD" >"$CONF/acl"
  sighup
}

check "tls: mosquitto_sub/pub --cafile (server-only listener)" tls_cafile
check "tls: mosquitto_pub --cert/--key (require_certificate listener)" tls_client_cert
check "tls: certificate identity as username feeds the ACL" tls_identity_acl
check "tls: unknown-CA certificate refused" tls_refused foreign
check "tls: expired certificate refused" tls_refused expired
check "tls: revoked certificate (CRL) refused" tls_refused revoked
check "ws/wss: paho-mqtt websockets" paho_ws
check "ws/wss: MQTT.js" mqttjs_ws
check "passwd: mosquitto_passwd user, right password, 3.1.1" password alice alice-pw mqttv311 ok
check "passwd: mosquitto_passwd user, right password, 5.0" password alice alice-pw mqttv5 ok
check "passwd: hermod passwd user, right password" password bob bob-pw mqttv5 ok
check "passwd: wrong password, 3.1.1 (not authorised)" password alice nope mqttv311 'not authori'
check "passwd: wrong password, 5.0 (bad user name or password)" password alice nope mqttv5 'bad user name or password'
check "passwd: hermod passwd user, wrong password" password bob nope mqttv5 'bad user name or password'
check "passwd: anonymous refused, 3.1.1" password '' '' mqttv311 'not authori'
check "passwd: anonymous refused, 5.0" password '' '' mqttv5 'not authori'
check "reload: SIGHUP with a broken ACL keeps the old rules, a fixed one applies to open connections" reload_acl

if kill -0 "$HERMOD_PID" 2>/dev/null; then
  echo "PASS hermod still running"
  PASSED=$((PASSED + 1))
else
  echo "FAIL hermod exited; log:"
  sed 's/^/      | /' "$LOG"
  FAILED=$((FAILED + 1))
fi
echo "access interop: $PASSED passed, $FAILED failed"
for n in "${FAILED_NAMES[@]}"; do echo "  failed: $n"; done
((FAILED == 0))
