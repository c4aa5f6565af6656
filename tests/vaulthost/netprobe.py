#!/usr/bin/env python3
"""Tiny servers and probes for the egress-lock network-namespace test.

serve: answer TCP connections and UDP datagrams on the given ports (IPv4 and
IPv6), write READY_FILE once every socket is bound, exit after --lifetime
seconds at the latest so a crashed test never leaves it behind.

check: run every probe at once (threads), each bounded by --timeout, and
compare with the expectation: "reach" (an answer came back) or "blocked" (no
answer: a timeout, a refusal from the firewall, EPERM from our own OUTPUT
chain). Exit 1 if any probe disagrees.
"""
import argparse
import concurrent.futures
import os
import selectors
import socket
import sys
import time


def serve(args):
    sel = selectors.DefaultSelector()
    for port in args.tcp:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("tcp", port))
    for port in args.udp:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("udp", port))
    with open(args.ready_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(args.ready_file + ".tmp", args.ready_file)
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            proto, port = key.data
            try:
                if proto == "tcp":
                    conn, _ = key.fileobj.accept()
                    with conn:
                        conn.settimeout(1.0)
                        conn.sendall(b"ok %d\n" % port)
                else:
                    _, peer = key.fileobj.recvfrom(512)
                    key.fileobj.sendto(b"ok %d\n" % port, peer)
            except OSError:
                pass
    return 0


def probe(spec, timeout):
    """spec: PROTO:HOST:PORT (HOST may be [v6]). Returns True if answered."""
    proto, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(fam, kind) as s:
            s.settimeout(timeout)
            if proto == "tcp":
                s.connect((host, int(port)))
            else:
                s.sendto(b"probe", (host, int(port)))
            return s.recv(64).startswith(b"ok ")
    except OSError:
        return False


def check(args):
    specs = []
    for item in args.probes:
        want, spec = item.split(":", 1)
        if want not in ("reach", "blocked"):
            raise SystemExit("bad expectation in %r" % item)
        specs.append((want, spec))
    bad = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(specs)) as pool:
        results = list(pool.map(lambda ws: probe(ws[1], args.timeout), specs))
    for (want, spec), ok in zip(specs, results):
        got = "reach" if ok else "blocked"
        verdict = "ok  " if got == want else "FAIL"
        if got != want:
            bad += 1
        print("  %s %-7s %s %s (expected %s)" % (verdict, got, args.label, spec, want))
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--tcp", type=int, action="append", default=[])
    s.add_argument("--udp", type=int, action="append", default=[])
    s.add_argument("--ready-file", required=True)
    s.add_argument("--lifetime", type=float, default=300.0)
    c = sub.add_parser("check")
    c.add_argument("--timeout", type=float, default=0.7)
    c.add_argument("--label", default="")
    c.add_argument("probes", nargs="+", help="reach|blocked:tcp|udp:HOST:PORT")
    args = p.parse_args()
    return serve(args) if args.cmd == "serve" else check(args)


if __name__ == "__main__":
    sys.exit(main())
