#!/usr/bin/env python3
"""Latency of a healthy subscriber while other subscribers on `#` never read (issue 9).

For each broker (Hermod, and Debian's mosquitto when installed) and each count of slow
subscribers (0 and 8 by default), one publisher sends QoS 0 messages at a fixed rate; one
healthy subscriber reads them and records the latency from the timestamp in each payload;
the slow subscribers connect, subscribe to `#` and never read their sockets. Prints p50, p99
and max per run, and the p99 ratio (with slow subscribers / without), which the target in
docs/performance.md bounds at 2x. Plain sockets, MQTT 3.1.1, no dependencies.

    python3 bench/slow_subscribers.py [--hermod PATH] [--seconds 20] [--rate 1000] [--size 16384]

The hermod binary: --hermod, else $HERMOD_BIN, else <cargo target dir>/release/hermod (build it
with `cargo build --release`), else `hermod` on PATH.

Every loop is bounded in count and time; brokers run on loopback ports and are stopped by PID.
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from mqtt_raw import default_hermod, free_port, mqtt_str, packet, recv_exact


def connect(port, client_id):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + mqtt_str(client_id)
    s.sendall(packet(0x10, body))
    ack = recv_exact(s, 4)
    if ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {ack!r}")
    return s


def subscribe(s, topic):
    s.sendall(packet(0x82, struct.pack("!H", 1) + mqtt_str(topic) + bytes([0])))
    ack = recv_exact(s, 5)
    if ack[0] != 0x90:
        raise RuntimeError(f"SUBACK expected: {ack!r}")


def read_packet(s, buf):
    """Returns (packet bytes, rest) reading from s as needed."""
    while True:
        if len(buf) >= 2:
            mult, n, i = 1, 0, 1
            while i < len(buf) and i <= 4:
                b = buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    if len(buf) >= i + n:
                        return buf[: i + n], buf[i + n :], i
                    break
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("closed")
        buf += chunk


def run(port, slow_count, seconds, rate, size):
    slow = []
    for i in range(slow_count):
        s = connect(port, f"slow-{i}")
        subscribe(s, "#")
        slow.append(s)  # never read
    healthy = connect(port, "healthy")
    subscribe(healthy, "lat/#")
    healthy.settimeout(5)
    pub = connect(port, "publisher")
    total = int(seconds * rate)
    latencies = []
    done = threading.Event()

    def reader():
        buf = b""
        try:
            while len(latencies) < total and not done.is_set():
                p, buf, hdr = read_packet(healthy, buf)
                if p[0] >> 4 != 3:
                    continue
                tlen = struct.unpack("!H", p[hdr : hdr + 2])[0]
                payload = p[hdr + 2 + tlen :]
                sent = struct.unpack("!d", payload[:8])[0]
                latencies.append(time.monotonic() - sent)
        except (RuntimeError, socket.timeout):
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    topic = mqtt_str("lat/t")
    pad = bytes(size - 8)
    start = time.monotonic()
    for i in range(total):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        payload = struct.pack("!d", time.monotonic()) + pad
        pub.sendall(packet(0x30, topic + payload))
    t.join(timeout=30)
    done.set()
    for s in slow + [healthy, pub]:
        s.close()
    lat = sorted(latencies)
    if not lat:
        return None
    pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000
    return {"got": len(lat), "sent": total, "p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] * 1000}


def start_broker(kind, binary, tmp):
    port = free_port()
    if kind == "hermod":
        cfg = os.path.join(tmp, "hermod.toml")
        with open(cfg, "w") as f:
            f.write(f'max_queued_messages = 1000\n[[listener]]\nbind = "127.0.0.1:{port}"\n[store]\nsync = "memory"\n')
        cmd = [binary, "serve", "-c", cfg]
    else:
        cfg = os.path.join(tmp, "mosquitto.conf")
        with open(cfg, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n")
        cmd = [binary, "-c", cfg]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hermod", default=None)
    ap.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--slow", type=int, default=8)
    a = ap.parse_args()
    hermod = a.hermod or default_hermod()
    brokers = [("hermod", hermod)] if hermod else []
    if a.mosquitto and os.path.exists(a.mosquitto):
        brokers.append(("mosquitto", a.mosquitto))
    if not brokers:
        sys.exit("no broker binary found (--hermod PATH)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, binary in brokers:
            p99 = {}
            for slow in (0, a.slow):
                proc, port = start_broker(kind, binary, tmp)
                try:
                    r = run(port, slow, a.seconds, a.rate, a.size)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if r is None:
                    print(f"{kind:9} slow={slow}: nothing received")
                    continue
                p99[slow] = r["p99"]
                print(f"{kind:9} slow={slow}: {r['got']}/{r['sent']} received, p50 {r['p50']:.2f} ms, "
                      f"p99 {r['p99']:.2f} ms, max {r['max']:.1f} ms")
            if 0 in p99 and a.slow in p99 and p99[0] > 0:
                print(f"{kind:9} p99 ratio ({a.slow} slow / none): {p99[a.slow] / p99[0]:.2f}x")


if __name__ == "__main__":
    main()
