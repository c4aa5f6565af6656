#!/usr/bin/env python3
"""wanem: a WAN emulator for the tests (the kernel here has no netem).

A TCP proxy: one listening port, every accepted connection is forwarded to one
target. Per direction it adds a one-way delay with jitter and a bandwidth cap
(a token bucket shared by every connection, as a link's bandwidth is), and on
command it stalls (blackholes) a direction, resets every connection (RST on both
sides), cuts a connection after N more bytes, ends every connection with a bare
FIN, or flips one byte inside the next TLS application-data record. docs/wan.md
describes the model and its limits.

Directions: "up" is client -> target (e.g. bridge -> broker), "down" is
target -> client.

    wanem.py --listen 127.0.0.1:0 --target 127.0.0.1:9443 --rtt-ms 40 --control /tmp/w.sock

It prints one line, "wanem: listening on HOST:PORT", once it accepts. The control
socket takes one command a line and answers one line ("ok ..." or "error ...");
`status` answers JSON. Commands:

    stall up|down|both     hold the bytes of that direction: send nothing, no FIN, no RST
    resume [up|down|both]  release what was held (default both)
    rst                    abort every connection with an RST on both sides (SO_LINGER 0)
    fin                    end every connection with a FIN on both sides, dropping what is
                           queued (a TCP end without any TLS close_notify)
    cut N [up|down|both]   each open connection is reset once N more bytes have been
                           delivered in those directions (default both)
    flip [up|down]         flip one byte in the middle of the ciphertext of the next TLS
                           record of content type 23 in that direction (default up)
    delay MS [up|down|both]   set the one-way delay
    jitter MS              set the jitter (uniform in +-MS, never reordering)
    rate MBIT|none [up|down|both]   set or remove the bandwidth cap
    status                 JSON figures
"""
import argparse
import collections
import errno
import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time

DIRS = ("up", "down")


class TimerFd:
    """A CLOCK_MONOTONIC timerfd (through libc: Python 3.11 has no os.timerfd_*), so
    that the loop wakes at the next release time to the microsecond; epoll's own
    timeout is in whole milliseconds."""

    def __init__(self):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.ctypes = ctypes
        self.fd = self.libc.timerfd_create(1, 0o4000 | 0o2000000)  # MONOTONIC, NONBLOCK|CLOEXEC
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class Itimerspec(ctypes.Structure):
            _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]
        self.spec = Itimerspec()
        self.armed = None

    def arm(self, t):
        """Fires at monotonic time t (seconds), or never for None."""
        if t == self.armed:
            return
        self.armed = t
        if t is None:
            sec, nsec = 0, 0
        else:
            t = max(t, 1e-6)
            sec = int(t)
            nsec = max(1, int((t - sec) * 1e9)) if sec == 0 else int((t - sec) * 1e9)
        self.spec.it_value.tv_sec, self.spec.it_value.tv_nsec = sec, nsec
        if self.libc.timerfd_settime(self.fd, 1, self.ctypes.byref(self.spec), None) != 0:  # ABSTIME
            raise OSError(self.ctypes.get_errno(), "timerfd_settime")

    def clear(self):
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
READ_CHUNK = 256 << 10
PIECE = 16 << 10  # rate-limited bytes are released in pieces of at most this


class Link:
    """The emulated link's settings and shared state, per direction."""

    def __init__(self, args):
        half = args.rtt_ms / 2.0
        self.delay = {"up": (args.delay_up_ms if args.delay_up_ms is not None else half) / 1e3,
                      "down": (args.delay_down_ms if args.delay_down_ms is not None else half) / 1e3}
        self.jitter = args.jitter_ms / 1e3
        self.rate = {d: (args.rate_mbit * 1e6 / 8 if args.rate_mbit else None) for d in DIRS}
        self.burst = args.burst_bytes
        self.tat = {d: 0.0 for d in DIRS}  # token bucket (GCRA form): when the bucket is full
        self.stalled = {d: False for d in DIRS}
        self.flip_armed = {d: False for d in DIRS}
        self.handshake_rtt = not args.no_handshake_rtt
        self.qcap = args.queue_bytes
        self.rng = random.Random(args.seed)
        self.stats = {"accepted": 0, "open": 0, "bytes_up": 0, "bytes_down": 0, "flipped": 0,
                      "flip_offsets": [], "rst_sent": 0, "cut": 0, "fin_sent": 0,
                      "refused": 0, "max_late_ms": 0.0}

    def rtt(self):
        return self.delay["up"] + self.delay["down"]

    def depart(self, d, t, n):
        """When n bytes read at t leave the sender's end (token bucket of `burst`)."""
        r = self.rate[d]
        if not r:
            return t
        dep = max(t, self.tat[d] - (self.burst - n) / r)
        self.tat[d] = max(self.tat[d], dep) + n / r
        return dep


class Direction:
    """One direction of one connection: a FIFO of (release time, bytes or marker)."""

    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.q = collections.deque()
        self.queued = 0
        self.last_release = 0.0
        self.eof_read = False     # the source ended (FIN read)
        self.done = False         # FIN forwarded (or the direction is dead)
        self.offset = 0           # stream offset of the next byte read
        self.hdr = bytearray()    # TLS record parser: a partial record header
        self.body_left = 0        # bytes left in the current record's body
        self.flip_at = None       # absolute stream offset of the byte to flip
        self.cut_left = None

    def src(self):
        return self.conn.c if self.name == "up" else self.conn.t

    def dst(self):
        return self.conn.t if self.name == "up" else self.conn.c


class Conn:
    def __init__(self, emu, csock):
        self.emu = emu
        self.c = csock
        self.t = None
        self.opened = time.monotonic()
        self.dirs = {d: Direction(self, d) for d in DIRS}
        self.closed = False
        self.finned = False
        self.out_blocked = {}  # socket fd -> True while a send would block


class Emulator:
    def __init__(self, args):
        self.args = args
        self.link = Link(args)
        host, port = args.listen.rsplit(":", 1)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, int(port)))
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        th, tp = args.target.rsplit(":", 1)
        self.target = (th, int(tp))
        self.ep = select.epoll()
        self.ep.register(self.lsock.fileno(), select.EPOLLIN)
        self.csock = None
        if args.control:
            try:
                os.unlink(args.control)
            except FileNotFoundError:
                pass
            self.csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.csock.bind(args.control)
            self.csock.listen(16)
            self.csock.setblocking(False)
            self.ep.register(self.csock.fileno(), select.EPOLLIN)
        self.ctl = {}     # fd -> [socket, buffer]
        self.socks = {}   # fd -> (conn, "c" | "t")
        self.conns = set()
        self.timers = []  # heap of (time, seq, fn)
        self.seq = 0
        self.pending_connect = []  # conns accepted while "up" is stalled

    # ------------------------------------------------------------ timers
    def at(self, t, fn):
        self.seq += 1
        heapq.heappush(self.timers, (t, self.seq, fn))

    # ------------------------------------------------------------ epoll masks
    def update(self, conn, which):
        if conn.closed:
            return
        s = conn.c if which == "c" else conn.t
        if s is None:
            return
        reading = conn.dirs["up" if which == "c" else "down"]
        mask = 0
        if not reading.eof_read and reading.queued < self.link.qcap and not conn.finned:
            mask |= select.EPOLLIN
        if conn.finned:
            mask |= select.EPOLLIN  # drain and discard until the peer closes
        if conn.out_blocked.get(s.fileno()):
            mask |= select.EPOLLOUT
        try:
            self.ep.modify(s.fileno(), mask)
        except OSError:
            pass  # no longer watched (see on_readable)

    # ------------------------------------------------------------ connections
    def accept(self):
        for _ in range(256):
            try:
                s, _ = self.lsock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    return
                raise
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(self, s)
            self.conns.add(conn)
            self.link.stats["accepted"] += 1
            self.link.stats["open"] += 1
            self.socks[s.fileno()] = (conn, "c")
            self.ep.register(s.fileno(), select.EPOLLIN)
            if self.link.stalled["up"]:
                self.pending_connect.append(conn)  # a SYN into the blackhole
            else:
                self.connect(conn)

    def connect(self, conn):
        if conn.closed:
            return
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.settimeout(5)
        try:
            t.connect(self.target)
        except OSError:
            t.close()
            self.link.stats["refused"] += 1
            # The client learns of the refusal one round trip after its SYN.
            when = conn.opened + (self.link.rtt() if self.link.handshake_rtt else 0)
            self.at(when, lambda: self.abort(conn))
            return
        t.setblocking(False)
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.t = t
        self.socks[t.fileno()] = (conn, "t")
        self.ep.register(t.fileno(), select.EPOLLIN)
        for d in DIRS:
            self.schedule(conn.dirs[d])

    def close_sock(self, s, rst):
        if s is None:
            return
        try:
            self.ep.unregister(s.fileno())
        except (OSError, ValueError):
            pass
        self.socks.pop(s.fileno(), None)
        if rst:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        s.close()

    def abort(self, conn):
        """RST on both sides (SO_LINGER 0), dropping whatever is queued."""
        if conn.closed:
            return
        conn.closed = True
        self.link.stats["open"] -= 1
        self.link.stats["rst_sent"] += 1
        self.close_sock(conn.c, True)
        self.close_sock(conn.t, True)
        self.conns.discard(conn)

    def finish(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self.link.stats["open"] -= 1
        self.close_sock(conn.c, False)
        self.close_sock(conn.t, False)
        self.conns.discard(conn)

    def bare_fin(self, conn):
        """A FIN to both sides now, nothing more forwarded (T-14)."""
        if conn.closed or conn.finned:
            return
        conn.finned = True
        self.link.stats["fin_sent"] += 1
        for d in DIRS:
            conn.dirs[d].q.clear()
            conn.dirs[d].queued = 0
        for s in (conn.c, conn.t):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        conn.out_blocked.clear()
        self.update(conn, "c")
        self.update(conn, "t")
        # Both peers close once they see the FIN; a peer that does not is
        # closed after 60 s so that nothing lingers.
        self.at(time.monotonic() + 60, lambda: self.finish(conn))

    # ------------------------------------------------------------ reading
    def on_readable(self, conn, which, ev):
        s = conn.c if which == "c" else conn.t
        d = conn.dirs["up" if which == "c" else "down"]
        hup = ev & (select.EPOLLHUP | select.EPOLLERR)
        if hup and d.eof_read and not conn.finned:
            # Neither readable nor writable any more, and reported on every
            # wait: stop watching it (a later send to it fails and is handled).
            try:
                self.ep.unregister(s.fileno())
            except OSError:
                pass
            return
        if conn.finned:
            # Discard what the peer still sends; close its socket once it has ended
            # too (closing earlier, with unread bytes, would send it an RST).
            for _ in range(16):
                try:
                    b = s.recv(READ_CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    b = b""
                if not b:
                    self.close_sock(s, False)
                    if which == "c":
                        conn.c = None
                    else:
                        conn.t = None
                    if conn.c is None and conn.t is None:
                        self.finish(conn)
                    return
            return
        for _ in range(4):  # a few reads per wake-up, then let others run
            if d.eof_read or (d.queued >= self.link.qcap and not hup):
                break
            try:
                b = s.recv(READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                # The source reset (or failed): the other side gets an RST
                # when the news would have reached it.
                self.enqueue_marker(d, "rst")
                d.eof_read = True
                self.update(conn, which)
                return
            now = time.monotonic()
            if not b:
                d.eof_read = True
                self.enqueue_marker(d, "fin")
                break
            self.enqueue(d, b, now)
            if len(b) < READ_CHUNK:
                break
        self.update(conn, which)

    def parse_records(self, d, b):
        """Follows the TLS record headers of the stream; returns b with a byte
        flipped when an armed flip falls in it."""
        link = self.link
        i, n = 0, len(b)
        while i < n:
            if d.body_left:
                k = min(d.body_left, n - i)
                i += k
                d.body_left -= k
                continue
            take = min(5 - len(d.hdr), n - i)
            d.hdr += b[i:i + take]
            i += take
            if len(d.hdr) == 5:
                ctype, length = d.hdr[0], (d.hdr[3] << 8) | d.hdr[4]
                d.hdr.clear()
                d.body_left = length
                if ctype == 23 and length > 0 and link.flip_armed[d.name] and d.flip_at is None:
                    link.flip_armed[d.name] = False
                    d.flip_at = d.offset + i + length // 2
        if d.flip_at is not None and d.offset <= d.flip_at < d.offset + n:
            k = d.flip_at - d.offset
            b = bytearray(b)
            b[k] ^= 0x01
            b = bytes(b)
            link.stats["flipped"] += 1
            link.stats["flip_offsets"].append(d.flip_at)
            d.flip_at = None
        return b

    def enqueue(self, d, b, now):
        link = self.link
        b = self.parse_records(d, b)
        d.offset += len(b)
        conn = d.conn
        # Before the TCP handshake's round trip the client cannot send, nor the
        # target's first bytes arrive (they are sent once the SYN is in).
        if link.handshake_rtt:
            floor = conn.opened + (link.rtt() if d.name == "up" else link.delay["up"])
            now = max(now, floor)
        rate = link.rate[d.name]
        pieces = [b] if not rate or len(b) <= PIECE else \
            [b[k:k + PIECE] for k in range(0, len(b), PIECE)]
        was_empty = not d.q
        for p in pieces:
            dep = link.depart(d.name, now, len(p))
            rel = dep + link.delay[d.name]
            if link.jitter:
                rel += link.rng.uniform(-link.jitter, link.jitter)
            rel = max(rel, dep, d.last_release)  # jitter never reorders
            d.last_release = rel
            d.q.append([rel, p])
            d.queued += len(p)
        if was_empty:
            self.schedule(d)

    def enqueue_marker(self, d, kind):
        now = time.monotonic()
        rel = max(now + self.link.delay[d.name], d.last_release)
        d.last_release = rel
        was_empty = not d.q
        d.q.append([rel, kind])
        if was_empty:
            self.schedule(d)

    # ------------------------------------------------------------ sending
    def schedule(self, d):
        if d.q and not d.conn.closed:
            self.at(d.q[0][0], lambda: self.flush(d))

    def flush(self, d):
        conn = d.conn
        if conn.closed or conn.finned or d.done:
            return
        dst = d.dst()
        if dst is None or self.link.stalled[d.name]:
            return  # resume() or connect() schedules it again
        if conn.out_blocked.get(dst.fileno()):
            return  # EPOLLOUT calls us
        now = time.monotonic()
        while d.q and d.q[0][0] <= now:
            rel, item = d.q[0]
            if item == "fin":
                d.q.popleft()
                d.done = True
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if all(x.done for x in conn.dirs.values()):
                    self.finish(conn)
                return
            if item == "rst":
                self.abort(conn)
                return
            data = item
            if d.cut_left is not None and len(data) > d.cut_left:
                data = data[:d.cut_left]
            try:
                sent = dst.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                # The destination is gone: its reset travels back.
                d.done = True
                d.q.clear()
                other = conn.dirs["down" if d.name == "up" else "up"]
                other.q.clear()
                self.enqueue_marker(other, "rst")
                return
            late = (now - rel) * 1e3
            if late > self.link.stats["max_late_ms"]:
                self.link.stats["max_late_ms"] = round(late, 3)
            d.queued -= sent
            self.link.stats["bytes_" + d.name] += sent
            if d.cut_left is not None:
                d.cut_left -= sent
                if d.cut_left <= 0:
                    self.link.stats["cut"] += 1
                    self.abort(conn)
                    return
            if sent < len(data):  # the destination's buffer is full
                d.q[0][1] = item[sent:]
                conn.out_blocked[dst.fileno()] = True
                self.update(conn, "c" if dst is conn.c else "t")
                break
            d.q.popleft()
        # reading may resume now that the queue shrank
        self.update(conn, "c" if d.name == "up" else "t")
        if d.q and not conn.out_blocked.get(dst.fileno()):
            self.schedule(d)

    def on_writable(self, conn, which):
        s = conn.c if which == "c" else conn.t
        conn.out_blocked.pop(s.fileno(), None)
        self.update(conn, which)
        d = conn.dirs["down" if which == "c" else "up"]
        self.flush(d)

    # ------------------------------------------------------------ control
    def command(self, line):
        w = line.split()
        if not w:
            return "error empty"
        cmd, a = w[0], w[1:]

        def dirs(arg, default="both"):
            x = arg[0] if arg else default
            if x == "both":
                return list(DIRS)
            if x in DIRS:
                return [x]
            raise ValueError(f"bad direction {x!r}")
        link = self.link
        if cmd == "stall":
            for d in dirs(a):
                link.stalled[d] = True
            return "ok stalled " + ",".join(d for d in DIRS if link.stalled[d])
        if cmd == "resume":
            for d in dirs(a):
                link.stalled[d] = False
            if not link.stalled["up"]:
                pend, self.pending_connect = self.pending_connect, []
                for c in pend:
                    self.connect(c)
            for c in list(self.conns):
                for d in DIRS:
                    self.schedule(c.dirs[d])
            return "ok"
        if cmd == "rst":
            n = 0
            for c in list(self.conns):
                self.abort(c)
                n += 1
            return f"ok reset {n}"
        if cmd == "fin":
            n = 0
            for c in list(self.conns):
                if not c.finned:
                    self.bare_fin(c)
                    n += 1
            return f"ok fin {n}"
        if cmd == "cut":
            n = int(a[0])
            if n < 0:
                raise ValueError("negative count")
            for c in list(self.conns):
                for d in dirs(a[1:]):
                    c.dirs[d].cut_left = n
                if n == 0:
                    self.link.stats["cut"] += 1
                    self.abort(c)
            return f"ok cut after {n}"
        if cmd == "flip":
            for d in dirs(a, "up"):
                link.flip_armed[d] = True
            return "ok armed"
        if cmd == "delay":
            for d in dirs(a[1:]):
                link.delay[d] = float(a[0]) / 1e3
            return "ok"
        if cmd == "jitter":
            link.jitter = float(a[0]) / 1e3
            return "ok"
        if cmd == "rate":
            for d in dirs(a[1:]):
                link.rate[d] = None if a[0] == "none" else float(a[0]) * 1e6 / 8
            return "ok"
        if cmd == "status":
            st = dict(link.stats)
            st["stalled"] = [d for d in DIRS if link.stalled[d]]
            st["queued"] = sum(c.dirs[d].queued for c in self.conns for d in DIRS)
            st["delay_ms"] = {d: link.delay[d] * 1e3 for d in DIRS}
            return json.dumps(st)
        return f"error unknown command {cmd!r}"

    def on_control(self, fd):
        s, buf = self.ctl[fd]
        try:
            b = s.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            b = b""
        if not b:
            self.ep.unregister(fd)
            s.close()
            del self.ctl[fd]
            return
        buf += b
        while b"\n" in buf:
            line, _, rest = buf.partition(b"\n")
            buf[:] = rest
            try:
                reply = self.command(line.decode())
            except (ValueError, IndexError) as e:
                reply = f"error {e}"
            try:
                s.setblocking(True)
                s.sendall(reply.encode() + b"\n")
                s.setblocking(False)
            except OSError:
                pass

    # ------------------------------------------------------------ loop
    def run(self):
        print(f"wanem: listening on {self.lsock.getsockname()[0]}:{self.lsock.getsockname()[1]}",
              flush=True)
        tfd = TimerFd()
        self.ep.register(tfd.fd, select.EPOLLIN)
        lfd = self.lsock.fileno()
        cfd = self.csock.fileno() if self.csock else -1
        while True:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()
            # time.monotonic() is CLOCK_MONOTONIC, the timerfd's clock.
            tfd.arm(self.timers[0][0] if self.timers else None)
            events = self.ep.poll(-1 if self.timers else 1.0)
            for fd, ev in events:
                if fd == tfd.fd:
                    tfd.clear()
                    tfd.armed = None
                elif fd == lfd:
                    self.accept()
                elif fd == cfd:
                    try:
                        s, _ = self.csock.accept()
                    except BlockingIOError:
                        continue
                    s.setblocking(False)
                    self.ctl[s.fileno()] = [s, bytearray()]
                    self.ep.register(s.fileno(), select.EPOLLIN)
                elif fd in self.ctl:
                    self.on_control(fd)
                else:
                    entry = self.socks.get(fd)
                    if not entry:
                        continue
                    conn, which = entry
                    if ev & select.EPOLLOUT and not conn.closed:
                        self.on_writable(conn, which)
                    if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not conn.closed:
                        self.on_readable(conn, which, ev)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--target", required=True)
    ap.add_argument("--rtt-ms", type=float, default=0.0, help="round trip added (half each way)")
    ap.add_argument("--delay-up-ms", type=float, help="one-way delay client->target (overrides rtt)")
    ap.add_argument("--delay-down-ms", type=float, help="one-way delay target->client")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform +-jitter per chunk")
    ap.add_argument("--rate-mbit", type=float, help="bandwidth cap per direction (Mbit/s)")
    ap.add_argument("--burst-bytes", type=int, default=64 << 10, help="token bucket depth")
    ap.add_argument("--queue-bytes", type=int, default=64 << 20,
                    help="bytes held per connection and direction before reading stops")
    ap.add_argument("--no-handshake-rtt", action="store_true",
                    help="do not charge a new connection the TCP handshake's round trip")
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="run under SCHED_FIFO at this priority when allowed (0: no), so that "
                         "a loaded machine's run queue does not add its wait to the delay")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parent-pid", type=int, help="exit when this parent process dies")
    ap.add_argument("--control", help="unix socket for commands")
    args = ap.parse_args()
    if args.parent_pid:
        # Dies with the test that started it, even when that test is killed.
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != args.parent_pid:
            sys.exit("wanem: parent already gone")
    emu = Emulator(args)
    emu.link.stats["realtime"] = False
    if args.rt_priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.rt_priority))
            emu.link.stats["realtime"] = True
        except OSError as e:
            sys.stderr.write(f"wanem: no SCHED_FIFO ({e}); running at normal priority\n")
    emu.run()


if __name__ == "__main__":
    main()
