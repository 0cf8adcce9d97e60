#!/usr/bin/env python3
"""bench/durable_throughput.py: durable QoS 1 publish throughput to persistent sessions.

The scenario of issue 4's benchmark: P publishers in parallel (default 32), each publishing QoS 1
to its own topic `dt/<i>`, which has exactly one persistent subscriber (clean_session=0) that is
OFFLINE during the run, so every message is queued for a persistent session (on disk with
`sync = batch|os`, in RAM with `sync = memory`). Each publisher keeps at most W unacknowledged
PUBLISHes in flight (default 100). The figure is PUBACKs received per second over the measured
interval (default 10 s, after a 1 s warm-up).

Brokers, each started fresh on a free loopback port with an empty data directory, in turn
(A B C D A B C D ... for --rounds rounds; the median is reported):
  hermod-batch, hermod-os, hermod-memory   `hermod serve -c CONFIG` with `[store] sync = ...`
  mosquitto                                Debian mosquitto, `persistence true` and the default
                                           autosave (snapshot every 1800 s; it does NOT fsync, nor
                                           even write, per message: its PUBACK is not durable)
Per-session queue limits are raised so nothing is dropped (hermod max_queued_messages=10,000,000,
mosquitto max_queued_messages 0 = unlimited). After each run --verify subscribers reconnect and
drain their queues: the count they receive must equal the PUBACKs their publisher got (checks
that acknowledged messages were really queued, not dropped).

The load generator is this one Python process (raw sockets, asyncio, pipelined): on a 2-core
machine it competes with the broker for CPU, and its own CPU time is printed, so you can see
when it, not the broker, is the limit.

Usage:
  python3 bench/durable_throughput.py                  # all four, 3 rounds, 10 s each
  python3 bench/durable_throughput.py --rounds 1 --duration 5 --brokers hermod-batch,mosquitto
  HERMOD_BIN=/path/to/hermod python3 bench/durable_throughput.py --json out.json

Only loopback; every loop is bounded in count and time; only the brokers started here are
stopped, by PID. Also a small MQTT 3.1.1 client library used by bench/store_memory.py.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------------------------------------
# MQTT 3.1.1 wire format (just what these benchmarks need)


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id, clean, keepalive=60):
    flags = 0x02 if clean else 0x00
    body = mqtt_str("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + mqtt_str(client_id)
    return bytes([0x10]) + varint(len(body)) + body


def subscribe_packet(pid, topic, qos):
    body = pid.to_bytes(2, "big") + mqtt_str(topic) + bytes([qos])
    return bytes([0x82]) + varint(len(body)) + body


def publish_prefix_qos1(topic, payload_len):
    """Everything of a QoS 1 PUBLISH before the packet id; the payload follows the packet id."""
    t = mqtt_str(topic)
    return bytes([0x32]) + varint(len(t) + 2 + payload_len) + t


PIDS = [i.to_bytes(2, "big") for i in range(65536)]
DISCONNECT = b"\xe0\x00"


class MqttConn(asyncio.Protocol):
    """One MQTT 3.1.1 connection on raw sockets.

    - QoS 1 publisher: `publish_many(prefix, payloads)` pipelines PUBLISHes; `on_puback(n)` is
      called with the number of PUBACKs in each read.
    - Subscriber: incoming QoS 0/1 PUBLISHes are passed to `on_message(topic, payload, dup)`; QoS
      1 ones are acknowledged (one write per read)."""

    def __init__(self, loop):
        self.loop = loop
        self.buf = bytearray()
        self.transport = None
        self.connack = loop.create_future()
        self.suback = {}
        self.closed = loop.create_future()
        self.next_pid = 0
        self.on_puback = None
        self.on_message = None
        self.session_present = None

    # asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))

    def data_received(self, data):
        buf = self.buf
        buf += data
        i, n = 0, len(buf)
        pubacks = 0
        acks = []
        while i + 2 <= n:
            first = buf[i]
            # remaining length (at most 4 bytes)
            rl, mult, j, complete = 0, 1, i + 1, False
            while j < n and j < i + 5:
                b = buf[j]
                j += 1
                rl += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    complete = True
                    break
            if not complete:
                break
            end = j + rl
            if end > n:
                break
            ptype = first >> 4
            if ptype == 4:  # PUBACK
                pubacks += 1
            elif ptype == 3:  # PUBLISH
                qos = (first >> 1) & 3
                tl = int.from_bytes(buf[j:j + 2], "big")
                topic = bytes(buf[j + 2:j + 2 + tl])
                k = j + 2 + tl
                if qos:
                    acks.append(b"\x40\x02" + bytes(buf[k:k + 2]))
                    k += 2
                if self.on_message is not None:
                    self.on_message(topic, bytes(buf[k:end]), bool(first & 0x08))
            elif ptype == 2:  # CONNACK
                self.session_present = bool(buf[j] & 1)
                rc = buf[j + 1]
                if not self.connack.done():
                    if rc == 0:
                        self.connack.set_result(True)
                    else:
                        self.connack.set_exception(ConnectionError(f"CONNACK rc={rc}"))
            elif ptype == 9:  # SUBACK
                pid = int.from_bytes(buf[j:j + 2], "big")
                fut = self.suback.pop(pid, None)
                if fut is not None and not fut.done():
                    fut.set_result(bytes(buf[j + 2:end]))
            i = end
        if i:
            del buf[:i]
        if acks:
            self.transport.write(b"".join(acks))
        if pubacks and self.on_puback is not None:
            self.on_puback(pubacks)

    # helpers
    def pid(self):
        self.next_pid = self.next_pid % 65535 + 1
        return self.next_pid

    async def subscribe(self, topic, qos=1, timeout=10):
        pid = self.pid()
        fut = self.loop.create_future()
        self.suback[pid] = fut
        self.transport.write(subscribe_packet(pid, topic, qos))
        codes = await asyncio.wait_for(fut, timeout)
        if codes[0] == 0x80:
            raise RuntimeError(f"subscribe {topic} refused")
        return codes

    def publish_many(self, prefix, payloads):
        parts = []
        for p in payloads:
            self.next_pid = self.next_pid % 65535 + 1
            parts.append(prefix)
            parts.append(PIDS[self.next_pid])
            parts.append(p)
        self.transport.write(b"".join(parts))

    async def disconnect(self, timeout=5):
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(DISCONNECT)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            self.transport.close()


async def mqtt_connect(port, client_id, clean, timeout=10, retries=5):
    """Connects and waits for the CONNACK; retries a refused/reset TCP connect a few times."""
    loop = asyncio.get_running_loop()
    last = None
    for attempt in range(retries):
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: MqttConn(loop), "127.0.0.1", port), timeout)
            proto.transport.write(connect_packet(client_id, clean))
            await asyncio.wait_for(proto.connack, timeout)
            return proto
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            last = e
            await asyncio.sleep(0.2 * (attempt + 1))
    raise ConnectionError(f"connect {client_id}: {last!r}")


# ---------------------------------------------------------------------------------------------
# Brokers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def hermod_bin():
    if os.environ.get("HERMOD_BIN"):
        return os.environ["HERMOD_BIN"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=root,
                          check=True, capture_output=True, text=True).stdout
    return os.path.join(json.loads(meta)["target_directory"], "release", "hermod")


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return float("nan")
    return float("nan")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def dir_bytes(path):
    """(apparent size, allocated size) of the files under path."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


class Broker:
    """A broker process started by us in its own temp dir; stopped by its PID only."""

    def __init__(self, kind, workdir, port, max_queued, extra_conf=""):
        self.kind, self.workdir, self.port = kind, workdir, port
        self.data = os.path.join(workdir, "data")
        self.log = open(os.path.join(workdir, "broker.log"), "wb")
        if kind.startswith("hermod"):
            sync = kind.split("-", 1)[1]
            conf = os.path.join(workdir, "hermod.toml")
            with open(conf, "w") as f:
                f.write(f"max_queued_messages = {max_queued}\n{extra_conf}"
                        f"[[listener]]\nbind = \"127.0.0.1:{port}\"\n"
                        f"[store]\npath = \"data\"\nsync = \"{sync}\"\n")
            self.cmd = [hermod_bin(), "serve", "-c", conf]
        elif kind == "mosquitto":
            os.makedirs(self.data, exist_ok=True)
            conf = os.path.join(workdir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence true\npersistence_location {self.data}/\n"
                        f"max_queued_messages {0 if max_queued >= 10**6 else max_queued}\n"
                        f"{extra_conf}")
            self.cmd = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf]
        else:
            raise ValueError(kind)
        self.proc = None

    def start(self, timeout=15):
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout}s")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # this PID only
            return self.proc.wait(5)


# ---------------------------------------------------------------------------------------------
# The throughput run


async def make_offline_subscribers(port, prefix, topics):
    for i, topic in enumerate(topics):
        c = await mqtt_connect(port, f"{prefix}{i}", clean=False)
        await c.subscribe(topic, 1)
        await c.disconnect()


async def drain_subscriber(port, client_id, expect, idle=2.0, limit_s=120):
    """Reconnects a persistent session and counts what it receives until `idle` s of silence."""
    c_count = [0]
    last = [time.monotonic()]

    def on_message(topic, payload, dup):
        c_count[0] += 1
        last[0] = time.monotonic()

    loop = asyncio.get_running_loop()
    _, c = await loop.create_connection(lambda: MqttConn(loop), "127.0.0.1", port)
    c.on_message = on_message
    c.transport.write(connect_packet(client_id, clean=False))
    await asyncio.wait_for(c.connack, 10)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if c_count[0] >= expect and time.monotonic() - last[0] > 0.5:
            break
        if time.monotonic() - last[0] > idle:
            break
    await c.disconnect()
    return c_count[0], c.session_present


async def throughput_run(port, pubs, window, duration, warmup, payload_size, sub_prefix):
    payload = (b"d" * payload_size)
    acked = [0] * pubs
    inflight = [0] * pubs
    state = {"sending": True}
    conns = []
    for i in range(pubs):
        conns.append(await mqtt_connect(port, f"dtpub-{os.getpid()}-{i}", clean=True))
    prefixes = [publish_prefix_qos1(f"dt/{i}", payload_size) for i in range(pubs)]

    def make_cb(i):
        c, prefix = conns[i], prefixes[i]

        def on_puback(n):
            acked[i] += n
            inflight[i] -= n
            if state["sending"]:
                c.publish_many(prefix, [payload] * n)
                inflight[i] += n
        return on_puback

    for i, c in enumerate(conns):
        c.on_puback = make_cb(i)
    t_start = time.monotonic()
    cpu0 = time.process_time()
    for i, c in enumerate(conns):
        c.publish_many(prefixes[i], [payload] * window)
        inflight[i] = window
    await asyncio.sleep(warmup)
    a0, t0 = sum(acked), time.monotonic()
    samples = []
    for _ in range(int(duration)):
        await asyncio.sleep(1.0)
        samples.append(sum(acked))
    await asyncio.sleep(max(0.0, duration - int(duration)))
    a1, t1 = sum(acked), time.monotonic()
    cpu1 = time.process_time()
    state["sending"] = False
    # wait for the outstanding PUBACKs (bounded)
    deadline = time.monotonic() + 30
    while sum(inflight) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    lost_acks = sum(inflight)
    for c in conns:
        await c.disconnect()
    per_s = [b - a for a, b in zip([a0] + samples[:-1], samples)]
    return {
        "msgs_per_s": (a1 - a0) / (t1 - t0),
        "per_second": per_s,
        "acked_total": sum(acked),
        "acked_per_pub": acked,
        "missing_pubacks": lost_acks,
        "client_cpu_share": (cpu1 - cpu0) / (t1 - t_start),
    }


def run_one(kind, args, round_no):
    workdir = tempfile.mkdtemp(prefix=f"hermod-dt-{kind}-")
    port = free_port()
    b = Broker(kind, workdir, port, max_queued=10_000_000).start()
    try:
        sub_prefix = f"dtsub-{os.getpid()}-"
        topics = [f"dt/{i}" for i in range(args.pubs)]
        asyncio.run(make_offline_subscribers(port, sub_prefix, topics))
        load = os.getloadavg()[0]
        bcpu0 = cpu_seconds(b.pid)
        t0 = time.monotonic()
        res = asyncio.run(throughput_run(port, args.pubs, args.window, args.duration, args.warmup,
                                         args.size, sub_prefix))
        res["broker_cpu_share"] = (cpu_seconds(b.pid) - bcpu0) / (time.monotonic() - t0)
        res["load1_before"] = load
        res["broker_rss_mib"] = rss_mib(b.pid)
        res["store_bytes"] = dir_bytes(b.data)[0] if os.path.isdir(b.data) else 0
        verify = []
        for i in range(min(args.verify, args.pubs)):
            got, present = asyncio.run(drain_subscriber(port, f"{sub_prefix}{i}",
                                                        res["acked_per_pub"][i]))
            verify.append({"sub": i, "acked": res["acked_per_pub"][i], "received": got,
                           "session_present": present})
        res["verify"] = verify
        res["broker"], res["round"] = kind, round_no
        del res["acked_per_pub"]
        return res
    finally:
        rc = b.stop()
        if rc not in (0, None) and kind.startswith("hermod"):
            print(f"  note: {kind} exited with {rc}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", default="hermod-batch,hermod-os,hermod-memory,mosquitto")
    ap.add_argument("--pubs", type=int, default=32)
    ap.add_argument("--window", type=int, default=100, help="unacknowledged per publisher")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--verify", type=int, default=2,
                    help="subscribers that reconnect and drain after each run")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.brokers.split(",") if k.strip()]
    if any(k.startswith("hermod") for k in kinds):
        print(f"hermod binary: {hermod_bin()}")
    print(f"{args.pubs} publishers, window {args.window} each, QoS 1, {args.size}-byte payload, "
          f"{args.duration:g} s (+{args.warmup:g} s warm-up), one offline persistent subscriber "
          f"per topic; nproc={os.cpu_count()}")
    results = []
    for r in range(args.rounds):
        for k in kinds:
            res = run_one(k, args, r)
            results.append(res)
            v = ", ".join(f"sub{x['sub']} {x['received']}/{x['acked']}" for x in res["verify"])
            print(f"round {r + 1} {k:14s} {res['msgs_per_s']:9.0f} msg/s  "
                  f"client cpu {res['client_cpu_share']:.0%} broker cpu "
                  f"{res['broker_cpu_share']:.0%}  rss {res['broker_rss_mib']:.0f} MiB  "
                  f"store {res['store_bytes'] / 2**20:.0f} MiB  load1 {res['load1_before']:.1f}  "
                  f"missing pubacks {res['missing_pubacks']}  drained {v}", flush=True)
    med = {}
    for k in kinds:
        vals = [x["msgs_per_s"] for x in results if x["broker"] == k]
        med[k] = statistics.median(vals)
    print("\n| broker / sync | msg/s (median of %d) | runs | vs hermod-memory |" % args.rounds)
    print("|---|---|---|---|")
    for k in kinds:
        vals = [x["msgs_per_s"] for x in results if x["broker"] == k]
        ratio = (f"{med[k] / med['hermod-memory']:.2f}" if med.get("hermod-memory") else "")
        print(f"| {k} | {med[k]:,.0f} | {', '.join(f'{v:,.0f}' for v in vals)} | {ratio} |")
    bad = [x for x in results for v in x["verify"] if v["received"] < v["acked"]]
    if bad:
        print(f"\nWARNING: {len(bad)} run(s) where a subscriber received fewer messages than "
              f"were acknowledged", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "median": med}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
