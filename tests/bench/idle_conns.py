#!/usr/bin/env python3
"""Open COUNT idle TCP connections to 127.0.0.1:PORT and hold them.

Used by tests/bench/bench.sh to measure memory per idle wrapper stream.
Writes progress lines to STATUS ("opened N failed M" once all connects are
done, then "alive N closed M" each time CHECK appears). Exits on SIGTERM or
after --hold seconds, whichever comes first. Every loop is bounded.
"""
import argparse
import os
import resource
import select
import signal
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500, help="connections per burst")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between bursts")
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--open-deadline", type=float, default=120.0, help="give up opening after this")
    ap.add_argument("--hold", type=float, default=600.0, help="maximum seconds to hold")
    ap.add_argument("--status", required=True)
    ap.add_argument("--check", required=True, help="when this file appears, count live connections")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.count + 64) if hard != resource.RLIM_INFINITY else a.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < a.count + 16:
        print(f"fd limit {hard} is below {a.count} connections", file=sys.stderr)
        return 2

    stop = False

    def on_term(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def status(line: str) -> None:
        tmp = a.status + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, a.status)

    socks = []
    failed = 0
    t0 = time.monotonic()
    for i in range(a.count):
        if stop or time.monotonic() - t0 > a.open_deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(a.connect_timeout)
        try:
            s.connect(("127.0.0.1", a.port))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
        if (i + 1) % a.batch == 0:
            time.sleep(a.pause)
    open_s = time.monotonic() - t0
    status(f"opened {len(socks)} failed {failed} seconds {open_s:.2f}")

    def alive() -> tuple:
        p = select.poll()
        by_fd = {}
        for s in socks:
            p.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLRDHUP)
            by_fd[s.fileno()] = s
        closed = 0
        for fd, ev in p.poll(0):
            if ev & (select.POLLHUP | select.POLLERR | select.POLLRDHUP):
                closed += 1
                continue
            try:
                if by_fd[fd].recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        return len(socks) - closed, closed

    while not stop and time.monotonic() - t0 < a.hold:
        if os.path.exists(a.check):
            os.unlink(a.check)
            n_alive, n_closed = alive()
            status(f"alive {n_alive} closed {n_closed}")
        time.sleep(0.2)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
