#!/usr/bin/env bash
# bench/wakeups.sh: what a broker does per message at a fixed low rate (issue 14's "CPU per
# million messages at a fixed low rate"): CPU time, context switches and system calls by kind,
# counted by `perf stat` on the broker's process while `hermod bench` offers a fixed rate.
#
# Brokers, started in turn on a free loopback port: Hermod (`hermod serve --memory`, a loopback
# listener only) and Debian's Mosquitto (`persistence false`), the latter once with its default
# `set_tcp_nodelay false` and once with `true`. Scenarios: the latency rows of bench/compare.sh
# (fan-in 32->1 QoS 0 at 20k msg/s, pairs 64 QoS 1 at 10k msg/s).
#
# Environment (all optional):
#   HERMOD_BIN=path      the hermod binary (default: target/release/hermod, built if missing)
#   DURATION=8           seconds of load per run; perf counts the middle DURATION-3 seconds
#   ROUNDS=3             rounds, brokers in turn (A B C A B C ...); the report gives medians
#   SCENARIOS="lat-fanin-q0 lat-pairs-q1"
#   BROKERS="hermod mosquitto mosquitto-nodelay"   (also: hermod-nagle, Hermod with
#                        `set_tcp_nodelay = false`; hermod-1w, Hermod on one tokio worker)
#   OUT=dir              results (default: a new /tmp/hermod-wakeups.XXXXXX)
#
# Needs perf with the syscalls tracepoints (Debian's linux-perf, run as root). Only loopback; every
# run is under `timeout`; only the brokers started here are stopped, by PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"lat-fanin-q0 lat-pairs-q1"}
BROKERS=${BROKERS:-"hermod mosquitto mosquitto-nodelay"}
OUT=${OUT:-$(mktemp -d /tmp/hermod-wakeups.XXXXXX)}
mkdir -p "$OUT"
HERMOD_BIN=${HERMOD_BIN:-target/release/hermod}
[[ -x $HERMOD_BIN ]] || cargo build --release -p hermod >&2
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "needs mosquitto (apt-get install mosquitto)" >&2; exit 1; }

EVENTS=task-clock,context-switches
for e in futex epoll_wait epoll_pwait recvfrom sendto read write writev sendmsg recvmsg sched_yield; do
  EVENTS+=,syscalls:sys_enter_$e
done

bench_args() {
  case $1 in
    lat-fanin-q0) echo "fanin --pubs 32 --subs 1 --qos 0 --rate 20000" ;;
    lat-pairs-q1) echo "pairs --pubs 64 --qos 1 --rate 10000" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

BROKER_PID=
stop_broker() {
  [[ -n $BROKER_PID ]] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
}
trap stop_broker EXIT INT TERM

start_broker() {
  local b=$1 port=$2 dir=$OUT/$1
  mkdir -p "$dir"
  case $b in
    hermod | hermod-1w | hermod-nagle)
      # hermod-nagle: `set_tcp_nodelay = false`, Mosquitto's default.
      { [[ $b == hermod-nagle ]] && printf 'set_tcp_nodelay = false\n\n'
        printf '[[listener]]\nbind = "127.0.0.1:%s"\n' "$port"; } >"$dir/hermod.toml"
      # hermod-1w: tokio's runtime with one worker thread (TOKIO_WORKER_THREADS), an experiment
      # to see what crossing between workers costs.
      local workers=
      [[ $b == hermod-1w ]] && workers=1
      env ${workers:+TOKIO_WORKER_THREADS=$workers} "$HERMOD_BIN" serve -c "$dir/hermod.toml" --memory --admin-bind 127.0.0.1:0 >"$dir/log" 2>&1 &
      ;;
    mosquitto | mosquitto-nodelay)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$dir/mosquitto.conf"
      [[ $b == mosquitto-nodelay ]] && echo "set_tcp_nodelay true" >>"$dir/mosquitto.conf"
      mosquitto -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
      ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$b did not start" >&2
  return 1
}

for s in $SCENARIOS; do
  for r in $(seq 1 "$ROUNDS"); do for b in $BROKERS; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    start_broker "$b" "$port"
    # shellcheck disable=SC2046
    timeout $((DURATION + 60)) "$HERMOD_BIN" bench $(bench_args "$s") -p "$port" -d "$DURATION" --json --quiet \
      >"$OUT/$s-$b-$r.json" 2>"$OUT/$s-$b-$r.err" &
    bpid=$!
    sleep 2
    perf stat -x, -e "$EVENTS" -p "$BROKER_PID" -o "$OUT/$s-$b-$r.perf" -- sleep $((DURATION - 3)) 2>/dev/null || true
    wait "$bpid" || true
    stop_broker
  done; done
done

python3 - "$OUT" "$SCENARIOS" "$BROKERS" "$DURATION" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, scen, brokers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
secs, rounds = int(sys.argv[4]) - 3, int(sys.argv[5])
rate = {"lat-fanin-q0": 20000, "lat-pairs-q1": 10000}
print(f"Medians of {rounds} round(s); per message offered while perf counted ({secs} s).\n")
print("| scenario | broker | CPU µs/msg | context switches/msg | syscalls/msg: futex | epoll | read | write | total | p50 / p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in scen:
    n = rate[s] * secs
    for b in brokers:
        runs = []
        for r in range(1, rounds + 1):
            c = {}
            try:
                for line in open(f"{out}/{s}-{b}-{r}.perf"):
                    f = line.strip().split(",")
                    if len(f) > 2 and f[0] and f[0][0].isdigit():
                        c[f[2].replace("syscalls:sys_enter_", "")] = float(f[0])
                lat = json.load(open(f"{out}/{s}-{b}-{r}.json")).get("latency_ms") or {}
            except (OSError, ValueError):
                continue
            g = lambda *k: sum(c.get(x, 0) for x in k) / n
            runs.append({
                "cpu": c.get("task-clock", 0) * 1000 / n, "cs": g("context-switches"),
                "futex": g("futex"), "epoll": g("epoll_wait", "epoll_pwait"),
                "read": g("read", "recvfrom", "recvmsg"), "write": g("write", "writev", "sendto", "sendmsg"),
                "total": sum(v for k, v in c.items() if k not in ("task-clock", "context-switches")) / n,
                "p50": lat.get("p50") or 0, "p99": lat.get("p99") or 0,
            })
        if not runs:
            print(f"| {s} | {b} | (no result) |"); continue
        m = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        print(f"| {s} | {b} | {m['cpu']:.1f} | {m['cs']:.2f} | {m['futex']:.2f} | {m['epoll']:.2f} | "
              f"{m['read']:.2f} | {m['write']:.2f} | {m['total']:.2f} | {m['p50']:.2f} / {m['p99']:.2f} |")
EOF
echo "raw counts in $OUT" >&2
