#!/usr/bin/env python3
"""Broker CPU for N single-filter SUBSCRIBEs of one persistent session (issue 9).

Starts `hermod serve` (durable store, sync = "os") on a loopback port, connects one persistent
3.1.1 session, sends N SUBSCRIBE packets of one distinct filter each (waiting for each SUBACK),
and reports the broker's user+system CPU time spent, from /proc/PID/stat. A store that rewrote
the whole session on every SUBSCRIBE made this grow with N²; one row per subscription keeps it
linear.

    python3 bench/subscribe_cpu.py [--hermod target/release/hermod] [--counts 1000,3000]

The hermod binary: --hermod, else $HERMOD_BIN, else <cargo target dir>/release/hermod (build it
with `cargo build --release`), else `hermod` on PATH.
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
import time

from mqtt_raw import default_hermod, mqtt_str, recv_exact, remaining_length


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, n):
    tmp = tempfile.mkdtemp(prefix="hermod-subcpu-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = os.path.join(tmp, "hermod.toml")
    with open(cfg, "w") as f:
        f.write(f'max_subscriptions = 0\n[[listener]]\nbind = "127.0.0.1:{port}"\n[store]\nsync = "os"\n')
    proc = subprocess.Popen([binary, "serve", "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("broker did not start")
        # CONNECT, clean session 0 (persistent).
        body = mqtt_str("MQTT") + bytes([4, 0x00]) + struct.pack("!H", 60) + mqtt_str("subcpu")
        c.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
        recv_exact(c, 4)
        time.sleep(0.2)
        before = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        for i in range(n):
            body = struct.pack("!H", (i % 65535) + 1) + mqtt_str(f"cpu/{i}/#") + bytes([1])
            c.sendall(bytes([0x82]) + remaining_length(len(body)) + body)
            recv_exact(c, 5)
        wall = time.monotonic() - t0
        time.sleep(0.5)  # detached store writes finish
        used = cpu_seconds(proc.pid) - before
        c.close()
        return used, wall
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hermod", default=None)
    ap.add_argument("--counts", default="1000,3000")
    a = ap.parse_args()
    a.hermod = a.hermod or default_hermod()
    if not a.hermod:
        sys.exit("no hermod binary found: cargo build --release, or --hermod PATH")
    for n in [int(x) for x in a.counts.split(",")]:
        used, wall = measure(a.hermod, n)
        print(f"{n:6} SUBSCRIBEs: broker CPU {used:.2f} s ({used / n * 1e6:.0f} us each), wall {wall:.2f} s")


if __name__ == "__main__":
    main()
