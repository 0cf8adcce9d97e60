#!/usr/bin/env bash
# What a rule costs: `hermod bench fanin` (32 publishers -> 1 subscriber, QoS 1 by default)
# against three Hermods started in turn, ROUNDS alternating rounds of DURATION seconds each:
#   base     no rule
#   rule     + a rule on the bench topics writing each message into SQLite (batched)
#   rule-mem the same rule with `buffer = "memory"` (a clean session: nothing written to the
#            store per message, and what the rule holds is lost on a restart)
# and against Debian's mosquitto in the same rounds, as the reference. Prints throughput
# medians, each as a ratio to base, the SQLite rows written per second of the rule runs, and
# whether every message became a row (rows == messages the subscriber got, after the drain).
#
#   bash bench/rules_cost.sh            (ROUNDS=3 DURATION=10 QOS=1 PUBS=32)
#   HERMOD_BIN=target/release/hermod ROUNDS=1 DURATION=5 bash bench/rules_cost.sh
#   HERMOD_BASE_BIN=/tmp/old/hermod bash bench/rules_cost.sh   (A/B: also base-old, rule-old,
#                                    rule-mem-old, each -old ratio against base-old)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
QOS=${QOS:-1}
PUBS=${PUBS:-32}
BIN=${HERMOD_BIN:-target/release/hermod}
# An A/B of the rule path: HERMOD_BASE_BIN=old/hermod adds rows run by it (names ending -old).
BASE_BIN=${HERMOD_BASE_BIN:-}
NAMES="base rule rule-mem mosquitto"
[[ -z "$BASE_BIN" ]] || NAMES="base rule rule-mem base-old rule-old rule-mem-old mosquitto"
[[ -x "$BIN" ]] || cargo build --release --locked -p hermod
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
OUT=${OUT:-$(mktemp -d /tmp/hermod-rules-cost.XXXXXX)}
PID=
stop() {
  [[ -n "$PID" ]] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  PID=
}
trap stop EXIT
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listening() { (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done; return 1; }

config() { # config DIR PORT WITH_RULE [BUFFER]
  cat >"$1/hermod.toml" <<EOF
allow_anonymous = true
[[listener]]
bind = "127.0.0.1:$2"
[admin]
enabled = false
[store]
path = "data"
EOF
  if [[ "$3" == 1 ]]; then
    cat >>"$1/hermod.toml" <<'EOF'
[[connector]]
name = "db"
kind = "sqlite"
path = "rules.db"
init = ["CREATE TABLE IF NOT EXISTS m(id TEXT, clientid TEXT, topic TEXT, payload BLOB, ts INTEGER)"]
[[rule]]
name = "collector"
sql = 'SELECT id, clientid, topic, payload, timestamp FROM "bench/#"'
buffer = "BUFFER"
[[rule.action]]
connector = "db"
statement = "INSERT INTO m(id, clientid, topic, payload, ts) VALUES (${id}, ${clientid}, ${topic}, ${payload}, ${timestamp})"
EOF
    sed -i "s/BUFFER/${4:-disk}/" "$1/hermod.toml"
  fi
}

run_one() { # run_one NAME ROUND
  local name=$1 round=$2 dir port
  dir=$OUT/$name-$round
  mkdir -p "$dir"
  port=$(free_port)
  local bin=$BIN
  if [[ "$name" == *-old ]]; then bin=$BASE_BIN; fi
  case ${name%-old} in
  mosquitto)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$dir/mosquitto.conf"
    "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
    ;;
  base) config "$dir" "$port" 0; "$bin" serve -c "$dir/hermod.toml" >"$dir/log" 2>&1 & ;;
  rule) config "$dir" "$port" 1; "$bin" serve -c "$dir/hermod.toml" >"$dir/log" 2>&1 & ;;
  rule-mem) config "$dir" "$port" 1 memory; "$bin" serve -c "$dir/hermod.toml" >"$dir/log" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$port"
  sleep 0.5
  local start=$SECONDS cpu0 gen_cpu
  cpu0=$(cpu_ticks "$PID")
  # (exits non-zero when it saw loss, as Mosquitto's fan-in QoS 1 shows: recorded, not fatal)
  # The generator's CPU seconds: `times` in a subshell prints its children's.
  gen_cpu=$( (
    "$BIN" bench fanin -p "$port" --pubs "$PUBS" -q "$QOS" -d "$DURATION" -t bench --json --quiet >"$dir/bench.json" || true
    times
  ) | tail -1 | python3 -c 'import re,sys; m=[int(a)*60+float(b) for a,b in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read())]; print(sum(m))')
  local rows=0 secs=$((SECONDS - start))
  if [[ -f "$dir/rules.db" ]]; then
    # Let the rule finish what it holds: until every acknowledged message is a row, for at
    # most 60 s (a row still missing then is reported in the table, not waited for).
    local sent
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$dir/bench.json" 2>/dev/null || echo -1)
    for _ in $(seq 1 120); do
      rows=$(sqlite3 "$dir/rules.db" 'SELECT count(*) FROM m' 2>/dev/null || echo 0)
      [[ "$rows" -ge "$sent" ]] && break
      sleep 0.5
    done
  fi
  # The broker's CPU over the run and the drain (the rule's writes included).
  local broker_cpu
  broker_cpu=$(python3 -c "print(($(cpu_ticks "$PID") - $cpu0) / $(getconf CLK_TCK))")
  stop
  python3 - "$dir/bench.json" "$name" "$round" "$rows" "$DURATION" "$broker_cpu" "$gen_cpu" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
print(json.dumps({"broker": sys.argv[2], "round": int(sys.argv[3]), "rows": int(sys.argv[4]),
                  "duration": int(sys.argv[5]), "broker_cpu": float(sys.argv[6]),
                  "generator_cpu": float(sys.argv[7]), "bench": b}))
EOF
}

for round in $(seq 1 "$ROUNDS"); do
  for name in $NAMES; do
    echo "round $round: $name"
    run_one "$name" "$round"
  done
done

python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def field(b, *names):
    for n in names:
        if n in b:
            return b[n]
    raise KeyError(f"none of {names} in {sorted(b)}")
by = {}
for r in runs:
    b = r["bench"]
    rate = field(b, "received_per_sec", "sent_per_sec")
    got = b["sent"]
    cpu = (r["broker_cpu"] * 1e6 / got if got else 0, r["generator_cpu"] * 1e6 / got if got else 0)
    by.setdefault(r["broker"], []).append((rate, got, r["rows"], r["duration"], cpu))
base = statistics.median(x[0] for x in by["base"])
print("| broker | fan-in msg/s (median) | range | / base | broker CPU µs/msg | generator CPU µs/msg | rows written | rows = messages published |")
print("|---|---|---|---|---|---|---|---|")
for name in ["base", "rule", "rule-mem", "base-old", "rule-old", "rule-mem-old", "mosquitto"]:
    xs = by.get(name, [])
    if not xs:
        continue
    rates = [x[0] for x in xs]
    med = statistics.median(rates)
    rows = ", ".join(str(x[2]) for x in xs) if name.startswith("rule") else "—"
    same = ("yes" if all(x[2] == x[1] for x in xs) else "no: " + ", ".join(f"{x[2]}/{x[1]}" for x in xs)) if name.startswith("rule") else "—"
    # Each binary's rule rows against its own base.
    if name.endswith("-old") and by.get("base-old"):
        med_base = statistics.median(x[0] for x in by["base-old"])
    else:
        med_base = base
    bcpu = statistics.median(x[4][0] for x in xs)
    gcpu = statistics.median(x[4][1] for x in xs)
    print(f"| {name} | {med:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | {med / med_base:.2f} | {bcpu:.2f} | {gcpu:.2f} | {rows} | {same} |")
EOF
echo "results: $OUT/results.jsonl"
