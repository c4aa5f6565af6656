#!/usr/bin/env python3
"""Measures one-way delays through a wanem.py process, from a fresh Python process
(a test runner's heap and threads would add their own pauses to what it measures).

    probe.py --rtt-ms 40 --count 150 --gap-ms 10

Starts a sink and a wanem in front of it, sends `count` one-byte messages `gap-ms`
apart and prints JSON: {"one_way_ms": [...], "realtime": bool, "emulator": status}.
The sink and the sender run under SCHED_FIFO where allowed, as the emulator does
(on a loaded machine a normal thread's wake-up waits behind the whole run queue).
"""
import argparse
import gc
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wan import Wan  # noqa: E402


def realtime(on):
    try:
        if on:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True
    except (OSError, AttributeError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt-ms", type=float, default=40)
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--gap-ms", type=float, default=10)
    args = ap.parse_args()
    gc.disable()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(30)
    arrivals = []
    rt = {"sink": False}

    def sink():
        rt["sink"] = realtime(True)
        c, _ = ls.accept()
        c.settimeout(30)
        got = 0
        while got < args.count:
            b = c.recv(4096)
            if not b:
                break
            t = time.monotonic()
            for _ in b:
                arrivals.append(t)
            got += len(b)
        c.close()
    th = threading.Thread(target=sink, daemon=True)
    th.start()
    with Wan("127.0.0.1", ls.getsockname()[1], rtt_ms=args.rtt_ms, jitter_ms=args.jitter_ms,
             realtime=True) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(2 * args.rtt_ms / 1e3 + 0.05)  # past the TCP handshake's round trip
        sender_rt = realtime(True)
        sends = []
        for _ in range(args.count):
            sends.append(time.monotonic())
            s.sendall(b"m")
            time.sleep(args.gap_ms / 1e3)
        realtime(False)
        th.join(30)
        status = wan.status()
        s.close()
    n = min(len(sends), len(arrivals))
    print(json.dumps({"one_way_ms": [(arrivals[i] - sends[i]) * 1e3 for i in range(n)],
                      "realtime": bool(sender_rt and rt["sink"] and status.get("realtime")),
                      "emulator": status}))


if __name__ == "__main__":
    main()
