"""Interop: device shadows with Eclipse paho-mqtt (Python, 2.x) as the device and the app.

The test starts its own `hermod serve -c` (loopback only, a free port, a store in a temporary
folder, `[shadow] aws_compat = true`, `[presence] enabled = true`, an ACL file granting the
applications' username every thing's topics) and stops it by its PID. The
binary is HERMOD_BIN, or target/{HERMOD_PROFILE:-debug}/hermod. Flows are AWS IoT's, on `$aws`
(as an AWS IoT Device SDK would use them) and on `$hermod`:

  - the app updates `desired`: `update/accepted` and the device gets `update/delta`;
  - the device reports: `update/accepted` at version + 1, no delta;
  - `get` answers the merged document, without a delta;
  - MQTT 5: a request with Response Topic and Correlation Data is answered there;
  - presence: the device's retained online/offline message.

Run:

    cargo build -p hermod && pytest -q interop/test_shadow.py
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = float(os.environ.get("MQTT_TIMEOUT", "5"))
QUIET = float(os.environ.get("MQTT_QUIET", "0.7"))
V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
BOTH = pytest.mark.parametrize("proto", [V311, V5], ids=["v311", "v5"])
ROOT = Path(__file__).resolve().parent.parent


def _binary() -> Path:
    given = os.environ.get("HERMOD_BIN")
    if given:
        return Path(given)
    return ROOT / "target" / os.environ.get("HERMOD_PROFILE", "debug") / "hermod"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def port():
    binary = _binary()
    if not binary.is_file():
        pytest.exit(f"no hermod binary at {binary} (cargo build -p hermod)", returncode=2)
    with tempfile.TemporaryDirectory(prefix="hermod-shadow-") as work:
        p = _free_port()
        config = Path(work) / "hermod.toml"
        # Devices are anonymous clients named after their thing (the broker's default rule gives
        # them their own thing's topics); applications log in as "app", granted every thing's.
        (Path(work) / "acl").write_text(
            "topic readwrite #\n\nuser app\ntopic readwrite #\n"
            "topic readwrite $hermod/things/#\ntopic readwrite $aws/things/#\n"
        )
        config.write_text(
            "allow_anonymous = true\n"
            'acl_file = "acl"\n'
            f'[[listener]]\nbind = "127.0.0.1:{p}"\n'
            '[store]\npath = "data"\n'
            "[admin]\nenabled = false\n"
            "[shadow]\naws_compat = true\n"
            "[presence]\nenabled = true\n"
        )
        proc = subprocess.Popen([str(binary), "serve", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                        pytest.exit(f"hermod exited: {err}", returncode=2)
                    assert time.monotonic() < deadline, "hermod did not listen within 20 s"
                    time.sleep(0.05)
            time.sleep(0.3)  # the shadow service subscribes right after start
            yield p
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Peer:
    """One paho client with its network loop in a thread and a queue of what it receives."""

    def __init__(self, port: int, proto: int, client_id: str, username: str | None = None):
        self.client_id = client_id
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id, protocol=proto, reconnect_on_failure=False)
        if username:
            self.c.username_pw_set(username)
        self.messages: queue.Queue = queue.Queue()
        self.acks: queue.Queue = queue.Queue()
        self.c.on_message = lambda c, u, msg: self.messages.put(msg)
        self.c.on_connect = lambda c, u, flags, rc, pr: self.acks.put(("connack", rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, pr: self.acks.put(("suback", rcs))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        kind, rc = self.acks.get(timeout=TIMEOUT)
        assert kind == "connack" and not rc.is_failure, rc

    def subscribe(self, topic: str, qos: int = 1):
        self.c.subscribe(topic, qos)
        kind, rcs = self.acks.get(timeout=TIMEOUT)
        assert kind == "suback" and not rcs[0].is_failure, rcs

    def publish(self, topic: str, doc, properties: Properties | None = None):
        payload = doc if isinstance(doc, str) else json.dumps(doc)
        self.c.publish(topic, payload, qos=1, properties=properties).wait_for_publish(TIMEOUT)

    def next_on(self, topic: str) -> tuple[dict, mqtt.MQTTMessage]:
        deadline = time.monotonic() + TIMEOUT
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.client_id}: nothing on {topic} within {TIMEOUT}s "
                                f"(got {[m.topic for m in skipped]})")
                try:
                    msg = self.messages.get(timeout=left)
                except queue.Empty:
                    continue
                if msg.topic == topic:
                    return json.loads(msg.payload), msg
                skipped.append(msg)
        finally:
            for m in skipped:
                self.messages.put(m)

    def drain(self) -> list[str]:
        topics = []
        while True:
            try:
                topics.append(self.messages.get(timeout=QUIET).topic)
            except queue.Empty:
                return topics

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def thing() -> str:
    return f"lamp-{uuid.uuid4().hex[:10]}"


@BOTH
@pytest.mark.parametrize("prefix", ["$aws", "$hermod"])
def test_desired_delta_report_get(port, proto, prefix):
    name = thing()
    base = f"{prefix}/things/{name}/shadow"
    device = Peer(port, proto, name)
    app = Peer(port, proto, f"app-{name}", "app")
    try:
        device.subscribe(f"{base}/update/delta")
        device.subscribe(f"{base}/update/accepted")
        device.subscribe(f"{base}/get/accepted")
        app.subscribe(f"{base}/update/accepted")

        app.publish(f"{base}/update",
                    {"state": {"desired": {"on": True, "color": "warm"}}, "clientToken": "app-1"})
        accepted, _ = app.next_on(f"{base}/update/accepted")
        assert accepted["version"] == 1 and accepted["clientToken"] == "app-1"
        delta, msg = device.next_on(f"{base}/update/delta")
        assert delta["state"] == {"on": True, "color": "warm"}
        assert delta["version"] == 1
        assert msg.qos == 1 and not msg.retain
        device.next_on(f"{base}/update/accepted")

        device.publish(f"{base}/update",
                       {"state": {"reported": {"on": True, "color": "warm"}}, "clientToken": "dev-1"})
        reported, _ = device.next_on(f"{base}/update/accepted")
        assert reported["version"] == 2 and reported["clientToken"] == "dev-1"
        assert reported["state"] == {"reported": {"on": True, "color": "warm"}}
        assert f"{base}/update/delta" not in device.drain()

        device.publish(f"{base}/get", {"clientToken": "dev-2"})
        got, _ = device.next_on(f"{base}/get/accepted")
        assert got["version"] == 2 and got["clientToken"] == "dev-2"
        assert got["state"] == {"desired": {"on": True, "color": "warm"},
                                "reported": {"on": True, "color": "warm"}}
    finally:
        device.close()
        app.close()


def test_version_conflict_and_missing_shadow(port):
    name = thing()
    base = f"$aws/things/{name}/shadow"
    app = Peer(port, V311, f"app-{name}", "app")
    try:
        app.subscribe(f"{base}/+/rejected")
        app.subscribe(f"{base}/update/accepted")
        app.publish(f"{base}/get", "")
        rejected, _ = app.next_on(f"{base}/get/rejected")
        assert rejected["code"] == 404
        app.publish(f"{base}/update", {"state": {"desired": {"x": 1}}})
        app.next_on(f"{base}/update/accepted")
        app.publish(f"{base}/update", {"state": {"desired": {"x": 2}}, "version": 9,
                                       "clientToken": "stale"})
        rejected, _ = app.next_on(f"{base}/update/rejected")
        assert rejected["code"] == 409 and rejected["clientToken"] == "stale"
    finally:
        app.close()


def test_v5_response_topic_and_correlation_data(port):
    name = thing()
    base = f"$hermod/things/{name}/shadow"
    app = Peer(port, V5, f"app-{name}", "app")
    try:
        reply_to = f"app-replies/{name}"
        app.subscribe(reply_to)
        p = Properties(PacketTypes.PUBLISH)
        p.ResponseTopic = reply_to
        p.CorrelationData = b"req-42"
        app.publish(f"{base}/update", {"state": {"desired": {"on": False}}}, properties=p)
        doc, msg = app.next_on(reply_to)
        assert doc["version"] == 1
        assert msg.properties.CorrelationData == b"req-42"
    finally:
        app.close()


def test_presence_online_then_offline(port):
    name = thing()
    watcher = Peer(port, V5, f"watch-{name}", "app")
    try:
        watcher.subscribe(f"$hermod/things/{name}/presence")
        device = Peer(port, V311, name)
        online, _ = watcher.next_on(f"$hermod/things/{name}/presence")
        assert online["online"] is True and online["reason"] == "connected"
        device.close()
        offline, _ = watcher.next_on(f"$hermod/things/{name}/presence")
        assert offline["online"] is False and offline["reason"] == "disconnected"
        late = Peer(port, V311, f"late-{name}", "app")
        late.subscribe(f"$hermod/things/{name}/presence")
        retained, msg = late.next_on(f"$hermod/things/{name}/presence")
        assert msg.retain and retained["online"] is False
        late.close()
    finally:
        watcher.close()
