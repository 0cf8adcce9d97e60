#!/usr/bin/env python3
"""bench/soak.py: a bounded soak run of Hermod under a steady mixed load; does its RSS stay flat?
(issue 14: "a soak run, bounded, e.g. 10 minutes, in bench/, not in CI, with mixed load whose RSS
stays flat").

One `hermod serve` (default config: durable store `sync = "batch"` in a temp dir, a free loopback
port, the admin API on another free loopback port) gets, all at once and for DURATION seconds:

  pairs-q1    `hermod bench pairs  --pubs 16 --qos 1 --rate 2000`          QoS 1, 16 pairs
  fanout-q0   `hermod bench fanout --pubs 1 --subs 32 --qos 0 --rate 200`  6,400 deliveries/s
  fanin-q1    `hermod bench fanin  --pubs 16 --subs 1 --qos 1 --rate 1000` QoS 1 fan-in
  churn       `hermod bench conn -c 100 --rate 500 -d 1`, again and again   ~45 connects/s
  sessions    20 persistent sessions (paho, clean_session=0) that go offline and come back every
              5-20 s, fed 200 QoS 1 msg/s in all, each checking its sequence (gaps = loss)
  retained    retained messages set on 1,000 topics at 50/s (one in ten an empty payload, which
              clears it), and a fresh subscriber to all of them every 30 s

Rates are fixed (open loop) and moderate: the point is memory over time, not throughput. The
`hermod bench` loads run in rounds of ROUND seconds (staggered, so they do not all reconnect at
once), so their clients, subscriptions and topics (a new topic prefix each round) come and go
too; each round's JSON summary is kept. The load goes on 10 s past DURATION so that the last
steady sample is taken under load.

Every SAMPLE seconds the broker's VmRSS (/proc/PID/status; also split into RssAnon, the heap,
and RssFile, mostly the binary's own pages), open fds, threads and CPU seconds,
plus the gauges of its Prometheus endpoint (connections, sessions, subscriptions, topics,
retained, queued, store bytes), go into $OUT/samples.csv. At the end, $OUT/report.md has the
RSS after the warm-up (WARMUP s), its max, the end, the least-squares slope over the steady part
(warm-up to DURATION), the QoS 1 loss of every load, and a verdict:

  PASS when  end RSS <= 1.2 x post-warm-up RSS  (the issue's 20 %)
       and   slope <= SLOPE_MAX_PCT % of the post-warm-up RSS per minute (default 0.5 %/min,
             ~120 KiB/min here: a leak at that rate adds 5 % in a 10-minute run, a quarter of
             the 20 % allowance, and 30 % an hour. The RSS swings by ~±300 KiB as the bench
             rounds' connections come and go; over ~115 samples that leaves the slope a standard
             error of ~5-10 KiB/min, so the threshold is far above the noise, while a much
             lower one would judge allocator drift a 10-minute run cannot tell from a leak)
       and   QoS 1 loss = 0 (bench JSON `lost`, persistent sessions' sequence gaps)
       and   no persistent session lost (session_present=0 on a return).

/metrics and /proc/PID/smaps_rollup are saved after the warm-up and at the end (metrics-*.txt,
smaps-*.txt) to see what grew, if anything did; a last sample COOLDOWN s after the load stopped
shows what is given back.

Usage:
  python3 bench/soak.py                           # 10 minutes (~11 with drain and cool-down)
  DURATION=120 python3 bench/soak.py              # a quick look
  HERMOD_BIN=/path/to/hermod OUT=/tmp/soak python3 bench/soak.py

Environment (all optional): DURATION=600 WARMUP=30 SAMPLE=5 ROUND=60 COOLDOWN=20
SLOPE_MAX_PCT=0.5 HERMOD_BIN (else <cargo target dir>/release/hermod, else `hermod` on PATH;
build it with `cargo build --release -p hermod`) HERMOD_ARGS (extra `hermod serve` flags, e.g.
--memory) OUT (default a new /tmp/hermod-soak.XXXXXX) SEED=1.

Needs paho-mqtt (python3 -m pip install paho-mqtt) for the sessions and retained loads. Only
loopback; every loop is bounded in count and in time; every child process runs under a timeout
and only the processes this script started are stopped, by PID. Exit status 0 on PASS, 1 on FAIL.
"""

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_raw import default_hermod, free_port  # noqa: E402

try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("bench/soak.py needs paho-mqtt: python3 -m pip install paho-mqtt")

DURATION = float(os.environ.get("DURATION", 600))
WARMUP = float(os.environ.get("WARMUP", 30))
SAMPLE = float(os.environ.get("SAMPLE", 5))
ROUND = float(os.environ.get("ROUND", 60))
COOLDOWN = float(os.environ.get("COOLDOWN", 20))
# The load goes on TAIL s past DURATION, so that the last steady sample (at DURATION) is taken
# under load, not while the bench rounds are ending.
TAIL = 10.0
LOAD_END = DURATION + TAIL
SLOPE_MAX_PCT = float(os.environ.get("SLOPE_MAX_PCT", 0.5))
HERMOD_ARGS = shlex.split(os.environ.get("HERMOD_ARGS", ""))
SEED = int(os.environ.get("SEED", 1))
OUT = os.environ.get("OUT") or tempfile.mkdtemp(prefix="hermod-soak.")
os.makedirs(OUT, exist_ok=True)

# The `hermod bench` loads, run in rounds. QoS 1 ones must lose nothing.
LOADS = {
    "pairs-q1": "pairs --pubs 16 --qos 1 --rate 2000",
    "fanout-q0": "fanout --pubs 1 --subs 32 --qos 0 --rate 200",
    "fanin-q1": "fanin --pubs 16 --subs 1 --qos 1 --rate 1000",
}
CHURN = "conn -c 100 --rate 500 -d 1 --concurrency 16"
PS_SESSIONS, PS_RATE = 20, 200          # persistent sessions; QoS 1 msg/s to them in all
PS_ONLINE, PS_OFFLINE = (5, 15), (5, 20)  # seconds online / offline, uniform
RET_TOPICS, RET_RATE, RET_CHECK = 1000, 50, 30

# Prometheus gauges sampled with the RSS (what the broker holds; compare start and end).
GAUGES = ["connections", "clients_connected", "sessions", "subscriptions", "topics",
          "retained_messages", "inflight", "queued", "store_bytes"]

T0 = time.monotonic()
STOP = threading.Event()          # the load's end (DURATION reached, or interrupted)
PROCS = []                        # every child process we started: stopped by PID at exit
PROCS_LOCK = threading.Lock()


def now():
    return time.monotonic() - T0


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} [{now():6.1f}s] {msg}", file=sys.stderr, flush=True)


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    with PROCS_LOCK:
        PROCS.append(p)
    return p


def stop_all():
    with PROCS_LOCK:
        procs = list(PROCS)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def on_signal(signum, _frame):
    # Ends the run early but still through `finally` (children stopped, report written).
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


# --- the broker ---------------------------------------------------------------------------------

class Broker:
    def __init__(self, binary):
        self.port, self.admin = free_port(), free_port()
        self.dir = os.path.join(OUT, "broker")
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "hermod.toml")
        # The default configuration but for where it listens and keeps its store.
        with open(conf, "w") as f:
            f.write(f'[[listener]]\nbind = "127.0.0.1:{self.port}"\n\n'
                    f'[store]\npath = "{self.dir}/data"\n')
        self.log = open(os.path.join(self.dir, "broker.log"), "wb")
        self.proc = spawn([binary, "serve", "-c", conf, "--admin-bind", f"127.0.0.1:{self.admin}",
                           *HERMOD_ARGS], stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        for _ in range(150):
            if self.proc.poll() is not None:
                sys.exit(f"hermod exited with {self.proc.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=2).read()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"hermod did not start; see {self.log.name}")

    def status(self):
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
        return out

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metrics_text(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=3) as r:
                return r.read().decode()
        except OSError:
            return ""

    def gauges(self, text=None):
        text = self.metrics_text() if text is None else text
        vals = {}
        for line in text.splitlines():
            if line.startswith("hermod_") and "{" not in line:
                name, _, v = line.partition(" ")
                vals[name[len("hermod_"):]] = v
        return {g: vals.get(g, "") for g in GAUGES}

    def snapshot(self, tag):
        """/metrics and smaps_rollup now, to compare what grew between two points."""
        with open(os.path.join(OUT, f"metrics-{tag}.txt"), "w") as f:
            f.write(self.metrics_text())
        try:
            with open(f"/proc/{self.pid}/smaps_rollup") as src, \
                    open(os.path.join(OUT, f"smaps-{tag}.txt"), "w") as dst:
                dst.write(src.read())
        except OSError:
            pass


def dir_kib(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total // 1024


# --- sampling -----------------------------------------------------------------------------------

SAMPLES = []                      # dicts, also written to samples.csv as they come


def sampler(broker, until):
    """Every SAMPLE s until `until` (seconds since start), or the broker's end."""
    # loadavg1: the machine's 1-minute load average (other processes compete for the cores).
    # rss = anon (the heap: what a leak grows) + file (the binary's pages, which the kernel may
    # drop and fault in again under memory pressure from other processes) + shmem.
    cols = ["t_s", "phase", "rss_kib", "anon_kib", "file_kib", "hwm_kib", "fds", "threads",
            "cpu_s", "store_dir_kib", "loadavg1", *GAUGES]
    with open(os.path.join(OUT, "samples.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        n = 0
        while n < int(until / SAMPLE) + 2:
            t = now()
            if t > until + 0.5 or broker.proc.poll() is not None:
                break
            try:
                st = broker.status()
                row = {"t_s": round(t, 1),
                       "phase": "warmup" if t < WARMUP else "steady" if t <= DURATION + 1
                       else "tail" if t <= LOAD_END else "after",
                       "rss_kib": st["VmRSS"], "anon_kib": st["RssAnon"], "file_kib": st["RssFile"],
                       "hwm_kib": st["VmHWM"], "fds": broker.fds(),
                       "threads": st["Threads"], "cpu_s": round(broker.cpu_s(), 2),
                       "store_dir_kib": dir_kib(os.path.join(broker.dir, "data")),
                       "loadavg1": round(os.getloadavg()[0], 2),
                       **broker.gauges()}
            except OSError:
                break
            SAMPLES.append(row)
            f.write(",".join(str(row[c]) for c in cols) + "\n")
            f.flush()
            n += 1
            time.sleep(max(0.0, (n * SAMPLE) - now()))


# --- `hermod bench` loads -----------------------------------------------------------------------

BENCH_RESULTS = []                # one dict per round
BENCH_LOCK = threading.Lock()


def bench_loop(binary, port, name, args, round_s, first_s=None, pause=0.0):
    """Rounds of `hermod bench ARGS` until LOAD_END, the first one first_s long (so that the
    loads' rounds do not all end at once); round_s None: the args carry their own -d."""
    max_rounds = int(LOAD_END / max(1.0, round_s or 1.0)) + 2
    for rnd in range(max_rounds):
        left = LOAD_END - now()
        if STOP.is_set() or left < 5:
            return
        cmd = [binary, "bench", *args.split(), "-p", str(port), "--json", "--quiet",
               "-i", f"soak-{name}-{rnd}-"]
        if round_s:
            d = first_s if rnd == 0 and first_s else round_s
            # A remainder under 10 s goes to this round rather than a short round of its own.
            cmd += ["-d", str(int(left if left - d < 10 else d))]
        t_start = now()
        p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=(round_s or 10) + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"error": (err or "").strip()[-300:] or f"exit {p.returncode}"}
        res.update(load=name, round=rnd, t_start=round(t_start, 1), t_end=round(now(), 1),
                   exit=p.returncode)
        with BENCH_LOCK:
            BENCH_RESULTS.append(res)
            with open(os.path.join(OUT, "benches.jsonl"), "a") as f:
                f.write(json.dumps(res) + "\n")
        if "error" in res or res.get("lost") or res.get("errors"):
            log(f"{name} round {rnd}: {res.get('error') or ''} lost {res.get('lost')} "
                f"errors {res.get('errors')}")
        if pause:
            STOP.wait(pause)


# --- persistent sessions that go offline and come back (paho) -----------------------------------

class Sessions:
    """PS_SESSIONS persistent sessions `soak-ps-<i>` on `soak/ps/<i>` (QoS 1), each online for
    PS_ONLINE s then offline for PS_OFFLINE s, over and over; one publisher sends them PS_RATE
    QoS 1 messages per second in all, `<seq>` per session, so each session can see a gap (a
    message lost) or a duplicate (allowed at QoS 1 after a reconnect)."""

    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.lock = threading.Lock()
        self.next_seq = [0] * PS_SESSIONS        # next sequence number to publish
        self.expect = [0] * PS_SESSIONS          # next one each session expects
        self.received = [0] * PS_SESSIONS
        self.gaps = [0] * PS_SESSIONS            # messages skipped over: lost
        self.dups = [0] * PS_SESSIONS
        self.subscribed = [False] * PS_SESSIONS
        self.lost_sessions = 0                   # session_present=0 after the first connect
        self.connects = 0
        self.acked = 0
        self.clients = [None] * PS_SESSIONS

    def _client(self, i):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-ps-{i}",
                        clean_session=False, protocol=mqtt.MQTTv311)

        def on_connect(client, _ud, flags, rc, _props):
            if rc != 0:
                return
            with self.lock:
                self.connects += 1
                if not flags.session_present:
                    if self.subscribed[i]:
                        self.lost_sessions += 1
                    self.subscribed[i] = True
                    # Subscribed once only: later connects must find the subscription kept.
                    client.subscribe(f"soak/ps/{i}", qos=1)

        def on_message(_client, _ud, msg):
            seq = int(msg.payload)
            with self.lock:
                self.received[i] += 1
                if seq == self.expect[i]:
                    self.expect[i] += 1
                elif seq > self.expect[i]:
                    self.gaps[i] += seq - self.expect[i]
                    self.expect[i] = seq + 1
                else:
                    self.dups[i] += 1

        c.on_connect, c.on_message = on_connect, on_message
        return c

    def _online(self, i):
        c = self._client(i)
        try:
            c.connect("127.0.0.1", self.port, keepalive=30)
        except OSError as e:
            log(f"session {i}: connect failed: {e}")
            return
        c.loop_start()
        self.clients[i] = c

    def _offline(self, i):
        c, self.clients[i] = self.clients[i], None
        if c is not None:
            c.disconnect()
            c.loop_stop()

    def run(self):
        """Until STOP; then every session online again and drained (at most 30 s)."""
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-ps-pub",
                          clean_session=True, protocol=mqtt.MQTTv311)
        pub.max_inflight_messages_set(100)

        def on_publish(_c, _ud, _mid, _rc, _props):
            with self.lock:
                self.acked += 1

        pub.on_publish = on_publish
        pub.connect("127.0.0.1", self.port, keepalive=30)
        pub.loop_start()
        # Every session online first so it subscribes; then each on its own random cycle.
        for i in range(PS_SESSIONS):
            self._online(i)
        time.sleep(2)
        toggle = [now() + self.rng.uniform(*PS_ONLINE) for _ in range(PS_SESSIONS)]
        interval, k = 1.0 / PS_RATE, 0
        start = now()
        for _ in range(int(LOAD_END * PS_RATE) + 1):       # bounded: one publish per step
            if STOP.is_set():
                break
            t = now()
            for i in range(PS_SESSIONS):
                if t >= toggle[i]:
                    if self.clients[i] is None:
                        self._online(i)
                        toggle[i] = t + self.rng.uniform(*PS_ONLINE)
                    else:
                        self._offline(i)
                        toggle[i] = t + self.rng.uniform(*PS_OFFLINE)
            i = k % PS_SESSIONS
            with self.lock:
                seq = self.next_seq[i]
                self.next_seq[i] += 1
            pub.publish(f"soak/ps/{i}", str(seq), qos=1)
            k += 1
            time.sleep(max(0.0, start + k * interval - now()))
        # Drain: everyone back online until each got its last message (or 30 s).
        for i in range(PS_SESSIONS):
            if self.clients[i] is None:
                self._online(i)
        for _ in range(300):
            with self.lock:
                if self.acked >= sum(self.next_seq) and self.expect == self.next_seq:
                    break
            time.sleep(0.1)
        for i in range(PS_SESSIONS):
            self._offline(i)
        pub.disconnect()
        pub.loop_stop()

    def summary(self):
        with self.lock:
            published = sum(self.next_seq)
            # Messages never seen at the end (the tail that did not arrive) count as lost too.
            tail = sum(n - e for n, e in zip(self.next_seq, self.expect))
            return {"sessions": PS_SESSIONS, "published": published, "acked": self.acked,
                    "received": sum(self.received), "gaps": sum(self.gaps), "missing_tail": tail,
                    "lost": sum(self.gaps) + tail, "duplicates": sum(self.dups),
                    "connects": self.connects, "sessions_lost": self.lost_sessions}


# --- retained messages (paho) -------------------------------------------------------------------

class Retained:
    """Sets retained messages on `soak/retained/<k>` (k < RET_TOPICS) at RET_RATE/s, payloads of
    16-512 bytes, one in ten empty (which clears that topic); every RET_CHECK s a fresh clean
    subscriber to `soak/retained/#` counts what it is given against what should be set."""

    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.set_topics = set()
        self.published = 0
        self.checks = []

    def check(self):
        got = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True,
                        client_id=f"soak-ret-check-{len(self.checks)}", protocol=mqtt.MQTTv311)
        c.on_message = lambda _c, _ud, m: got.append(m.retain)
        c.on_connect = lambda cl, _ud, _f, rc, _p: cl.subscribe("soak/retained/#", qos=0)
        expected = len(self.set_topics)
        try:
            c.connect("127.0.0.1", self.port, keepalive=30)
        except OSError as e:
            log(f"retained check: connect failed: {e}")
            return
        c.loop_start()
        for _ in range(40):                      # at most 4 s
            time.sleep(0.1)
            if sum(got) >= expected:
                break
        c.disconnect()
        c.loop_stop()
        self.checks.append({"t_s": round(now(), 1), "expected": expected,
                            "retained_received": sum(got)})

    def run(self):
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-ret-pub",
                          clean_session=True, protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", self.port, keepalive=30)
        pub.loop_start()
        # Every topic set once first, so the retained store is full before the warm-up ends and
        # its size steady after (random updates only).
        for k in range(RET_TOPICS):
            if STOP.is_set():
                break
            topic = f"soak/retained/{k}"
            pub.publish(topic, os.urandom(self.rng.randint(16, 512)), qos=1,
                        retain=True).wait_for_publish(timeout=5)
            self.set_topics.add(topic)
            self.published += 1
        start, k, next_check = now(), 0, now() + RET_CHECK
        for _ in range(int(LOAD_END * RET_RATE) + 1):      # bounded
            if STOP.is_set():
                break
            topic = f"soak/retained/{self.rng.randrange(RET_TOPICS)}"
            if self.rng.random() < 0.1:
                payload = b""
                self.set_topics.discard(topic)
            else:
                payload = os.urandom(self.rng.randint(16, 512))
                self.set_topics.add(topic)
            # QoS 1 and waited for, so the checker's expectation is what the broker has.
            pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=5)
            self.published += 1
            k += 1
            if now() >= next_check:
                self.check()
                next_check = now() + RET_CHECK
            time.sleep(max(0.0, start + k / RET_RATE - now()))
        self.check()
        pub.disconnect()
        pub.loop_stop()


# --- report -------------------------------------------------------------------------------------

def least_squares(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def bench_summary():
    rows = []
    for name in [*LOADS, "churn"]:
        rs = [r for r in BENCH_RESULTS if r["load"] == name]
        ok = [r for r in rs if "error" not in r]
        if name == "churn":
            cs = [r.get("connect") or {} for r in ok]
            rows.append({"load": name, "rounds": len(rs), "failed_rounds": len(rs) - len(ok),
                         "connects": sum(c.get("established", 0) for c in cs),
                         "connect_failures": sum(c.get("failed", 0) for c in cs)})
            continue
        secs = sum(r.get("duration_s", 0) for r in ok)
        p99 = [(r.get("latency_ms") or {}).get("p99") for r in ok]
        p99 = [x for x in p99 if x is not None]
        rows.append({"load": name, "rounds": len(rs), "failed_rounds": len(rs) - len(ok),
                     "sent": sum(r.get("sent", 0) for r in ok),
                     "received": sum(r.get("received", 0) for r in ok),
                     "per_sec": sum(r.get("received", 0) for r in ok) / secs if secs else 0,
                     "lost": sum(r.get("lost", 0) for r in ok),
                     "errors": sum(r.get("errors", 0) for r in ok),
                     "p99_ms_max": max(p99) if p99 else None,
                     "qos": ok[0].get("qos") if ok else None})
    return rows


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def report(broker, binary, sessions, retained, cooldown_row, interrupted):
    steady = [s for s in SAMPLES if WARMUP <= s["t_s"] <= DURATION + 1]
    loads = [s["loadavg1"] for s in SAMPLES] or [0]
    extra = (", " + " ".join(HERMOD_ARGS)) if HERMOD_ARGS else ""
    lines = ["# Hermod soak run", ""]
    lines.append(
        f"{time.strftime('%Y-%m-%d %H:%M')}, `{binary}` (`hermod serve -c`, default config, "
        f"durable store in {broker.dir}/data{extra}); {DURATION:.0f} s of load, warm-up "
        f"{WARMUP:.0f} s, a sample every {SAMPLE:.0f} s, `hermod bench` rounds of {ROUND:.0f} s; "
        f"`nproc` = {os.cpu_count()}, 1-minute load average {min(loads):.1f}–{max(loads):.1f} "
        "during the run." + (" **Interrupted before the end.**" if interrupted else ""))
    lines.append("")
    lines.append(
        "Mix: " + "; ".join(f"{n} `{a}`" for n, a in LOADS.items())
        + f"; churn `{CHURN}` in a loop; {PS_SESSIONS} persistent sessions offline/online "
        f"({PS_ONLINE[0]}-{PS_ONLINE[1]} s on, {PS_OFFLINE[0]}-{PS_OFFLINE[1]} s off) fed "
        f"{PS_RATE} QoS 1 msg/s; retained on {RET_TOPICS} topics at {RET_RATE}/s.")
    lines.append("")
    checks = []                   # (passed, what)
    if len(steady) >= 3:
        start, end = steady[0], steady[-1]
        top = max(steady, key=lambda s: s["rss_kib"])
        minutes = [s["t_s"] / 60 for s in steady]
        slope = least_squares(minutes, [s["rss_kib"] for s in steady])
        slope_anon = least_squares(minutes, [s["anon_kib"] for s in steady])
        half = [s for s in steady if s["t_s"] >= (WARMUP + DURATION) / 2]
        slope2 = least_squares([s["t_s"] / 60 for s in half], [s["rss_kib"] for s in half])
        slope_max = start["rss_kib"] * SLOPE_MAX_PCT / 100
        ratio = end["rss_kib"] / start["rss_kib"]
        lines += [
            "| RSS | value |", "|---|---|",
            f"| start (after the {WARMUP:.0f} s warm-up, t = {start['t_s']} s) "
            f"| {mib(start['rss_kib'])} |",
            f"| max (t = {top['t_s']} s) | {mib(top['rss_kib'])} |",
            f"| end (t = {end['t_s']} s) | {mib(end['rss_kib'])} ({ratio:.2f}× start) |",
            f"| slope, least squares over the steady part ({len(steady)} samples) "
            f"| {slope:+.0f} KiB/min (threshold {slope_max:.0f} KiB/min = {SLOPE_MAX_PCT} % "
            "of start) |",
            f"| slope over its second half | {slope2:+.0f} KiB/min |",
            f"| anonymous memory (RssAnon): start, end, slope | {mib(start['anon_kib'])}, "
            f"{mib(end['anon_kib'])}, {slope_anon:+.0f} KiB/min |",
            f"| file-backed (RssFile, mostly the binary): start, end "
            f"| {mib(start['file_kib'])}, {mib(end['file_kib'])} |"]
        if cooldown_row:
            lines.append(
                f"| {COOLDOWN:.0f} s after the load stopped (t = {cooldown_row['t_s']} s) "
                f"| {mib(cooldown_row['rss_kib'])} (anonymous {mib(cooldown_row['anon_kib'])}) |")
        lines.append(f"| peak (VmHWM, start-up included) | {mib(end['hwm_kib'])} |")
        lines.append("")
        fds = [s["fds"] for s in steady]
        cpu = end["cpu_s"] - start["cpu_s"]
        lines.append(
            f"Open fds: {start['fds']} at the start, {min(fds)}–{max(fds)} over the steady part, "
            f"{end['fds']} at the end. Broker CPU: {cpu:.0f} s over the steady part "
            f"({cpu / max(1, end['t_s'] - start['t_s']) * 100:.0f} % of a core).")
        lines.append("")
        lines += ["| gauge (/metrics) | start | end |", "|---|---|---|"]
        lines += [f"| {g} | {start.get(g)} | {end.get(g)} |" for g in GAUGES]
        lines.append(f"| store dir (KiB) | {start['store_dir_kib']} | {end['store_dir_kib']} |")
        lines.append("")
        checks.append((ratio <= 1.2, f"end RSS {ratio:.2f}× the post-warm-up RSS (≤ 1.20)"))
        checks.append((slope <= slope_max, f"slope {slope:+.0f} KiB/min (≤ {slope_max:.0f})"))
    else:
        checks.append((False, "too few samples after the warm-up"))
    lines += ["| load | rounds | sent | received | delivered/s | lost | errors | p99 max (ms) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in bench_summary():
        rounds = f"{r['rounds']} ({r['failed_rounds']} failed)"
        if r["load"] == "churn":
            lines.append(f"| churn | {rounds} | {r['connects']} connects | | | | "
                         f"{r['connect_failures']} failed connects | |")
            checks.append((r["failed_rounds"] == 0 and r["connect_failures"] == 0,
                           f"churn: {r['connect_failures']} failed connects, "
                           f"{r['failed_rounds']} failed rounds"))
            continue
        lines.append(f"| {r['load']} | {rounds} | {r['sent']} | {r['received']} | "
                     f"{r['per_sec']:.0f} | {r['lost']} | {r['errors']} | {r['p99_ms_max']} |")
        if r["qos"] == 1:
            checks.append((r["lost"] == 0 and r["failed_rounds"] == 0 and r["rounds"] > 0,
                           f"{r['load']}: QoS 1 lost {r['lost']}, "
                           f"{r['failed_rounds']} failed rounds"))
    ps = sessions.summary() if sessions else None
    if ps:
        lines.append(
            f"| sessions (QoS 1) | {ps['connects']} connects | {ps['published']} "
            f"({ps['acked']} acked) | {ps['received']} ({ps['duplicates']} duplicates) | | "
            f"{ps['lost']} ({ps['gaps']} gaps, {ps['missing_tail']} missing at the end) | "
            f"{ps['sessions_lost']} sessions lost | |")
        checks.append((ps["lost"] == 0 and ps["sessions_lost"] == 0
                       and ps["acked"] == ps["published"],
                       f"persistent sessions: lost {ps['lost']}, sessions lost "
                       f"{ps['sessions_lost']}, acked {ps['acked']}/{ps['published']}"))
    if retained:
        bad = [c for c in retained.checks if c["retained_received"] != c["expected"]]
        last = retained.checks[-1] if retained.checks else {}
        lines.append(
            f"| retained | {len(retained.checks)} checks | {retained.published} set/cleared | "
            f"last check {last.get('retained_received', '—')} of {last.get('expected', '—')} "
            f"| | | {len(bad)} checks off | |")
        checks.append((not bad, f"retained: {len(bad)} of {len(retained.checks)} checks got "
                                "other than the retained messages expected"))
    lines.append("")
    verdict = all(ok for ok, _ in checks) and not interrupted
    lines.append("Checks:")
    lines += [f"- {'ok' if ok else '**FAILED**'}: {what}" for ok, what in checks]
    lines.append("")
    lines.append(f"**{'PASS' if verdict else 'FAIL'}**: "
                 + ("RSS flat and no QoS 1 loss." if verdict else "see the failed checks above."))
    lines.append("")
    lines.append(f"Files in {OUT}: samples.csv (every {SAMPLE:.0f} s), benches.jsonl (each "
                 "round's `hermod bench --json`), metrics-/smaps-{start,end,after}.txt, "
                 "broker/broker.log.")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"benches": bench_summary(), "sessions": ps, "pass": verdict,
                   "retained_checks": retained.checks if retained else None}, f, indent=1)
    return verdict, text


# --- main ---------------------------------------------------------------------------------------

def main():
    binary = default_hermod()
    if not binary or not os.access(binary, os.X_OK):
        sys.exit("no hermod binary: set HERMOD_BIN or `cargo build --release -p hermod`")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = Broker(binary)
    log(f"hermod pid {broker.pid} on 127.0.0.1:{broker.port} (admin {broker.admin}); "
        f"{DURATION:.0f} s of load; results in {OUT}")
    until = LOAD_END + COOLDOWN + 60          # the sampler's own bound
    threads = [threading.Thread(target=sampler, args=(broker, until), daemon=True)]
    for idx, (name, args) in enumerate(LOADS.items()):
        first = ROUND * (1 + idx / len(LOADS))        # staggered: rounds end at different times
        threads.append(threading.Thread(target=bench_loop, daemon=True,
                                        args=(binary, broker.port, name, args, ROUND, first)))
    threads.append(threading.Thread(target=bench_loop, daemon=True,
                                    args=(binary, broker.port, "churn", CHURN, None, None, 1.0)))
    sessions = Sessions(broker.port, random.Random(SEED + 1))
    retained = Retained(broker.port, random.Random(SEED + 2))
    threads.append(threading.Thread(target=sessions.run, daemon=True))
    threads.append(threading.Thread(target=retained.run, daemon=True))
    interrupted = False
    cooldown_row = None
    try:
        for t in threads:
            t.start()
        time.sleep(max(0.0, WARMUP - now()))
        broker.snapshot("start")
        next_log = now()
        while now() < DURATION and broker.proc.poll() is None:
            if now() >= next_log and SAMPLES:
                s = SAMPLES[-1]
                log(f"RSS {mib(s['rss_kib'])}, fds {s['fds']}, connections "
                    f"{s['clients_connected']}, sessions {s['sessions']}, retained "
                    f"{s['retained_messages']}, queued {s['queued']}")
                next_log += 60
            time.sleep(min(1.0, max(0.0, DURATION - now())))
        broker.snapshot("end")
        time.sleep(max(0.0, LOAD_END - now()))
        STOP.set()
        log("load ends; waiting for the rounds in progress and the sessions' drain")
        for t in threads[1:]:
            t.join(timeout=max(1.0, ROUND + 90))
        # What is given back once the load is gone.
        time.sleep(COOLDOWN)
        broker.snapshot("after")
        if broker.proc.poll() is None:
            st = broker.status()
            cooldown_row = {"t_s": round(now(), 1), "rss_kib": st["VmRSS"],
                            "anon_kib": st["RssAnon"]}
        if broker.proc.poll() is not None:
            log(f"hermod exited with {broker.proc.returncode} during the run!")
            interrupted = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        interrupted = True
    finally:
        STOP.set()
        stop_all()
    ok, text = report(broker, binary, sessions, retained, cooldown_row, interrupted)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
