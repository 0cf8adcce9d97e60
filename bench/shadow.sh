#!/usr/bin/env bash
# Device shadows: updates per second over 10,000 things and update -> delta latency, against a
# release Hermod started here (loopback, a store in a temporary folder, `sync = "batch"`: every
# accepted update is fsynced before its reply) and stopped by its PID. The load is
# crates/shadow/examples/shadow_bench.rs (its docs say what each phase does); every phase is
# bounded by MAX_SECONDS.
#
#   bash bench/shadow.sh          (THINGS=10000 UPDATES=100000 CONNECTIONS=8 WINDOW=100
#                                  RATE=1000 SAMPLES=10000 MAX_SECONDS=60 SYNC=batch)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${HERMOD_BIN:-target/release/hermod}
[[ -x "$BIN" ]] || cargo build --release --locked -p hermod
cargo build --release --locked -p hermod-shadow --example shadow_bench
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
LOAD=$TARGET_DIR/release/examples/shadow_bench

WORK=$(mktemp -d /tmp/hermod-shadow-bench.XXXXXX)
PID=
stop() {
  if [[ -n "$PID" ]]; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The load's clients act for many things: an ACL grant, as an application would have.
printf 'topic readwrite #\ntopic readwrite $hermod/things/#\n' >"$WORK/acl"
cat >"$WORK/hermod.toml" <<EOF
allow_anonymous = true
acl_file = "acl"
[[listener]]
bind = "127.0.0.1:$PORT"
[store]
path = "data"
sync = "${SYNC:-batch}"
[admin]
enabled = false
EOF
RUST_LOG=warn "$BIN" serve -c "$WORK/hermod.toml" &
PID=$!
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
sleep 0.3

"$LOAD" --port "$PORT" --things "${THINGS:-10000}" --updates "${UPDATES:-100000}" \
  --connections "${CONNECTIONS:-8}" --window "${WINDOW:-100}" --rate "${RATE:-1000}" \
  --samples "${SAMPLES:-10000}" --max-seconds "${MAX_SECONDS:-60}"
echo "store: $(du -sh "$WORK/data" | cut -f1)"
