"""Raw MQTT 3.1.1 helpers shared by the benchmark scripts (plain sockets, no dependencies),
and how they find the hermod binary."""

import json
import os
import shutil
import socket
import struct
import subprocess


def default_hermod():
    """$HERMOD_BIN, else <cargo target dir>/release/hermod (from `cargo metadata`), else `hermod`
    on PATH; None if none exists."""
    if os.environ.get("HERMOD_BIN"):
        return os.environ["HERMOD_BIN"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=root,
                              check=True, capture_output=True, text=True, timeout=60).stdout
        path = os.path.join(json.loads(meta)["target_directory"], "release", "hermod")
        if os.access(path, os.X_OK):
            return path
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        pass
    return shutil.which("hermod")


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind, body):
    return bytes([kind]) + remaining_length(len(body)) + body


def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("closed")
        buf += chunk
    return buf


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
