#!/usr/bin/env python3
"""paho-mqtt 2.x (websockets transport) against Hermod's ws and wss listeners.

For MQTT 3.1.1 and 5.0, over ws and (if --wss-port is given) wss with --cafile: connect with a
username/password, subscribe, publish QoS 1, receive it back; then check that a wrong password
is refused (CONNACK 5 on 3.1.1, 0x86 on 5.0). Exits non-zero on any failure. Every wait is
bounded. Needs: pip install paho-mqtt==2.2.0 (interop/requirements.txt).
"""
import argparse
import ssl
import sys
import threading
import uuid

import paho.mqtt.client as mqtt

WAIT = 5.0


def client(scheme, protocol, args, tag):
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"paho-{tag}-{uuid.uuid4().hex[:8]}",
        transport="websockets",
        protocol=protocol,
    )
    c.ws_set_options(path=args.path)
    if scheme == "wss":
        c.tls_set(ca_certs=args.cafile, cert_reqs=ssl.CERT_REQUIRED)
    return c


def round_trip(scheme, port, protocol, args):
    name = f"{scheme} {'v5' if protocol == mqtt.MQTTv5 else 'v311'}"
    c = client(scheme, protocol, args, scheme)
    c.username_pw_set(args.username, args.password)
    connected, subscribed, got = threading.Event(), threading.Event(), threading.Event()
    result = {}
    payload = f"paho {name} {uuid.uuid4().hex}".encode()

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["connack"] = reason_code
        connected.set()

    def on_subscribe(_c, _u, _mid, reason_codes, _props):
        result["suback"] = reason_codes
        subscribed.set()

    def on_message(_c, _u, msg):
        if msg.payload == payload:
            result["message"] = (msg.topic, msg.payload, msg.qos)
            got.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(args.host, port, keepalive=30)
    c.loop_start()
    try:
        if not connected.wait(WAIT):
            return f"{name}: no CONNACK within {WAIT}s"
        if result["connack"].is_failure:
            return f"{name}: refused: {result['connack']}"
        c.subscribe(args.topic, qos=1)
        if not subscribed.wait(WAIT):
            return f"{name}: no SUBACK"
        if any(rc.is_failure for rc in result["suback"]):
            return f"{name}: subscription refused: {result['suback']}"
        info = c.publish(args.topic, payload, qos=1)
        info.wait_for_publish(WAIT)
        if not info.is_published():
            return f"{name}: no PUBACK"
        if not got.wait(WAIT):
            return f"{name}: own message not received back"
        topic, body, qos = result["message"]
        if topic != args.topic or qos != 1:
            return f"{name}: got {topic} QoS {qos}"
        print(f"PASS {name}: connect, subscribe, publish QoS 1, receive")
        return None
    finally:
        c.disconnect()
        c.loop_stop()


def wrong_password(scheme, port, protocol, args):
    v5 = protocol == mqtt.MQTTv5
    name = f"{scheme} {'v5' if v5 else 'v311'} wrong password"
    c = client(scheme, protocol, args, "bad")
    c.username_pw_set(args.username, args.password + "-wrong")
    done = threading.Event()
    result = {}

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["connack"] = reason_code
        done.set()

    c.on_connect = on_connect
    c.connect(args.host, port, keepalive=30)
    c.loop_start()
    try:
        if not done.wait(WAIT):
            return f"{name}: no CONNACK"
        rc = result["connack"]
        # paho maps a 3.1.1 return code 5 to reason code 135 ("Not authorized").
        want = 0x86 if v5 else 0x87
        if rc.value != want:
            return f"{name}: CONNACK {rc} ({rc.value:#x}), expected {want:#x}"
        print(f"PASS {name}: refused with {rc.value:#x}")
        return None
    finally:
        c.disconnect()
        c.loop_stop()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ws-port", type=int, required=True)
    p.add_argument("--wss-port", type=int)
    p.add_argument("--cafile")
    p.add_argument("--path", default="/mqtt")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--topic", required=True)
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing a non-loopback host")
    targets = [("ws", args.ws_port)]
    if args.wss_port:
        if not args.cafile:
            sys.exit("--wss-port needs --cafile")
        targets.append(("wss", args.wss_port))
    failures = []
    for scheme, port in targets:
        for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
            for check in (round_trip, wrong_password):
                try:
                    err = check(scheme, port, protocol, args)
                except Exception as e:  # noqa: BLE001 - report and go on
                    err = f"{scheme} {check.__name__}: {type(e).__name__}: {e}"
                if err:
                    print(f"FAIL {err}")
                    failures.append(err)
    print(f"paho websockets: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
