#!/usr/bin/env python3
"""A tiny upstream for the idle-stream memory measurement in tests/bench/bench.sh.

Listens on 127.0.0.1:PORT, accepts any number of connections (up to the fd
limit), holds idle ones open and answers each request it can recognise with a
small Vault-KV-shaped 200 response. Exits after --max-seconds or on SIGTERM.
"""
import argparse
import resource
import selectors
import signal
import socket
import sys
import time

BODY = b'{"data":{"data":{"password":"s3cr3t"},"metadata":{"version":1}}}\n'
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stop = False

    def on_term(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    bufs = {}
    t0 = time.monotonic()
    while not stop and time.monotonic() - t0 < a.max_seconds:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:
                for _ in range(256):  # bounded accept burst
                    try:
                        c, _addr = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE and friends: try again on the next wakeup
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(c, selectors.EVENT_READ, "c")
                    bufs[c] = b""
                continue
            c = key.fileobj
            try:
                d = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            if not d:
                sel.unregister(c)
                bufs.pop(c, None)
                c.close()
                continue
            b = bufs[c] + d
            n = 0
            while b"\r\n\r\n" in b and n < 64:
                _, b = b.split(b"\r\n\r\n", 1)
                try:
                    c.sendall(RESP)
                except OSError:
                    break
                n += 1
            bufs[c] = b[-65536:]
    return 0


if __name__ == "__main__":
    sys.exit(main())
