#!/usr/bin/env python3
"""bench/store_memory.py: issue 4's memory-bound test for Hermod's durable offline queues.

1. Start `hermod serve` fresh (temp dir, free loopback port, `[store] sync = --sync`).
2. N persistent sessions (clean_session=0, client ids `sm-<i>`, default N = 1000) each subscribe
   to `q/<i>` at QoS 1 and disconnect.
3. One publisher sends M QoS 1 messages per session (default 200, so 200,000 in all; 100-byte
   payload `<session>:<index>:xxx...`), round-robin over the sessions (round r goes to q/0 ..
   q/N-1), pipelined with --window unacknowledged PUBLISHes; every PUBACK is counted.
4. The broker's VmRSS (/proc/PID/status) is sampled before the sessions, after they subscribed,
   every 10,000 PUBACKs, and at the end; the store's size on disk is recorded.
5. Optionally (--restart) the broker is stopped (SIGTERM) and started again on the same store.
6. --sample sessions spread over the range reconnect: each must receive its M messages, in order,
   with no gap and no duplicate. Then (--all) the remaining sessions reconnect, --concurrency at a
   time, and the total delivered must be N*M.

Usage:
  python3 bench/store_memory.py                       # sync=batch, 1000 x 200, restart, all
  python3 bench/store_memory.py --sync memory --no-restart
  python3 bench/store_memory.py --sessions 100 --per-session 50      # quick
  HERMOD_BIN=/path/to/hermod python3 bench/store_memory.py --json out.json

Exit status 0 only if every PUBACK arrived and every checked session got exactly its messages in
order. Only loopback; bounded loops; only the broker started here is stopped, by PID.
"""

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from durable_throughput import (Broker, MqttConn, connect_packet, dir_bytes,  # noqa: E402
                                free_port, hermod_bin, mqtt_connect, publish_prefix_qos1, rss_mib)


def payload_for(i, r, size):
    p = f"{i}:{r}:".encode()
    return p + b"x" * (size - len(p))


async def create_sessions(port, n, concurrency):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            c = await mqtt_connect(port, f"sm-{i}", clean=False)
            await c.subscribe(f"q/{i}", 1)
            await c.disconnect()

    await asyncio.gather(*(one(i) for i in range(n)))


async def publish_all(port, n, per, size, window, pid, limit_s):
    """Round-robin QoS 1 publishes; returns (acked, seconds, samples [(acked, RSS MiB, s)])."""
    c = await mqtt_connect(port, f"sm-pub-{os.getpid()}", clean=True)
    prefixes = [publish_prefix_qos1(f"q/{i}", size) for i in range(n)]
    total = n * per
    state = {"sent": 0, "acked": 0, "next_sample": 10_000}
    samples = []
    done = asyncio.get_running_loop().create_future()

    def send(k):
        k = min(k, total - state["sent"])
        if k <= 0:
            return
        parts = []
        for s in range(state["sent"], state["sent"] + k):
            r, i = divmod(s, n)
            c.next_pid = c.next_pid % 65535 + 1
            parts += (prefixes[i], c.next_pid.to_bytes(2, "big"), payload_for(i, r, size))
        state["sent"] += k
        c.transport.write(b"".join(parts))

    def on_puback(k):
        state["acked"] += k
        while state["acked"] >= state["next_sample"]:
            samples.append((state["next_sample"], rss_mib(pid), time.monotonic() - t0))
            state["next_sample"] += 10_000
        if state["acked"] >= total and not done.done():
            done.set_result(True)
        send(k)

    c.on_puback = on_puback
    t0 = time.monotonic()  # read by on_puback
    send(window)
    try:
        await asyncio.wait_for(asyncio.shield(done), limit_s)
    except asyncio.TimeoutError:
        pass
    secs = time.monotonic() - t0
    await c.disconnect()
    return state["acked"], secs, samples


async def receive_session(port, i, per, idle=3.0, limit_s=60):
    """Reconnects session i; returns (received payload indices list, session_present, problems)."""
    got = []
    problems = []
    last = [time.monotonic()]
    want_prefix = f"q/{i}".encode()

    def on_message(topic, payload, dup):
        last[0] = time.monotonic()
        if topic != want_prefix:
            problems.append(f"topic {topic!r}")
            return
        si, r, _ = payload.split(b":", 2)
        if int(si) != i:
            problems.append(f"payload of session {int(si)}")
        got.append(int(r))

    loop = asyncio.get_running_loop()
    _, c = await asyncio.wait_for(
        loop.create_connection(lambda: MqttConn(loop), "127.0.0.1", port), 10)
    c.on_message = on_message
    c.transport.write(connect_packet(f"sm-{i}", clean=False))
    await asyncio.wait_for(c.connack, 10)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if len(got) >= per and time.monotonic() - last[0] > 0.3:
            break
        if time.monotonic() - last[0] > idle:
            break
    await c.disconnect()
    return got, c.session_present, problems


async def receive_many(port, ids, per, concurrency):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            return i, await receive_session(port, i, per)

    return await asyncio.gather(*(one(i) for i in ids))


def check(got, per):
    """'ok' when got == [0, 1, ..., per-1]; otherwise a short description."""
    if got == list(range(per)):
        return "ok"
    dups = len(got) - len(set(got))
    missing = per - len(set(got) & set(range(per)))
    in_order = all(a < b for a, b in zip(got, got[1:]))
    return f"received {len(got)}, missing {missing}, duplicates {dups}, in order: {in_order}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sync", default="batch", choices=["batch", "os", "memory"])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--per-session", type=int, default=200)
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--window", type=int, default=1000, help="unacknowledged PUBLISHes")
    ap.add_argument("--max-queued", type=int, default=1000, help="hermod max_queued_messages")
    ap.add_argument("--sample", type=int, default=20, help="sessions checked one by one for order")
    ap.add_argument("--no-restart", dest="restart", action="store_false",
                    help="do not restart the broker between publishing and reconnecting")
    ap.add_argument("--no-all", dest="all", action="store_false",
                    help="skip reconnecting all the other sessions")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--publish-limit", type=float, default=600, help="seconds")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if args.sync == "memory" and args.restart:
        args.restart = False  # nothing survives a restart with sync = memory
    n, per = args.sessions, args.per_session
    total = n * per
    workdir = tempfile.mkdtemp(prefix=f"hermod-sm-{args.sync}-")
    port = free_port()
    kind = f"hermod-{args.sync}"
    print(f"hermod binary: {hermod_bin()}\n{kind}, {n} sessions x {per} QoS 1 messages of "
          f"{args.size} bytes, max_queued_messages={args.max_queued}, dir {workdir}")
    b = Broker(kind, workdir, port, max_queued=args.max_queued)
    out = {"sync": args.sync, "sessions": n, "per_session": per, "size": args.size,
           "max_queued": args.max_queued, "ok": True}
    ok = True
    try:
        b.start()
        time.sleep(1.0)
        out["rss_start"] = rss_mib(b.pid)
        print(f"RSS at start                      {out['rss_start']:7.1f} MiB")
        t = time.monotonic()
        asyncio.run(create_sessions(port, n, args.concurrency))
        time.sleep(1.0)
        out["sessions_s"] = time.monotonic() - t - 1.0
        out["rss_sessions"] = rss_mib(b.pid)
        print(f"RSS after {n} sessions subscribed  {out['rss_sessions']:7.1f} MiB "
              f"({out['sessions_s']:.1f} s)")
        acked, secs, samples = asyncio.run(
            publish_all(port, n, per, args.size, args.window, b.pid, args.publish_limit))
        out.update(acked=acked, publish_s=secs, rss_during=samples)
        prev = (0, 0.0)
        for k, v, ts in samples:
            if k % 50_000 == 0 or k == 10_000:
                rate = (k - prev[0]) / max(1e-9, ts - prev[1])
                print(f"RSS after {k:7d} PUBACKs           {v:7.1f} MiB   (t={ts:6.1f} s, "
                      f"{rate:,.0f} msg/s since the previous line)")
                prev = (k, ts)
        print(f"published {acked}/{total} acknowledged in {secs:.1f} s ({acked / secs:,.0f} msg/s)")
        if acked != total:
            ok = False
            print(f"FAIL: only {acked} of {total} PUBACKs arrived", file=sys.stderr)
        time.sleep(2.0)
        out["rss_end"] = rss_mib(b.pid)
        out["store_apparent"], out["store_allocated"] = (
            dir_bytes(b.data) if os.path.isdir(b.data) else (0, 0))
        rs = [v for _, v, _ in samples]
        print(f"RSS at end of publishing          {out['rss_end']:7.1f} MiB (during: min "
              f"{min(rs) if rs else 0:.1f}, max {max(rs) if rs else 0:.1f})")
        print(f"store on disk: {out['store_apparent'] / 2**20:.1f} MiB apparent, "
              f"{out['store_allocated'] / 2**20:.1f} MiB allocated")
        if args.restart:
            rc = b.stop()
            t = time.monotonic()
            b.start()
            time.sleep(1.0)
            out["restart_rc"] = rc
            out["restart_s"] = time.monotonic() - t - 1.0
            out["rss_after_restart"] = rss_mib(b.pid)
            print(f"restarted (old exit code {rc}); RSS after restart {out['rss_after_restart']:.1f}"
                  f" MiB (listening after {out['restart_s']:.1f} s)")
        step = max(1, n // max(1, args.sample))
        sample_ids = list(range(0, n, step))[:args.sample]
        t = time.monotonic()
        res = asyncio.run(receive_many(port, sample_ids, per, concurrency=1))
        bad = 0
        for i, (got, present, problems) in res:
            verdict = check(got, per)
            if verdict != "ok" or problems or not present:
                bad += 1
                print(f"  session sm-{i}: {verdict}; session_present={present}; "
                      f"{problems[:3]}", file=sys.stderr)
        out["sample"] = {"ids": sample_ids, "bad": bad, "s": time.monotonic() - t}
        print(f"sample: {len(sample_ids) - bad}/{len(sample_ids)} sessions received their {per} "
              f"messages in order, no duplicates ({out['sample']['s']:.1f} s)")
        ok &= bad == 0
        delivered = sum(len(got) for _, (got, _, _) in res)
        if args.all:
            rest = [i for i in range(n) if i not in set(sample_ids)]
            t = time.monotonic()
            res2 = asyncio.run(receive_many(port, rest, per, args.concurrency))
            bad2 = [(i, check(got, per)) for i, (got, present, pr) in res2
                    if check(got, per) != "ok" or pr or not present]
            delivered += sum(len(got) for _, (got, _, _) in res2)
            out["all"] = {"bad": len(bad2), "s": time.monotonic() - t, "examples": bad2[:5]}
            print(f"all: {len(rest) - len(bad2)}/{len(rest)} other sessions exact and in order "
                  f"({out['all']['s']:.1f} s); first problems: {bad2[:3]}")
            ok &= not bad2
            print(f"total delivered: {delivered} (expected {total})")
            ok &= delivered == total
        out["delivered"] = delivered
        time.sleep(1.0)
        out["rss_after_drain"] = rss_mib(b.pid)
        print(f"RSS after draining                {out['rss_after_drain']:7.1f} MiB")
    finally:
        out["exit_rc"] = b.stop()
        out["ok"] = ok
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
