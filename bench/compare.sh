#!/usr/bin/env bash
# bench/compare.sh: Hermod against Mosquitto (and rumqttd when installed) on this machine, with
# `hermod bench` as the load generator.
#
# It installs Debian's mosquitto if missing (apt-get), builds `hermod` in release mode, starts
# every broker on a free loopback port, and runs each scenario against each broker in turn
# (A B C A B C ...), ROUNDS times, DURATION seconds each. For every run it records the bench's
# JSON summary, the broker's CPU seconds (utime+stime from /proc/<pid>/stat, before/after), the
# load generator's (this shell's children's, cutime+cstime) and the broker's RSS (VmRSS). It prints a Markdown table of medians at the end (also in $OUT/report.md).
#
# Environment (all optional):
#   ROUNDS=3 DURATION=10        rounds per scenario and seconds per run (ROUNDS=1 DURATION=5: quick)
#   SCENARIOS="pairs-q1 fanin-q0 fanin-q1 fanout-q0 lat-fanin-q0 lat-pairs-q1 conn"
#                               also available, not in the default set (they add ~3 min):
#                               shared-q1, and the TLS rows tls-conn (TLS + MQTT handshakes/s)
#                               and tls-pairs-q1 (pairs over TLS), run against Hermod and
#                               Mosquitto only, each given a TLS listener with a throwaway CA and
#                               server certificate made by openssl in $OUT/certs
#                               and the WebSocket rows ws-conn (WebSocket + MQTT handshakes/s)
#                               and ws-pairs-q1 (pairs over WebSocket, path /mqtt), run against
#                               Hermod and Mosquitto only (rumqttd's shipped build has none)
#   TLS_CONNS=2000              connections of `tls-conn` and `ws-conn`
#   TLS_KEY=ec                  server key: ec (P-256) or rsa (2048 bits)
#   BROKERS="hermod mosquitto rumqttd forwarder"   (rumqttd is skipped when not found;
#                               forwarder is `hermod bench forwarder`, a bare single-threaded
#                               forwarder: the ceiling, reported as Hermod/ceiling)
#   CONNS=19000                 connections of the `conn` scenario
#   BIND_ADDRS=127.0.0.2,...    source addresses for `conn` (spreads ephemeral ports)
#   CONN_PROCS=1                load-generator processes of the connection rows (conn, tls-conn,
#                               ws-conn): each opens its share of the connections from its own
#                               source addresses; the rate is all established over the slowest
#                               process's connect time, so the generator is less of a limit
#   HERMOD_BIN=path             use this hermod binary instead of building one
#   HERMOD_BASE_BIN=path        a second hermod (e.g. built from an older commit): adds the broker
#                               "hermod-base" to BROKERS, run in turn with the others, for a
#                               before/after comparison in one run (the report adds Hermod/base)
#   RUMQTTD_BIN=path            rumqttd binary (default: rumqttd in PATH or ~/.cargo/bin)
#   HERMOD_ARGS="--memory"      extra `hermod serve` flags
#   HERMOD_EXTRA="max_inflight_messages = 100"   extra top-level hermod.toml lines (\n-separated)
#   MOSQUITTO_EXTRA="set_tcp_nodelay true"   extra mosquitto.conf lines (\n-separated)
#   OUT=dir                     where results go (default: a new /tmp/hermod-compare.XXXXXX)
#
# Only loopback addresses are used. Every loop is bounded in count and time, every bench run is
# under `timeout`, and only the brokers this script started are stopped (by PID).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-19000}
TLS_CONNS=${TLS_CONNS:-2000}
TLS_KEY=${TLS_KEY:-ec}
SCENARIOS=${SCENARIOS:-"pairs-q1 fanin-q0 fanin-q1 fanout-q0 lat-fanin-q0 lat-pairs-q1 conn"}
BROKERS=${BROKERS:-"hermod mosquitto rumqttd forwarder"}
BIND_ADDRS=${BIND_ADDRS:-127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5}
CONN_PROCS=${CONN_PROCS:-1}
HERMOD_ARGS=${HERMOD_ARGS:-}
HERMOD_EXTRA=${HERMOD_EXTRA:-}
MOSQUITTO_EXTRA=${MOSQUITTO_EXTRA:-}
OUT=${OUT:-$(mktemp -d /tmp/hermod-compare.XXXXXX)}
mkdir -p "$OUT/runs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- what the scenarios are (the issue's table) -------------------------------------------------
bench_args() {
  case $1 in
    pairs-q1) echo "pairs --pubs 64 --qos 1" ;;
    fanin-q0) echo "fanin --pubs 32 --subs 1 --qos 0" ;;
    fanin-q1) echo "fanin --pubs 32 --subs 1 --qos 1" ;;
    fanout-q0) echo "fanout --pubs 1 --subs 64 --qos 0" ;;
    shared-q1) echo "shared --pubs 32 --subs 4 --qos 1" ;;
    lat-fanin-q0) echo "fanin --pubs 32 --subs 1 --qos 0 --rate 20000" ;;
    lat-pairs-q1) echo "pairs --pubs 64 --qos 1 --rate 10000" ;;
    conn) echo "conn --conns ${CONN_N:-$CONNS} --bind ${CONN_BIND:-$BIND_ADDRS}" ;;
    tls-conn) echo "conn --conns ${CONN_N:-$TLS_CONNS} --bind ${CONN_BIND:-$BIND_ADDRS} --cafile $OUT/certs/ca.pem" ;;
    tls-pairs-q1) echo "pairs --pubs 64 --qos 1 --cafile $OUT/certs/ca.pem" ;;
    ws-conn) echo "conn --conns ${CONN_N:-$TLS_CONNS} --bind ${CONN_BIND:-$BIND_ADDRS} --ws" ;;
    ws-pairs-q1) echo "pairs --pubs 64 --qos 1 --ws" ;;
    *) return 1 ;;
  esac
}
for s in $SCENARIOS; do bench_args "$s" >/dev/null || { echo "unknown scenario $s" >&2; exit 2; }; done
is_tls() { [[ $1 == tls-* ]]; }
is_ws() { [[ $1 == ws-* ]]; }
is_conn() { [[ $1 == conn || $1 == tls-conn || $1 == ws-conn ]]; }
WANT_TLS=
WANT_WS=
for s in $SCENARIOS; do
  is_tls "$s" && WANT_TLS=1
  is_ws "$s" && WANT_WS=1
done

# --- TLS material (only when a TLS scenario runs) -----------------------------------------------
# A throwaway CA and a server certificate for 127.0.0.1 / localhost, in this run's directory.
make_certs() {
  local d=$OUT/certs key
  mkdir -p "$d"
  case $TLS_KEY in
    ec) key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) key=(-newkey rsa:2048) ;;
    *) echo "TLS_KEY must be ec or rsa" >&2; exit 2 ;;
  esac
  openssl req -x509 "${key[@]}" -nodes -days 2 -subj "/CN=hermod-compare CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req "${key[@]}" -nodes -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
  # Mosquitto started as root reads them after dropping to its own user: a throwaway key, readable.
  chmod 755 "$OUT" "$d"
  chmod 644 "$d/server.key"
}
if [[ -n $WANT_TLS ]]; then
  command -v openssl >/dev/null 2>&1 || { echo "the TLS scenarios need openssl" >&2; exit 1; }
  make_certs
fi
has_tls() { [[ $1 == hermod || $1 == hermod-base || $1 == mosquitto ]]; }
has_ws() { has_tls "$1"; }

# --- brokers ------------------------------------------------------------------------------------
if ! command -v mosquitto >/dev/null 2>&1 && [[ " $BROKERS " == *" mosquitto "* ]]; then
  log "installing mosquitto"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
MOSQUITTO_BIN=$(command -v mosquitto || echo /usr/sbin/mosquitto)

if [[ -z "${HERMOD_BIN:-}" ]]; then
  log "building hermod (release)"
  cargo build --release -p hermod >&2
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  HERMOD_BIN=$TARGET_DIR/release/hermod
fi
[[ -x "$HERMOD_BIN" ]] || { echo "no hermod binary at $HERMOD_BIN" >&2; exit 1; }
BENCH=$HERMOD_BIN
if [[ -n "${HERMOD_BASE_BIN:-}" ]]; then
  [[ -x "$HERMOD_BASE_BIN" ]] || { echo "no hermod binary at $HERMOD_BASE_BIN" >&2; exit 1; }
  [[ " $BROKERS " == *" hermod-base "* ]] || BROKERS="$BROKERS hermod-base"
fi

RUMQTTD_BIN=${RUMQTTD_BIN:-$(command -v rumqttd || true)}
[[ -z "$RUMQTTD_BIN" && -x "$HOME/.cargo/bin/rumqttd" ]] && RUMQTTD_BIN=$HOME/.cargo/bin/rumqttd
ACTIVE=()
for b in $BROKERS; do
  case $b in
    rumqttd) if [[ -n "$RUMQTTD_BIN" && -x "$RUMQTTD_BIN" ]]; then ACTIVE+=(rumqttd); else log "rumqttd not installed (cargo install rumqttd): skipped"; fi ;;
    hermod | mosquitto | hermod-base | forwarder) ACTIVE+=("$b") ;;
    *) echo "unknown broker $b" >&2; exit 2 ;;
  esac
done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

declare -A PID PORT TLS_PORT WS_PORT
STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.5
  for p in "${STARTED[@]}"; do
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

start_broker() {
  local b=$1 port dir tls_port= ws_port=
  port=$(free_port)
  [[ -n $WANT_TLS ]] && has_tls "$b" && tls_port=$(free_port)
  [[ -n $WANT_WS ]] && has_ws "$b" && ws_port=$(free_port)
  dir=$OUT/$b
  mkdir -p "$dir"
  case $b in
    hermod | hermod-base)
      local bin=$HERMOD_BIN
      [[ $b == hermod-base ]] && bin=$HERMOD_BASE_BIN
      # HERMOD_EXTRA's top-level keys come first: TOML puts a key after a table into the table.
      { [[ -n "$HERMOD_EXTRA" ]] && printf '%b\n\n' "$HERMOD_EXTRA"
        printf '[[listener]]\nbind = "127.0.0.1:%s"\n\n[store]\npath = "%s/data"\n' "$port" "$dir"; } >"$dir/hermod.toml"
      [[ -n $tls_port ]] && printf '\n[[listener]]\nbind = "127.0.0.1:%s"\ntransport = "tls"\ncertfile = "%s"\nkeyfile = "%s"\n' \
        "$tls_port" "$OUT/certs/server.pem" "$OUT/certs/server.key" >>"$dir/hermod.toml"
      [[ -n $ws_port ]] && printf '\n[[listener]]\nbind = "127.0.0.1:%s"\ntransport = "ws"\n' "$ws_port" >>"$dir/hermod.toml"
      # Each on its own admin port: two Hermods (hermod, hermod-base) run side by side.
      # shellcheck disable=SC2086
      "$bin" serve -c "$dir/hermod.toml" --admin-bind 127.0.0.1:0 $HERMOD_ARGS >"$dir/log" 2>&1 &
      ;;
    forwarder)
      "$HERMOD_BIN" bench forwarder -h 127.0.0.1 -p "$port" >"$dir/log" 2>&1 &
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n' \
        "$port" >"$dir/mosquitto.conf"
      [[ -n $tls_port ]] && printf 'listener %s 127.0.0.1\ncertfile %s\nkeyfile %s\n' \
        "$tls_port" "$OUT/certs/server.pem" "$OUT/certs/server.key" >>"$dir/mosquitto.conf"
      [[ -n $ws_port ]] && printf 'listener %s 127.0.0.1\nprotocol websockets\n' "$ws_port" >>"$dir/mosquitto.conf"
      [[ -n "$MOSQUITTO_EXTRA" ]] && printf '%b\n' "$MOSQUITTO_EXTRA" >>"$dir/mosquitto.conf"
      "$MOSQUITTO_BIN" -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
      ;;
    rumqttd)
      # The shipped rumqttd.toml, loopback only, without the extra listeners, 20k connections.
      cat >"$dir/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
      "$RUMQTTD_BIN" -c "$dir/rumqttd.toml" >"$dir/log" 2>&1 &
      ;;
  esac
  PID[$b]=$!
  PORT[$b]=$port
  TLS_PORT[$b]=$tls_port
  WS_PORT[$b]=$ws_port
  STARTED+=("$!")
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      log "$b started: pid ${PID[$b]}, port $port"
      return 0
    fi
    kill -0 "${PID[$b]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$b did not start; log:" >&2
  tail -20 "$dir/log" >&2
  return 1
}

# Stops a broker this script started (by PID, bounded wait) and starts a fresh one.
restart_broker() {
  local b=$1 old=${PID[$1]} i keep=()
  kill -TERM "$old" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$old" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$old" 2>/dev/null && kill -KILL "$old" 2>/dev/null || true
  for i in "${STARTED[@]}"; do [[ "$i" != "$old" ]] && keep+=("$i"); done
  STARTED=("${keep[@]}")
  start_broker "$b"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU of this shell's waited-for children (the load generators, via `timeout`), for the
# generator's CPU per message.
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

for b in "${ACTIVE[@]}"; do start_broker "$b"; done

# --- runs ---------------------------------------------------------------------------------------
run_one() {
  local b=$1 s=$2 r=$3 pid port args file c0 c1 g0 g1 rss0 rss1 peak=0 rss bpid i rc=0 alive
  pid=${PID[$b]}
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$b died: restarting it"
    start_broker "$b"
    pid=${PID[$b]}
  elif is_conn "$s"; then
    # A fresh process, so that RSS per connection is not hidden by memory the allocator kept
    # from earlier runs.
    restart_broker "$b"
    pid=${PID[$b]}
    sleep 0.5
  fi
  port=${PORT[$b]}
  is_tls "$s" && port=${TLS_PORT[$b]}
  is_ws "$s" && port=${WS_PORT[$b]}
  file=$OUT/runs/$s-$b-$r
  local procs=1 k bpids=() n total
  is_conn "$s" && procs=$CONN_PROCS
  c0=$(cpu_ticks "$pid")
  g0=$(child_ticks)
  rss0=$(rss_kb "$pid")
  if ((procs == 1)); then
    args=$(bench_args "$s")
    # shellcheck disable=SC2086
    timeout $((${DURATION%.*} + 90)) "$BENCH" bench $args -p "$port" -d "$DURATION" --json --quiet >"$file.json" 2>"$file.err" &
    bpids=("$!")
  else
    # Several generator processes, each with its share of the connections and its own four
    # source addresses (127.0.1k.2-5), started together.
    total=$CONNS
    [[ $s != conn ]] && total=$TLS_CONNS
    for k in $(seq 0 $((procs - 1))); do
      n=$((total / procs))
      ((k < total % procs)) && n=$((n + 1))
      args=$(CONN_N=$n CONN_BIND=127.0.1$k.2,127.0.1$k.3,127.0.1$k.4,127.0.1$k.5 bench_args "$s")
      # shellcheck disable=SC2086
      timeout $((${DURATION%.*} + 90)) "$BENCH" bench $args -p "$port" -d "$DURATION" --json --quiet >"$file.$k.json" 2>"$file.$k.err" &
      bpids+=("$!")
    done
  fi
  # Peak broker RSS while the bench runs (sampled every 0.25 s; bounded by the bench's timeout).
  for i in $(seq 1 $(((${DURATION%.*} + 95) * 4))); do
    alive=
    for bpid in "${bpids[@]}"; do kill -0 "$bpid" 2>/dev/null && alive=1; done
    [[ -z $alive ]] && break
    rss=$(rss_kb "$pid")
    ((rss > peak)) && peak=$rss
    sleep 0.25
  done
  for bpid in "${bpids[@]}"; do wait "$bpid" || rc=$?; done
  g1=$(child_ticks)
  if ((procs > 1)); then
    cat "$file".*.err >"$file.err" 2>/dev/null || true
    # One summary for the run: counts summed, the rate over the slowest process's connect time.
    python3 - "$file" "$procs" >"$file.json" <<'EOF'
import json, sys
base, n = sys.argv[1], int(sys.argv[2])
parts = []
for k in range(n):
    try:
        parts.append(json.loads(open(f"{base}.{k}.json").readline()))
    except (OSError, ValueError):
        pass
if len(parts) == n:
    cs = [p["connect"] for p in parts]
    d = parts[0]
    est = sum(c["established"] for c in cs)
    secs = max(c["seconds"] for c in cs)
    d["connect"] = {
        "attempted": sum(c["attempted"] for c in cs), "established": est,
        "failed": sum(c["failed"] for c in cs), "held": sum(c["held"] for c in cs),
        "seconds": secs, "per_sec": round(est / secs) if secs > 0 else 0,
        "processes": n, "latency_ms": [c.get("latency_ms") for c in cs],
    }
    print(json.dumps(d))
EOF
  fi
  c1=$(cpu_ticks "$pid")
  rss1=$(rss_kb "$pid")
  if [[ ! -s "$file.json" ]]; then
    log "$s on $b round $r: no result (exit $rc): $(tail -1 "$file.err")"
    echo '{}' >"$file.json"
  fi
  printf '{"broker":"%s","scenario":"%s","round":%s,"exit":%s,"cpu_s":%s,"gen_cpu_s":%s,"rss_before_kb":%s,"rss_after_kb":%s,"rss_peak_kb":%s,"bench":%s}\n' \
    "$b" "$s" "$r" "$rc" "$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}')" \
    "$(awk -v a="$g0" -v b="$g1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}')" \
    "$rss0" "$rss1" "$peak" "$(head -1 "$file.json")" >>"$RESULTS"
  python3 - "$file.json" "$b" "$s" "$r" >&2 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])) or {}
b, s, r = sys.argv[2:5]
if d.get("connect"):
    c = d["connect"]
    print(f"  {s:<13} {b:<11} round {r}: {c['established']}/{c['attempted']} connections, {c['per_sec']:.0f}/s, {c['failed']} failed")
elif d:
    l = d.get("latency_ms") or {}
    print(f"  {s:<13} {b:<11} round {r}: {d['received_per_sec']:>10.0f} msg/s delivered, lost {d['lost']}, "
          f"p50 {l.get('p50')} ms, p99 {l.get('p99')} ms")
EOF
  sleep 1
}

log "results in $OUT; ${#ACTIVE[@]} broker(s): ${ACTIVE[*]}; scenarios: $SCENARIOS; $ROUNDS round(s) of ${DURATION}s"
for s in $SCENARIOS; do
  for r in $(seq 1 "$ROUNDS"); do
    for b in "${ACTIVE[@]}"; do
      # The TLS and WebSocket rows compare the brokers that have such a listener here.
      is_tls "$s" && ! has_tls "$b" && continue
      is_ws "$s" && ! has_ws "$b" && continue
      run_one "$b" "$s" "$r"
    done
  done
done

# --- report -------------------------------------------------------------------------------------
python3 - "$RESULTS" "$ROUNDS" "$DURATION" >"$OUT/report.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds, duration = sys.argv[2], sys.argv[3]
brokers = []
for r in rows:
    if r["broker"] not in brokers:
        brokers.append(r["broker"])
order = [b for b in ("hermod", "hermod-base", "mosquitto", "rumqttd", "forwarder") if b in brokers]
scen = []
for r in rows:
    if r["scenario"] not in scen:
        scen.append(r["scenario"])
label = {
    "pairs-q1": "pairs: 64 pub→sub pairs, QoS 1 (msg/s)",
    "fanin-q0": "fan-in: 32 publishers → 1 subscriber, QoS 0 (msg/s)",
    "fanin-q1": "fan-in, QoS 1 (msg/s)",
    "fanout-q0": "fan-out: 1 publisher → 64 subscribers, QoS 0 (delivered/s)",
    "shared-q1": "shared: 32 publishers → $share group of 4, QoS 1 (msg/s)",
    "lat-fanin-q0": "latency at 20k msg/s fan-in, QoS 0: p50 / p99 (ms)",
    "lat-pairs-q1": "latency at 10k msg/s pairs, QoS 1: p50 / p99 (ms)",
    "conn": "connections: connects/s; RSS per held connection",
    "tls-conn": "TLS connections: TLS + MQTT handshakes/s; RSS per held connection",
    "tls-pairs-q1": "pairs over TLS: 64 pub→sub pairs, QoS 1 (msg/s)",
    "ws-conn": "WebSocket connections: WebSocket + MQTT handshakes/s; RSS per held connection",
    "ws-pairs-q1": "pairs over WebSocket: 64 pub→sub pairs, QoS 1 (msg/s)",
}
CONN = ("conn", "tls-conn", "ws-conn")
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def runs(s, b):
    return [r for r in rows if r["scenario"] == s and r["broker"] == b and r.get("bench")]
def fmt_rate(x):
    if x is None: return "—"
    return f"{x/1e6:.2f}M" if x >= 1e6 else f"{x/1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"
def cell(s, b):
    rs = runs(s, b)
    if not rs: return None, "—"
    if s in CONN:
        cs = [r["bench"].get("connect") or {} for r in rs]
        rate = med([c.get("per_sec") for c in cs])
        per = med([(r["rss_peak_kb"] - r["rss_before_kb"]) * 1024 / max(1, (r["bench"].get("connect") or {}).get("held", 0) or 1) for r in rs])
        held = min((c.get("held", 0) for c in cs), default=0)
        return rate, f"{fmt_rate(rate)}/s; {per/1024:.2f} KiB/conn ({held} held)"
    if s.startswith("lat-"):
        p50 = med([(r["bench"].get("latency_ms") or {}).get("p50") for r in rs])
        p99 = med([(r["bench"].get("latency_ms") or {}).get("p99") for r in rs])
        return p99, f"{p50} / {p99}"
    v = med([r["bench"].get("received_per_sec") for r in rs])
    lost = sum(r["bench"].get("lost", 0) for r in rs)
    return v, fmt_rate(v) + (f" (lost {lost})" if lost else "")
def cpu_per_m(s, b, key="cpu_s"):
    rs = runs(s, b)
    xs = [r[key] / (r["bench"]["received"] / 1e6) for r in rs if r["bench"].get("received") and key in r]
    m = med(xs)
    return "—" if m is None else f"{m:.2f}"
def rss(s, b):
    rs = runs(s, b)
    m = med([r["rss_peak_kb"] for r in rs])
    return "—" if m is None else f"{m/1024:.1f}"
names = {"hermod": "Hermod", "hermod-base": "Hermod (base)", "mosquitto": "Mosquitto", "rumqttd": "rumqttd", "forwarder": "ceiling (forwarder)"}
print(f"Medians of {rounds} round(s) of {duration} s per scenario and broker, brokers run in turn.\n")
# Hermod against each peer present: throughput Hermod/peer, latency rows p99 peer/Hermod.
peers = [(b, short) for b, short in (("mosquitto", "Mosquitto"), ("rumqttd", "rumqttd"), ("hermod-base", "base"))
         if "hermod" in order and b in order]
head = "| scenario | " + " | ".join(names[b] for b in order)
for _, short in peers:
    head += f" | Hermod/{short}"
if "hermod" in order and "forwarder" in order:
    head += " | Hermod/ceiling"
head += " | broker CPU s per M msgs (" + " / ".join(names[b] for b in order) + ")"
head += " | load generator CPU s per M (" + " / ".join(names[b] for b in order) + ")"
head += " | peak RSS MiB (" + " / ".join(names[b] for b in order) + ") |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for s in scen:
    vals = {b: cell(s, b) for b in order}
    line = f"| {label.get(s, s)} | " + " | ".join(vals[b][1] for b in order)
    for peer, short in peers:
        h, m = vals["hermod"][0], vals[peer][0]
        if h and m:
            ratio = (m / h) if s.startswith("lat-") else (h / m)
            line += f" | {ratio:.2f}×" + (f" (p99, {short}/Hermod)" if s.startswith("lat-") else "")
        else:
            line += " | —"
    if "hermod" in order and "forwarder" in order:
        h, m = vals["hermod"][0], vals["forwarder"][0]
        if h and m and not s.startswith("lat-") and s not in CONN:
            line += f" | {h / m:.2f}"
        else:
            line += " | —"
    line += " | " + " / ".join(cpu_per_m(s, b) for b in order)
    line += " | " + " / ".join(cpu_per_m(s, b, "gen_cpu_s") for b in order)
    line += " | " + " / ".join(rss(s, b) for b in order) + " |"
    print(line)
EOF
cat "$OUT/report.md"
log "raw results: $RESULTS"
