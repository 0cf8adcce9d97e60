#!/usr/bin/env bash
# Browser test of the dashboard: starts `hermod serve` with an MQTT listener and the admin
# listener on free loopback ports, a temporary store, a rule and a bridge (for the Rules page),
# reads the initial admin password and runs dashboard.test.mjs (node's test runner, Debian's
# chromium via playwright-core). Stops what it started, by PID.
#
#   interop/dashboard/run.sh                  # builds target/debug/hermod (cargo build -p hermod)
#   HERMOD_BIN=target/release/hermod interop/dashboard/run.sh
#
# Needs: node >= 18 with npm, /usr/bin/chromium (apt-get install -y chromium), and
# `npm ci` done in this folder (done here when node_modules is missing).
# Screenshots and logs: $ARTIFACTS (default interop/dashboard/artifacts/).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export ARTIFACTS=${ARTIFACTS:-$HERE/artifacts}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

if [[ ! -x "$CHROMIUM" ]]; then
  echo "dashboard test: no chromium at $CHROMIUM (apt-get install -y chromium)" >&2
  exit 1
fi
if [[ -z "${HERMOD_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --locked -q -p hermod)
  HERMOD_BIN=$ROOT/target/debug/hermod
fi
HERMOD_BIN=$(cd "$(dirname "$HERMOD_BIN")" && pwd)/$(basename "$HERMOD_BIN")
export HERMOD_BIN
if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --ignore-scripts)
fi

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png "$ARTIFACTS"/*.log
TMP=$(mktemp -d /tmp/hermod-dash.XXXXXX)
HERMOD_PID=
cleanup() {
  local rc=$?
  if [[ -n "$HERMOD_PID" ]] && kill -0 "$HERMOD_PID" 2>/dev/null; then
    kill -TERM "$HERMOD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$HERMOD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HERMOD_PID" 2>/dev/null || true
  fi
  [[ -f "$TMP/hermod.log" ]] && cp "$TMP/hermod.log" "$ARTIFACTS/hermod-serve.log"
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Two free loopback ports (the kernel picks them; released just before hermod binds them).
read -r MQTT_PORT ADMIN_PORT < <(node -e '
const net = require("net"); const ports = [];
const one = () => new Promise((ok) => { const s = net.createServer().listen(0, "127.0.0.1", () => { ports.push(s.address().port); s.close(ok); }); });
one().then(one).then(() => console.log(ports.join(" ")));')
export MQTT_PORT
export BASE_URL=http://127.0.0.1:$ADMIN_PORT

cat >"$TMP/hermod.toml" <<EOF
[[listener]]
bind = "127.0.0.1:$MQTT_PORT"

[store]
path = "$TMP/store"

[admin]
bind = "127.0.0.1:$ADMIN_PORT"

# For the Rules page: a rule on what the test publishes to t, and a bridge to this broker
# itself (dash/bridge/... goes out as mirror/dash/bridge/..., which it does not carry back).
[[rule]]
name = "copy-t"
buffer = "memory"
sql = 'SELECT clientid, payload FROM "t"'
[[rule.action]]
republish = "dash/copied/\${clientid}"

[[bridge]]
name = "mirror"
address = "127.0.0.1:$MQTT_PORT"
topic = ["# out 1 dash/bridge/ mirror/dash/bridge/"]
EOF

"$HERMOD_BIN" serve -c "$TMP/hermod.toml" >"$TMP/hermod.log" 2>&1 &
HERMOD_PID=$!
echo "dashboard test: hermod pid $HERMOD_PID, mqtt 127.0.0.1:$MQTT_PORT, admin $BASE_URL"

# Ready when the admin listener answers /api/v5/status and the initial password is written.
ready=
for _ in $(seq 150); do
  kill -0 "$HERMOD_PID" 2>/dev/null || { echo "hermod exited early:" >&2; cat "$TMP/hermod.log" >&2; exit 1; }
  if [[ -s "$TMP/store/initial-admin-password" ]] &&
    node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$BASE_URL/api/v5/status" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  echo "hermod did not serve $BASE_URL/api/v5/status with $TMP/store/initial-admin-password within 30 s:" >&2
  cat "$TMP/hermod.log" >&2
  exit 1
fi
INITIAL_PASSWORD=$(head -n1 "$TMP/store/initial-admin-password" | tr -d '\r\n')
export INITIAL_PASSWORD

cd "$HERE"
node --test --test-reporter=spec dashboard.test.mjs
echo "dashboard test: screenshots in $ARTIFACTS"
