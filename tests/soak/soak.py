#!/usr/bin/env python3
"""make soak: the tunnel under churn and faults for SOAK_MINUTES, then a verdict.

A broker and a bridge (the integration tests' own Env, Broker and Bridge, so
they run exactly as there: pinned mutual TLS, the wrappers' TLS ending in the
bridge as deployed) in front of the KV stand-in, which runs in a process of
its own so that it can be killed and restarted like a real OpenBao. Every
socket it accepts closes with an RST (SO_LINGER 0) unless it finished its
answer, so its death is never a clean end: a wrapper that sees a clean end
(TLS close_notify) before the whole body was sent was told a lie by the
tunnel, and that is counted as corruption, as is any body whose bytes or
sha256 are wrong.

Client threads (a bounded number) churn wrapper connections: secrets, /bytes/N
bodies from a byte to tens of MiB (Content-Length and close-delimited),
keep-alive sessions, slow readers, and wrappers that abort mid-body (with a
FIN or an RST). After a warm-up, every --fault-every seconds the load pauses,
the processes are sampled idle (RSS, fds, streams), the load resumes and one
fault drawn from a shuffled deck is injected at a random moment of the
interval: kill -9 of a child of either daemon, SIGSTOP of a child for 2-4 s,
SIGHUP reload, the bridge restarted, the broker restarted on the same ports,
the upstream restarted. A fault's window runs from its start to 2 s after a
probe read through the tunnel succeeds again; a read that fails outside every
window is an error. A sampler records RSS, fds and CPU of every process and
the broker's stream gauges every --sample-every seconds.

At the end the load stops, the system settles, and the verdict compares like
with like: each role's idle RSS at the end against the role's idle figure at
the end of the warm-up (a process the faults restarted is held to what its
role needed once warm; only growth past the tolerance fails), the fds of
each role against the baseline, streams against zero,
the supervised children against the parents' own logs (each restart inside
a fault window; no child killed by any signal but our SIGKILL). It prints a
table and PASS or FAIL with the reasons, writes summary.json and the samples
beside the daemons' logs, and exits 1 on FAIL.

    tests/soak/soak.py --minutes 10            # make soak SOAK_MINUTES=10
    tests/soak/soak.py --seconds 30 --warmup 6 --fault-every 8   # a smoke run
"""
import argparse
import functools
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import harness  # noqa: E402
from harness import bytes_body_sha256  # noqa: E402

SVC = "cloudtaser-broker.cloudtaser-system.svc"  # the name in the service certificate
RECV = 262144
# Byte i of a /bytes body is i % 256 (harness.BYTES_CHUNK repeats 0..255): any
# received piece of up to RECV bytes is compared with one slice of this.
PATTERN = bytes(range(256)) * (RECV // 256 + 1)
assert harness.BYTES_CHUNK == bytes(range(256)) * 256
READ_TIMEOUT = 30.0   # one recv; longer than any stop or restart the soak makes
READ_DEADLINE = 180.0  # one whole read, slow readers included
GRACE = 2.0           # a fault's window ends this long after the tunnel serves again
FAULT_KINDS = ("kill9-child", "sigstop-child", "sighup", "restart-bridge", "restart-broker",
               "restart-upstream")
# glibc raises its mmap threshold to the largest block freed (up to 32 MiB) and
# then keeps such blocks in the heap once freed: the idle RSS of one process
# swung between 16 and 54 MiB from one idle pause to the next. Fixed thresholds
# make a freed buffer leave RSS, so that a leak shows and noise does not.
MALLOC_FIXED = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"
# A reload loses no stream (FI-20): a read failing in its window is an error.
LOSSLESS = ("sighup",)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \S+\[(\w+)\] (\w+): (.*)$")


_EPOCH = time.time() - time.monotonic()


def now():
    """Unix time as the clock read at the start, advanced by the monotonic
    clock: a process that sets the system clock (another test on this
    machine) moves neither fault windows nor reads."""
    return time.monotonic() + _EPOCH


class ClockWatch:
    """Notices the system clock being moved (by anyone: the soak never does),
    and makes the time it is off a window of its own: certificates are not yet
    valid or expired then, so handshakes fail for a reason that is not ours."""

    def __init__(self, faults, stop):
        self.faults, self.stop = faults, stop
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        jump = None
        while not self.stop.wait(0.1):
            skew = time.time() - now()
            if jump is None and abs(skew) > 2:
                jump = Fault("clock-jump", f"system clock off by {skew:+.0f} s (not the soak)",
                             now() - 0.2)
                self.faults.append(jump)
                print(f"soak: the system clock moved by {skew:+.0f} s", flush=True)
            elif jump is not None and abs(skew) <= 2:
                jump.recovered = now()
                jump.t1 = jump.recovered + 5  # handshakes begun in the wrong time finish
                print(f"soak: the system clock is back after {jump.recovered - jump.t0:.0f} s",
                      flush=True)
                jump = None


def log_time(stamp):
    """A daemon log's UTC timestamp (ms) as unix seconds."""
    import calendar
    whole, ms = stamp.split(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000


def poll_until(pred, timeout, interval=0.1):
    """pred()'s first truthy value within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---------------------------------------------------------------- ports
def fixed_port(rng=random.SystemRandom()):
    """A loopback port below the kernel's ephemeral range, free now. The soak
    restarts its listeners on the same ports: an ephemeral port (harness's
    free_port) can meanwhile become some connection's source port, and the
    restart then fails with EADDRINUSE (it did, 43 minutes into an hour)."""
    try:
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    for _ in range(500):
        port = rng.randrange(10000, max(10001, lo))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free loopback port below the ephemeral range")


def retry_in_use(start, what, tries=20):
    """start() again while the port is taken by someone else (bounded: 20 tries, 1 s apart)."""
    for i in range(tries):
        try:
            return start()
        except (AssertionError, RuntimeError) as e:
            if "Address already in use" not in str(e) or i == tries - 1:
                raise
            print(f"soak: {what}: port in use, trying again", flush=True)
            time.sleep(1)


# ---------------------------------------------------------------- the upstream process
def upstream_child(port, plant):
    """The KV stand-in (harness.KvUpstream) in a process of its own, until stdin ends.

    Each accepted socket gets SO_LINGER 0, and a connection that ends normally
    first sends its FIN and waits (bounded) for the peer's: so a finished answer
    is delivered whole, while the process dying (kill -9) resets every open
    connection, never ends one cleanly. `plant` ("flip", "short") makes every
    /bytes body of 1 KiB or more wrong on purpose, to show the soak catches it."""
    import socketserver

    accept = socketserver.TCPServer.get_request

    def get_request(self):
        sock, addr = accept(self)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return sock, addr

    def shutdown_request(self, request):
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(30)
            for _ in range(4096):  # a peer that keeps sending is cut off (RST) after 256 MiB
                if not request.recv(65536):
                    break
        except OSError:
            pass
        request.close()

    socketserver.TCPServer.get_request = get_request
    socketserver.TCPServer.shutdown_request = shutdown_request
    if plant:
        modes = plant.split(",")
        original = harness._KvHandler.do_GET
        rng = random.Random(7)

        def planted(self):
            m = re.fullmatch(r"/bytes(-close)?/(\d+)", self.path)
            if not m or int(m.group(2)) < 1024:
                return original(self)
            n, mode = int(m.group(2)), rng.choice(modes)
            self.server.outer.requests += 1
            self.send_response(200)
            if m.group(1):
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(n))
            # A truncated or close-delimited body ends the connection (cleanly:
            # that is the lie to catch); a flipped byte leaves it open.
            self.close_connection = bool(m.group(1)) or mode == "short"
            self.end_headers()
            flip = rng.randrange(n)
            sent, limit = 0, (n // 2 if mode == "short" else n)
            try:
                while sent < limit:
                    part = bytearray(harness.BYTES_CHUNK[: min(65536, limit - sent)])
                    if mode == "flip" and sent <= flip < sent + len(part):
                        part[flip - sent] ^= 0x5A
                    self.wfile.write(part)
                    sent += len(part)
            except OSError:
                pass
        harness._KvHandler.do_GET = planted
    up = harness.KvUpstream(port=port)
    print(f"ready {up.port}", flush=True)
    sys.stdin.read()  # until the soak closes our stdin (or dies)
    os._exit(0)


class UpstreamProc:
    """The upstream process, restartable on the same port."""

    def __init__(self, out: Path, plant=None):
        self.port = fixed_port()
        self.out = out
        self.plant = plant
        self.generation = 0
        self.proc = None
        self.start()

    @property
    def addr(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.generation += 1
        log = open(self.out / f"upstream-{self.generation}.log", "wb")
        argv = [sys.executable, str(Path(__file__).resolve()), "--upstream-child", str(self.port)]
        if self.plant:
            argv += ["--plant", self.plant]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError("the upstream did not start within 20 s")
            b = os.read(self.proc.stdout.fileno(), 64)
            if not b:
                tail = (self.out / f"upstream-{self.generation}.log").read_text(
                    errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"the upstream exited: {' '.join(tail)}")
            line += b
        assert line.split()[0] == b"ready", line

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.kill()


# ---------------------------------------------------------------- wrappers
class CleanEnd(Exception):
    """TLS close_notify: the tunnel said the stream ended normally."""


class Wrapper:
    """One wrapper connection: TLS to the bridge through the broker."""

    def __init__(self, port, ctx):
        raw = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.raw = raw
        try:
            self.s = ctx.wrap_socket(raw, server_hostname=SVC, suppress_ragged_eofs=False)
        except BaseException:
            raw.close()
            raise
        self.buf = b""

    def send_get(self, path, close):
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: {SVC}\r\n"
                       f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
                       .encode())

    def recv(self, n=RECV):
        if self.buf:
            b, self.buf = self.buf[:n], self.buf[n:]
            return b
        b = self.s.recv(n)
        if not b:
            raise CleanEnd()
        return b

    def head(self):
        data, self.buf = self.buf, b""
        while b"\r\n\r\n" not in data:
            if len(data) > 65536:
                raise ValueError("response head over 64 KiB")
            b = self.s.recv(RECV)
            if not b:
                raise CleanEnd()
            data += b
        head, self.buf = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def close(self, reset=False):
        # wrap_socket() detached `raw`: its fd now belongs to `s`, so the
        # linger goes on `s`, and a failed setsockopt must not skip the close
        # (it did: the socket then stayed open until the garbage collector
        # found it, holding its stream, and the abort was never an RST).
        if reset:
            try:
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        try:
            self.s.close()
        except OSError:
            pass


class Body:
    """A /bytes body checked as it arrives: byte i must be i % 256; sha256 at the end."""

    def __init__(self, n):
        self.n, self.got, self.wrong = n, 0, 0
        self.h = hashlib.sha256()

    def feed(self, b):
        o = self.got % 256
        want = PATTERN[o:o + len(b)]
        if b != want:
            self.wrong += sum(1 for x, y in zip(b, want) if x != y) + max(0, len(b) - len(want))
        self.h.update(b)
        self.got += len(b)

    def sha_ok(self):
        return self.got == self.n and self.h.hexdigest() == body_sha(self.n)


@functools.lru_cache(maxsize=64)
def body_sha(n):
    return bytes_body_sha256(n)


class Read:
    """One request and its answer as the soak saw it."""
    __slots__ = ("kind", "size", "t0", "t1", "outcome", "why", "bytes", "wrong")

    def __init__(self, kind, size, t0):
        self.kind, self.size, self.t0 = kind, size, t0
        self.t1, self.outcome, self.why, self.bytes, self.wrong = t0, "ok", "", 0, 0


# Body sizes: from a few bytes to tens of MiB, small ones far more often.
SIZES = [(3, 8), (100, 8), (1000, 8), (16384, 8), (65537, 6), (262144, 6), (1 << 20, 4),
         (4 * (1 << 20) + 7, 3), (16 << 20, 1.2), (40 << 20, 0.5)]
OPS = [("secret", 24), ("keepalive", 18), ("bytes", 26), ("bytes-close", 8), ("slow", 8),
       ("abort", 16)]


def pick(rng, table):
    return rng.choices([x for x, _ in table], weights=[w for _, w in table])[0]


class Load:
    """--clients threads of wrapper churn; pausable (quiesce) and bounded in time."""

    def __init__(self, port, ctx, clients, seed, hard_deadline, think):
        self.port, self.ctx, self.think = port, ctx, think
        self.go = threading.Event()
        self.stop = threading.Event()
        self.busy = [False] * clients
        self.lock = threading.Lock()
        self.hard_deadline = hard_deadline
        self.counts = {}     # (kind, outcome) -> reads
        self.bytes_ok = 0
        self.failures = []   # Read of every failed or corrupted read
        self.threads = [threading.Thread(target=self.worker, args=(i, seed), daemon=True)
                        for i in range(clients)]

    def start(self):
        self.go.set()
        for t in self.threads:
            t.start()

    def record(self, r):
        with self.lock:
            k = (r.kind, r.outcome)
            self.counts[k] = self.counts.get(k, 0) + 1
            if r.outcome in ("ok", "aborted"):
                self.bytes_ok += r.bytes
            else:
                self.failures.append(r)

    def quiesce(self, timeout=READ_DEADLINE + 30):
        """Stops new operations and waits for the running ones to end."""
        self.go.clear()
        return poll_until(lambda: not any(self.busy), timeout, 0.05) is not None

    def resume(self):
        self.go.set()

    def finish(self):
        self.go.clear()
        self.stop.set()
        for t in self.threads:
            t.join(READ_DEADLINE + 30)
        return not any(t.is_alive() for t in self.threads)

    def worker(self, i, seed):
        rng = random.Random(seed * 1000 + i)
        while not self.stop.is_set() and time.monotonic() < self.hard_deadline:
            if not self.go.is_set():
                self.busy[i] = False
                self.go.wait(0.2)
                continue
            self.busy[i] = True
            if not self.go.is_set():  # a quiesce began between the two looks
                continue
            try:
                self.one(rng, pick(rng, OPS))
            except Exception as e:  # a bug of the soak itself: counted, never hidden
                r = Read("soak-bug", 0, now())
                r.outcome, r.why = "failed", f"{type(e).__name__}: {e}"
                self.record(r)
            self.busy[i] = False
            self.stop.wait(rng.uniform(0, self.think))

    # -- operations
    def one(self, rng, op):
        if op == "secret":
            self.session(rng, [("secret", None)], close=True)
        elif op == "keepalive":
            reqs = []
            for _ in range(rng.randint(2, 8)):
                if rng.random() < 0.5:
                    reqs.append(("secret", None))
                else:
                    reqs.append(("bytes", rng.choice([3, 100, 1000, 16384, 65537, 262144])))
            self.session(rng, reqs, close=rng.random() < 0.5)
        elif op == "bytes":
            self.session(rng, [("bytes", pick(rng, SIZES))], close=rng.random() < 0.5)
        elif op == "bytes-close":
            self.session(rng, [("bytes-close", pick(rng, SIZES[:8]))], close=True)
        elif op == "slow":
            self.session(rng, [("slow", rng.choice([65536, 262144, 1 << 20, 3 << 20]))],
                         close=True, slow=True)
        else:  # abort
            n = rng.choice([1 << 20, 4 << 20, 16 << 20, 40 << 20])
            self.session(rng, [("abort", n)], close=False, abort_at=rng.randrange(0, n // 2),
                         reset=rng.random() < 0.5)

    def session(self, rng, reqs, close, slow=False, abort_at=None, reset=False):
        """One wrapper connection carrying `reqs` back to back. Each read is
        exposed from the end of the one before it on this connection (or the
        connect): a stream broken while idle fails the next request."""
        t = now()
        try:
            w = Wrapper(self.port, self.ctx)
        except (OSError, ssl.SSLError) as e:
            r = Read(reqs[0][0], reqs[0][1] or 0, t)
            r.t1, r.outcome, r.why = now(), "failed", f"connect: {type(e).__name__}: {e}"
            self.record(r)
            return
        try:
            for j, (kind, size) in enumerate(reqs):
                last = j == len(reqs) - 1
                r = Read(kind, size or 0, t)
                self.exchange(rng, w, r, close and last, slow, abort_at)
                r.t1 = t = now()
                self.record(r)
                if r.outcome not in ("ok",):
                    break
        finally:
            w.close(reset=reset)

    def exchange(self, rng, w, r, close, slow, abort_at):
        deadline = time.monotonic() + READ_DEADLINE
        body = None
        try:
            if r.kind == "secret":
                name = f"s{rng.randrange(10**6)}"
                path = f"/v1/secret/data/{name}"
            elif r.kind == "bytes-close":
                path = f"/bytes-close/{r.size}"
            else:
                path = f"/bytes/{r.size}"
            w.send_get(path, close)
            status, headers = w.head()
            if status != 200:
                r.outcome, r.why = "failed", f"HTTP {status}"
                return
            if r.kind == "secret":
                n = int(headers.get("content-length", "-1"))
                data = b""
                try:
                    while len(data) < n:
                        data += w.recv(n - len(data))
                except CleanEnd:
                    r.bytes, r.wrong = len(data), n - len(data)
                    r.outcome, r.why = "corrupted", f"{len(data)} bytes of {n} then a clean end"
                    return
                r.bytes = len(data)
                try:
                    got = json.loads(data)["data"]["data"]
                    good = got == {"name": name, "password": "s3cr3t-" + name}
                except (ValueError, KeyError, TypeError):
                    good = False
                if not good:
                    r.outcome, r.why, r.wrong = "corrupted", "wrong secret", max(1, len(data))
                return
            body = Body(r.size)
            delimited = r.kind != "bytes-close"
            if delimited and int(headers.get("content-length", "-1")) != r.size:
                r.outcome, r.why = "corrupted", f"Content-Length {headers.get('content-length')}"
                r.wrong = r.size
                return
            limit = abort_at if abort_at is not None else r.size
            step = 16384 if slow else RECV
            while body.got < limit or not delimited:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read not done in {READ_DEADLINE:.0f} s")
                want = min(step, (limit - body.got) if delimited else step)
                if want <= 0:
                    break
                try:
                    b = w.recv(want)
                except CleanEnd:
                    if delimited:
                        raise
                    break  # close-delimited: the end of the body
                body.feed(b)
                if not delimited and body.got > r.size:
                    break
                if slow:
                    time.sleep(rng.uniform(0.002, 0.01))  # a slow reader: ~2-8 MiB/s
            r.bytes, r.wrong = body.got, body.wrong
            if abort_at is not None:
                r.outcome = "corrupted" if body.wrong else "aborted"
                r.why = "wrong bytes before the abort" if body.wrong else ""
                return
            if not body.sha_ok():
                r.outcome = "corrupted"
                r.why = (f"sha256 mismatch ({body.wrong} wrong bytes)" if body.got == r.size
                         else f"{body.got} bytes of {r.size} then a clean end")
                r.wrong = body.wrong + abs(r.size - body.got)
        except CleanEnd:
            got = body.got if body else 0
            r.bytes = got
            if body is not None and got < (abort_at if abort_at is not None else r.size):
                # A clean end on a short body: the tunnel ended normally what
                # the upstream never finished.
                r.outcome, r.why = "corrupted", f"{got} bytes of {r.size} then a clean end"
                r.wrong = r.size - got + body.wrong
            else:
                r.outcome, r.why = "failed", "clean end before the response"
        except (OSError, ssl.SSLError, ValueError, IndexError) as e:
            r.outcome, r.why = "failed", f"{type(e).__name__}: {e}"[:160]
            if body is not None:
                r.bytes = body.got
                if body.wrong:
                    r.outcome, r.wrong = "corrupted", body.wrong
                    r.why = f"wrong bytes, then {r.why}"


def probe(port, ctx):
    """One secret through the tunnel, answered right."""
    try:
        w = Wrapper(port, ctx)
    except (OSError, ssl.SSLError):
        return False
    try:
        w.s.settimeout(5)
        w.send_get("/v1/secret/data/probe", True)
        status, headers = w.head()
        n = int(headers.get("content-length", "-1"))
        data = b""
        while len(data) < n:
            data += w.recv(n - len(data))
        return status == 200 and b"s3cr3t-probe" in data
    except (OSError, ssl.SSLError, CleanEnd, ValueError, IndexError):
        return False
    finally:
        w.close()


# ---------------------------------------------------------------- processes
def proc_figures(pid):
    """(VmRSS KiB, open fds, CPU seconds) of a process, or None once it is gone."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return rss, fds, cpu
    except (OSError, ValueError, IndexError):
        return None


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    out = {}
    for name in ("streams_open", "wrappers_pending", "bridges_connected", "streams_total",
                 "stream_resets_total"):
        m = re.search(rf"^cloudtaser_broker_{name} (\d+)$", text, re.M)
        out[name] = int(m.group(1)) if m else None
    return out


class World:
    """The upstream, the broker and the bridge, each restartable as the faults need."""

    def __init__(self, out: Path, plant=None):
        from conftest import Env
        self.out = out
        self.env = Env(out)
        self.svc = self.env.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
        self.ctx = ssl.create_default_context(cafile=str(self.env.pki.ca_crt))
        self.upstream = UpstreamProc(out, plant)
        self.bport, self.sport, self.mport = fixed_port(), fixed_port(), fixed_port()
        self.status = out / "vault-bridge.prom"
        self.brokers, self.bridges = [], []
        self.start_broker()
        self.start_bridge()

    def start_broker(self):
        b = self.env.broker(bridge_port=self.bport, service_port=self.sport,
                            extra=["--metrics-listen", f"127.0.0.1:{self.mport}",
                                   "--drain-timeout", "10"])
        b.started_at = now()
        self.brokers.append(b)

    def start_bridge(self):
        b = self.env.bridge(self.bport, self.upstream.addr, service=self.svc,
                            extra=["--status-file", self.status, "--drain-timeout", "10",
                                   "--vault-health-interval", "5"])
        b.started_at = now()
        self.bridges.append(b)

    @property
    def broker(self):
        return self.brokers[-1]

    @property
    def bridge(self):
        return self.bridges[-1]

    def daemon(self, which):
        return self.broker if which == "broker" else self.bridge

    def processes(self):
        """{"broker/tls": pid, ...} of the current processes."""
        out = {}
        for which in ("broker", "bridge"):
            d = self.daemon(which)
            out[f"{which}/parent"] = d.proc.pid
            for role, pid in d.children().items():
                out[f"{which}/{role}"] = pid
        return out

    def close(self):
        self.env.close()
        self.upstream.close()


# ---------------------------------------------------------------- faults
class Fault:
    def __init__(self, kind, target, t0):
        self.kind, self.target, self.t0 = kind, target, t0
        self.recovered = None  # when a probe read succeeded again
        self.t1 = None         # the window's end
        self.note = ""
        self.failures = 0
        self.reasons = {}      # failed reads in its window, by what the client saw

    @property
    def window(self):
        return (self.t0, self.t1 if self.t1 is not None else float("inf"))


def inject(world, kind, rng, stop):
    """Does one fault and waits (bounded) for the tunnel to serve again."""
    f = None
    try:
        if kind in ("kill9-child", "sigstop-child"):
            which, role = rng.choice(["broker", "bridge"]), rng.choice(["tls", "forward"])
            d = world.daemon(which)
            pid = d.children().get(role)
            f = Fault(kind, f"{which}/{role} pid={pid}", now())
            if pid is None:
                f.note = "no such process to signal"
                return f
            if kind == "kill9-child":
                os.kill(pid, signal.SIGKILL)
                if not poll_until(lambda: d.children().get(role) not in (None, pid), 30):
                    f.note = "the parent did not restart it within 30 s"
                    return f
            else:
                held = rng.uniform(2, 4)  # below the parent's 5 s heartbeat kill
                os.kill(pid, signal.SIGSTOP)
                stop.wait(held)  # the fault itself: the process stays stopped this long
                os.kill(pid, signal.SIGCONT)
                f.note = f"stopped {held:.1f} s"
        elif kind == "sighup":
            which = rng.choice(["broker", "bridge"])
            d = world.daemon(which)
            f = Fault(kind, which, now())
            before = d.count(r"reload: new certificate material in service")
            d.signal(signal.SIGHUP)
            if not poll_until(lambda: d.count(r"reload: new certificate material in service")
                              > before, 15):
                f.note = "no 'new certificate material in service' within 15 s"
                return f
        elif kind in ("restart-bridge", "restart-broker"):
            which = kind.split("-")[1]
            how = rng.choice(["SIGTERM", "SIGKILL"])
            d = world.daemon(which)
            f = Fault(kind, f"{which} by {how}", now())
            if how == "SIGTERM":
                d.signal(signal.SIGTERM)
                try:
                    d.wait_exit(30)
                except AssertionError:
                    f.note = "did not exit within 30 s of SIGTERM; killed"
            d.kill()
            retry_in_use(world.start_broker if which == "broker" else world.start_bridge, which)
        elif kind == "restart-upstream":
            f = Fault(kind, "upstream by SIGKILL", now())
            world.upstream.kill()
            retry_in_use(world.upstream.start, "upstream")
        else:
            raise ValueError(kind)
    except (AssertionError, RuntimeError, OSError) as e:
        if f is None:
            f = Fault(kind, "?", now())
        f.note = f"{type(e).__name__}: {e}"[:300]
        return f
    if poll_until(lambda: probe(world.sport, world.ctx), 60, 0.1):
        f.recovered = now()
        f.t1 = f.recovered + GRACE
    else:
        f.note = (f.note + "; " if f.note else "") + "no read served within 60 s"
    return f


# ---------------------------------------------------------------- sampling
class Sampler:
    def __init__(self, world, every, path):
        self.world, self.every = world, every
        self.samples = []
        self.cpu = {}      # pid -> (name, last CPU seconds)
        self.peak = {}     # name -> highest RSS KiB under load
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.file = open(path, "w")
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self):
        s = {"t": round(now(), 3), "load": os.getloadavg()[0], "procs": {}}
        try:
            procs = self.world.processes()
        except (AttributeError, IndexError):
            procs = {}
        procs["upstream"] = self.world.upstream.proc.pid
        for name, pid in procs.items():
            fig = proc_figures(pid)
            if fig is None:
                continue
            s["procs"][name] = {"pid": pid, "rss": fig[0], "fds": fig[1], "cpu": fig[2]}
            with self.lock:
                self.cpu[pid] = (name, fig[2])
                self.peak[name] = max(self.peak.get(name, 0), fig[0])
        s["broker"] = metrics(self.world.mport)
        return s

    def run(self):
        while not self.stop.wait(self.every):
            s = self.sample()
            self.samples.append(s)
            self.file.write(json.dumps(s) + "\n")
            self.file.flush()

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        self.file.close()

    def cpu_by_role(self):
        out = {}
        with self.lock:
            for name, cpu in self.cpu.values():
                out[name] = out.get(name, 0.0) + cpu
        return out


def idle_snapshot(world, baseline_fds=None, timeout=30):
    """Every process's figures once the broker counts no open or pending stream.
    Without `baseline_fds`, a process's fds are the fewest of six looks over
    1.5 s (a health probe or a scrape in flight holds one more for a moment);
    with it, the looks go on until every count equals the baseline (bounded)."""
    def settled_streams():
        m = metrics(world.mport)
        return m if m and m["streams_open"] == 0 and m["wrappers_pending"] == 0 else None
    t0 = time.monotonic()
    m = poll_until(settled_streams, timeout, 0.2)
    settle_s = round(time.monotonic() - t0, 1) if m else None
    streams = m or metrics(world.mport)
    if m is None:
        # Evidence for whoever looks into it: every TCP socket of the daemons.
        # The soak's own sockets too: a stream held open by a client that
        # never closed is the client's doing, not the tunnel's.
        pids = set(world.processes().values()) | {os.getpid()}
        try:
            ss = subprocess.run(["ss", "-tanpoi"], capture_output=True, timeout=10,
                                text=True).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            ss = f"ss: {e}\n"
        lines = ss.splitlines()
        keep = [ln + "\n" + (lines[i + 1] if i + 1 < len(lines) else "")
                for i, ln in enumerate(lines) if any(f"pid={p}," in ln for p in pids)]
        stamp = time.strftime("%H%M%S", time.gmtime())
        (world.out / f"open-streams-{stamp}.txt").write_text(
            f"{streams}\npids {sorted(pids)}\n" + "\n".join(keep) + "\n")
    fewest, last, settled = {}, {}, False
    deadline = time.monotonic() + timeout
    for look in range(int(timeout / 0.3) + 6):
        last = {}
        for n, pid in world.processes().items():
            f = proc_figures(pid)
            if f:
                last[n] = {"pid": pid, "rss": f[0], "fds": f[1], "cpu": f[2]}
                if fewest.get(n, (pid, 1 << 30))[0] == pid:
                    fewest[n] = (pid, min(fewest.get(n, (pid, 1 << 30))[1], f[1]))
                else:
                    fewest[n] = (pid, f[1])
        counts = {n: p["fds"] for n, p in last.items()}
        if baseline_fds is None and look >= 5:
            for n, p in last.items():
                p["fds"] = fewest[n][1]
            settled = m is not None
            break
        if baseline_fds is not None and counts == baseline_fds:
            settled = True
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    return {"t": now(), "streams": streams, "fds_settled": settled, "settle_s": settle_s,
            "procs": last}


# ---------------------------------------------------------------- logs
def log_events(daemon):
    """What a daemon's parent logged about its children: starts, deaths, kills."""
    ev = []
    for line in daemon.text().splitlines():
        m = LOG_LINE.match(line)
        if not m or m.group(2) != "parent":
            continue
        t, msg = log_time(m.group(1)), m.group(4)
        x = re.match(r"started (tls|forward) process pid=(\d+)", msg)
        if x:
            ev.append(("start", x.group(1), int(x.group(2)), t, None))
        x = re.match(r"(tls|forward) process pid=(\d+) killed by signal (\d+)", msg)
        if x:
            ev.append(("signal", x.group(1), int(x.group(2)), t, int(x.group(3))))
        x = re.match(r"(tls|forward) process pid=(\d+) exited with status (\d+)", msg)
        if x:
            ev.append(("exit", x.group(1), int(x.group(2)), t, int(x.group(3))))
        x = re.match(r"killing (tls|forward) process pid=(\d+): (.*)", msg)
        if x:
            ev.append(("killed", x.group(1), int(x.group(2)), t, x.group(3)))
    return ev


def in_window(t, faults, slack=1.0):
    for f in faults:
        a, b = f.window
        if a - slack <= t <= b + slack:
            return f
    return None


def stray_processes(world, current):
    """Processes in one of our daemons' sessions that are not the current ones."""
    sessions = {d.proc.pid for d in world.brokers + world.bridges}
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions and int(d.name) not in current and fields[0] != "Z":
            out.append(int(d.name))
    return out


# ---------------------------------------------------------------- verdict
def verdict(args, world, load, faults, sampler, role_warm, base, final, timeline, t_load):
    reasons = []
    # Processes: each role's idle RSS at the end against its figure at the end
    # of the warm-up (its first process's), so that a process the faults
    # restarted is held to what the role needed once warm, not to its own
    # first minutes, when the bounded buffers had not reached their high-water
    # mark yet. Growth past the tolerance fails; less than warm does not.
    rss_rows = []
    excluded = []
    for name in sorted(final["procs"]):
        if name == "upstream":
            continue
        p = final["procs"][name]
        w = role_warm.get(name)
        if w is None:
            excluded.append(f"{name} pid={p['pid']}")
            rss_rows.append((name, p["pid"], None, p["rss"], None))
            continue
        delta = 100.0 * (p["rss"] - w["rss"]) / w["rss"]
        rss_rows.append((name, p["pid"], w, p["rss"], delta))
        if delta > args.rss_tolerance:
            reasons.append(f"{name} pid={p['pid']} RSS {w['rss']} KiB after the warm-up (pid "
                           f"{w['pid']}) -> {p['rss']} KiB ({delta:+.1f} %, over "
                           f"{args.rss_tolerance} %)")
    compared = [r for r in rss_rows if r[4] is not None]
    if not compared:
        reasons.append("no process has a warm RSS figure to compare with")
    # fds per role against the baseline, streams against zero.
    fd_rows = []
    for name in sorted(base["procs"]):
        b = base["procs"][name]["fds"]
        e = final["procs"].get(name, {}).get("fds")
        fd_rows.append((name, b, e))
        if e != b:
            reasons.append(f"{name} holds {e} fds at the end, {b} at the baseline")
    st = final["streams"] or {}
    if st.get("streams_open") != 0 or st.get("wrappers_pending") != 0:
        reasons.append(f"streams not back to zero: {st}")
    if (st.get("bridges_connected") or 0) < 1:
        reasons.append(f"no bridge linked at the end: {st}")
    # Reads.
    corrupted = [r for r in load.failures if r.outcome == "corrupted"]
    failed = [r for r in load.failures if r.outcome == "failed"]
    for r in failed:
        f = next((f for f in faults if r.t0 <= f.window[1] and r.t1 >= f.window[0]), None)
        if f:
            f.failures += 1
            if f.kind in LOSSLESS:
                reasons.append(f"a {r.kind} read failed in a {f.kind} window, where the design "
                               f"promises none: {r.why}")
            why = re.sub(r"\s*\(.*|: .*|\[.*", "", r.why.replace("connect: ", "connect "))
            f.reasons[why] = f.reasons.get(why, 0) + 1
        else:
            reasons.append(f"a {r.kind} read ({r.size} B) failed outside every fault window at "
                           f"{time.strftime('%H:%M:%S', time.gmtime(r.t1))}: {r.why}")
    bug = [r for r in load.failures if r.kind == "soak-bug"]
    if corrupted:
        reasons.append(f"{len(corrupted)} corrupted reads, {sum(r.wrong for r in corrupted)} "
                       f"bytes wrong or missing: "
                       + "; ".join(f"{r.kind} {r.size} B: {r.why}" for r in corrupted[:5]))
    for r in bug[:3]:
        reasons.append(f"the soak itself failed: {r.why}")
    ok = sum(v for (k, o), v in load.counts.items() if o in ("ok", "aborted"))
    if ok == 0:
        reasons.append("no read succeeded")
    # Faults: each recovered.
    for f in faults:
        if f.recovered is None or f.note.startswith(("no ", "AssertionError", "RuntimeError")):
            reasons.append(f"fault {f.kind} ({f.target}): {f.note or 'did not recover'}")
    if not faults and args.fault_every and timeline["intervals"]:
        reasons.append("no fault was injected")
    # Processes: the current ones are what the parents say they supervise;
    # every restart inside a fault window; no death by any signal but our 9.
    restarts = {}
    unexpected = []
    for d in world.brokers + world.bridges:
        which = "broker" if d in world.brokers else "bridge"
        seen = set()
        for ev, role, pid, t, extra in log_events(d):
            if ev == "start":
                if role in seen:
                    f = in_window(t, faults)
                    key = f"{which}/{role}"
                    restarts[key] = restarts.get(key, 0) + 1
                    if f is None:
                        unexpected.append(f"{key} restarted outside every fault window "
                                          f"(pid={pid})")
                seen.add(role)
            elif ev == "signal" and extra != signal.SIGKILL:
                unexpected.append(f"{which}/{role} pid={pid} died of signal {extra}")
            elif ev == "exit" and in_window(t, faults) is None:
                unexpected.append(f"{which}/{role} pid={pid} exited with status {extra} "
                                  "outside every fault window")
            elif ev == "killed" and in_window(t, faults) is None:
                unexpected.append(f"{which}/{role} pid={pid} killed by its parent outside "
                                  f"every fault window: {extra}")
    reasons += unexpected
    for which in ("broker", "bridge"):
        d = world.daemon(which)
        if d.proc.poll() is not None:
            reasons.append(f"the {which} parent exited ({d.proc.returncode})")
            continue
        kids = d.children()
        latest = {}
        for ev, role, pid, t, extra in log_events(d):
            if ev == "start":
                latest[role] = pid
        if kids != latest or set(kids) != {"tls", "forward"}:
            reasons.append(f"the {which}'s children {kids} are not the ones its parent "
                           f"started last {latest}")
    current = set(final["procs"][n]["pid"] for n in final["procs"])
    strays = stray_processes(world, current)
    if strays:
        reasons.append(f"stray processes in the daemons' sessions: {strays}")
    cpu = sampler.cpu_by_role()
    return reasons, {
        "rss": rss_rows, "excluded": excluded, "fds": fd_rows, "restarts": restarts,
        "cpu": cpu, "corrupted": corrupted, "failed": failed, "ok": ok}


def fmt_table(rows, head):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w)  # noqa: E731
                               for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    ap.add_argument("--seconds", type=float, help="the run's length in seconds (over --minutes)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of load before any fault; each role's RSS is judged against "
                         "its figure at the warm-up's end (default: a sixth of the run, "
                         "60-600 s)")
    ap.add_argument("--fault-every", type=float, default=60,
                    help="seconds per fault interval (0: no faults)")
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="kinds to draw from")
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--think", type=float, default=0.05, help="most seconds between operations")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rss-tolerance", type=float, default=5.0, help="percent")
    ap.add_argument("--allocator", choices=("fixed", "as-shipped"), default="fixed",
                    help="fixed (default): the daemons run with glibc's mmap and trim "
                         "thresholds fixed at 128 KiB, so that idle RSS follows live memory; "
                         "as-shipped: glibc's defaults, whose dynamic mmap threshold keeps "
                         "freed buffers of up to 32 MiB (idle RSS then swings by tens of %%)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--upstream-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream_child is not None:
        return upstream_child(args.upstream_child, args.plant)
    duration = args.seconds if args.seconds is not None else args.minutes * 60
    if args.warmup is None:
        # Long enough for the bounded buffers to reach their high-water mark:
        # with this mix the bridge's TLS process still grew for 8 min after a
        # start (12 min run, seed 20: 15.2 -> 16.2 MiB), then held (docs).
        args.warmup = min(600.0, max(60.0, duration / 6))
    kinds = [k for k in args.faults.split(",") if k]
    for k in kinds:
        if k not in FAULT_KINDS:
            ap.error(f"unknown fault kind {k} (known: {', '.join(FAULT_KINDS)})")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    out = args.out or ROOT / "build" / "soak" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    for exe in (harness.BROKER, harness.BRIDGE, harness.BROKER_FWD, harness.BRIDGE_FWD):
        if not exe.exists():
            print(f"soak: {exe} is missing; run make first", file=sys.stderr)
            return 2
    print(f"soak: {duration:.0f} s, warm-up {args.warmup:.0f} s, a fault every "
          f"{args.fault_every:.0f} s from {','.join(kinds)}, {args.clients} clients, seed {seed}, "
          f"allocator {args.allocator}; "
          f"logs and samples in {out}", flush=True)
    load_at_start = os.getloadavg()
    # SIGTERM (a timeout, a CI runner) and SIGINT end the run through the
    # cleanup below, which kills every daemon and the upstream.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    if args.allocator == "fixed":
        # Inherited by the daemons and every child they start (spawn passes environ).
        os.environ["GLIBC_TUNABLES"] = MALLOC_FIXED
    world = World(out, args.plant)
    stop = threading.Event()
    sampler = load = None
    try:
        world.broker.wait_log(r"conn=\d+ bridge connected", timeout=20)
        world.bridge.wait_log(r"connected to the broker", timeout=20)
        if not poll_until(lambda: probe(world.sport, world.ctx), 30):
            print("soak: FAIL: the tunnel never served a read", flush=True)
            return 1
        t_start = time.monotonic()
        # Every pause is bounded (quiesce: READ_DEADLINE + 30 s, snapshot 30 s).
        pauses = duration / max(1.0, args.fault_every) + 2
        hard = t_start + duration + (READ_DEADLINE + 70) * pauses
        load = Load(world.sport, world.ctx, args.clients, seed, hard, args.think)
        sampler = Sampler(world, args.sample_every, out / "samples.jsonl")
        load.start()
        sampler.start()
        t_load = now()
        faults, warm, base = [], {}, None
        clock = ClockWatch(faults, stop)
        clock.thread.start()
        born = {}  # pid -> when first seen, for the warm rule
        role_warm = {}  # role name -> its figure after the warm-up (warm: per pid)
        timeline = {"intervals": 0, "quiesce_s": []}
        snaps = open(out / "idle.jsonl", "w")  # every idle snapshot, for the RSS trend
        idles = []
        deck = []
        # The warm-up, then intervals of --fault-every seconds of load, each
        # after an idle pause (not counted in the interval) and with one fault
        # (a remainder of half an interval or more is one more).
        rest = max(0.0, duration - args.warmup)
        lengths = []
        while args.fault_every > 0 and rest >= args.fault_every / 2 and len(lengths) < 10000:
            lengths.append(min(args.fault_every, rest))
            rest -= args.fault_every
        if not lengths and rest > 0:
            lengths = [rest]  # no faults: the rest of the run, after one idle pause
        stop.wait(max(0.0, t_start + args.warmup - time.monotonic()))
        closing = None  # the index of a closing interval, if one was added
        i = -1
        while i + 1 < len(lengths) and i < 10000:
            i += 1
            length = lengths[i]
            # Pause, sample every process idle, resume.
            q0 = time.monotonic()
            quiet = load.quiesce()
            snap = idle_snapshot(world, None)
            timeline["quiesce_s"].append(round(time.monotonic() - q0, 2))
            load.resume()
            end = time.monotonic() + length
            idles.append(snap)
            snaps.write(json.dumps(snap) + "\n")
            snaps.flush()
            print(f"soak: idle at +{snap['t'] - t_load:.0f} s: " + ", ".join(
                f"{n} {p['rss']} KiB {p['fds']} fds" for n, p in sorted(snap["procs"].items())),
                flush=True)
            if not quiet:
                print("soak: the load did not pause within its deadline", flush=True)
            # A process's warm figure: its first idle sample after it ran under
            # load for at least half an interval (the first ones: the warm-up).
            min_age = min(args.warmup, args.fault_every or args.warmup) / 2
            for name, p in snap["procs"].items():
                age = snap["t"] - born.setdefault(p["pid"], t_load if i == 0 else snap["t"])
                if p["pid"] not in warm and age >= min_age:
                    warm[p["pid"]] = dict(p, name=name, at=snap["t"])
                # The role's figure: its first process's, after the whole warm-up.
                if i == 0 and name not in role_warm:
                    role_warm[name] = dict(p, name=name, at=snap["t"])
            if base is None:
                base = snap
            if args.fault_every > 0 and kinds and i != closing:
                timeline["intervals"] += 1
                stop.wait(rng.uniform(3, max(3.0, min(20.0, length / 3))))
                if not deck:
                    deck = list(kinds)
                    rng.shuffle(deck)
                kind = deck.pop()
                f = inject(world, kind, rng, stop)
                faults.append(f)
                took = f"{f.recovered - f.t0:.1f} s" if f.recovered else "not recovered"
                print(f"soak: {time.strftime('%H:%M:%S', time.gmtime(f.t0))} {f.kind} "
                      f"{f.target}: served again after {took} {f.note}", flush=True)
                # Processes born of this fault are known from here on.
                for name, pid in safe_processes(world).items():
                    born.setdefault(pid, now())
            stop.wait(max(0.0, end - time.monotonic()))
            # A process born in the last interval has no warm figure yet: one
            # more interval of load without a fault gives it one, so that every
            # process is compared at the end.
            if i == len(lengths) - 1 and closing is None and \
                    any(pid not in warm for pid in safe_processes(world).values()):
                lengths.append(max(min(10.0, args.fault_every), args.fault_every / 2))
                closing = len(lengths) - 1
                print(f"soak: a closing interval of {lengths[-1]:.0f} s without a fault, for "
                      "the processes the last fault started", flush=True)
        finished = load.finish()
        t_end = now()
        final = idle_snapshot(world, {n: p["fds"] for n, p in base["procs"].items()},
                              timeout=180)
        sampler.finish()
        final["procs"]["upstream"] = {"pid": world.upstream.proc.pid}
        faults.sort(key=lambda f: f.t0)
        reasons, fig = verdict(args, world, load, faults, sampler, role_warm, base, final, timeline,
                               t_load)
        if not finished:
            reasons.append("a client thread did not finish within its deadline")
        if not final["fds_settled"]:
            reasons.append("the fd counts did not return to the baseline within 180 s")
        timeline["idles"] = idles
        report(args, seed, duration, load, faults, fig, base, final, warm, sampler, reasons,
               load_at_start, t_load, t_end, timeline, out)
        return 1 if reasons else 0
    finally:
        stop.set()
        if load:
            load.stop.set()
        if sampler and not sampler.stop.is_set():
            sampler.finish()
        world.close()


def safe_processes(world):
    try:
        return world.processes()
    except (AttributeError, IndexError, OSError):
        return {}


def report(args, seed, duration, load, faults, fig, base, final, warm, sampler, reasons,
           load_at_start, t_load, t_end, timeline, out):
    run = t_end - t_load
    print()
    print(f"soak: {run:.0f} s of load, seed {seed}, machine load average "
          f"{load_at_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"({os.cpu_count()} CPUs); idle pauses {timeline['quiesce_s']} s")
    print()
    rows = []
    cpu = fig["cpu"]
    for name, pid, w, end_rss, delta in fig["rss"]:
        b = base["procs"].get(name, {})
        e = final["procs"].get(name, {})
        series = [x["procs"][name]["rss"] for x in timeline["idles"] + [final]
                  if x["procs"].get(name, {}).get("pid") == pid and "rss" in x["procs"][name]]
        rows.append([name, pid, fig["restarts"].get(name, 0),
                     w["rss"] if w else "-", end_rss, f"{delta:+.1f}" if delta is not None
                     else "excluded", f"{min(series)}-{max(series)} ({len(series)})",
                     sampler.peak.get(name, "-"), b.get("fds", "-"),
                     e.get("fds", "-"), f"{cpu.get(name, 0):.1f}",
                     f"{100 * cpu.get(name, 0) / max(run, 1):.1f}"])
    print(fmt_table(rows, ["process", "pid now", "restarts", "warm RSS KiB (role)", "end RSS KiB",
                           "RSS %", "idle RSS range (pauses)", "peak RSS KiB", "fds base",
                           "fds end", "CPU s", "CPU % of a core"]))
    stuck = [x for x in timeline["idles"] if not x["fds_settled"]]
    if stuck:
        print(f"idle pauses where a stream was still open 30 s after every client was idle: "
              f"{len(stuck)} of {len(timeline['idles'])} (at +"
              + ", +".join(f"{x['t'] - t_load:.0f}" for x in stuck) + " s)")
    print()
    kinds = sorted({k for k, _ in load.counts})
    rows = []
    for k in kinds:
        c = {o: v for (kk, o), v in load.counts.items() if kk == k}
        rows.append([k, sum(c.values()), c.get("ok", 0) + c.get("aborted", 0),
                     c.get("aborted", 0), c.get("failed", 0), c.get("corrupted", 0)])
    total = [sum(r[i] for r in rows) for i in range(1, 6)]
    rows.append(["all", *total])
    print(fmt_table(rows, ["reads", "total", "ok", "of them aborted on purpose", "failed",
                           "corrupted"]))
    wrong = sum(r.wrong for r in fig["corrupted"])
    print(f"bytes delivered and checked: {load.bytes_ok / (1 << 20):.1f} MiB; "
          f"corrupted bytes: {wrong}")
    print()
    rows = []
    for f in faults:
        rows.append([time.strftime("%H:%M:%S", time.gmtime(f.t0)), f.kind, f.target,
                     f"{f.recovered - f.t0:.2f}" if f.recovered else "never", f.failures,
                     f.note])
    print(fmt_table(rows, ["at (UTC)", "fault", "target", "served again after s",
                           "failed reads", "note"]))
    by_kind = {}
    for f in faults:
        n, r = by_kind.get(f.kind, (0, 0))
        by_kind[f.kind] = (n + 1, r + f.failures)
    print("failed reads per fault kind: " + (", ".join(
        f"{k} {r} in {n} fault(s)" for k, (n, r) in sorted(by_kind.items())) or "none"))
    whys = {}
    for f in faults:
        for why, n in f.reasons.items():
            whys.setdefault(f.kind, {})[why] = whys.setdefault(f.kind, {}).get(why, 0) + n
    for k, per in sorted(whys.items()):
        print(f"  {k}: " + ", ".join(f"{w} {n}" for w, n in sorted(per.items(),
                                                                   key=lambda x: -x[1])))
    if fig["excluded"]:
        print(f"excluded from the RSS comparison (no warm figure): {', '.join(fig['excluded'])}")
    print(f"restarts seen in the parents' logs: {fig['restarts'] or 'none'}")
    import resource
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU of the load itself: soak clients {me.ru_utime + me.ru_stime:.0f} s, upstream "
          f"{cpu.get('upstream', 0):.0f} s; the daemons: "
          f"{sum(v for k, v in cpu.items() if k != 'upstream'):.0f} s")
    st = final["streams"] or {}
    print(f"after the load stopped, the broker's streams reached zero in "
          f"{final.get('settle_s')} s")
    print(f"streams at the end: open {st.get('streams_open')}, pending "
          f"{st.get('wrappers_pending')}, bridges linked {st.get('bridges_connected')}; "
          f"baseline open {(base['streams'] or {}).get('streams_open')}")
    summary = {
        "seed": seed, "seconds": round(run, 1), "clients": args.clients,
        "allocator": args.allocator,
        "load_average": [load_at_start[0], os.getloadavg()[0]],
        "reads": {f"{k}/{o}": v for (k, o), v in sorted(load.counts.items())},
        "reads_ok": fig["ok"], "reads_failed": len(fig["failed"]),
        "reads_corrupted": len(fig["corrupted"]), "corrupted_bytes": wrong,
        "corrupted_why": [r.why for r in fig["corrupted"][:50]],
        "mib_checked": round(load.bytes_ok / (1 << 20), 1),
        "faults": [{"kind": f.kind, "target": f.target, "at": f.t0,
                    "recovery_s": round(f.recovered - f.t0, 3) if f.recovered else None,
                    "failed_reads": f.failures, "why": f.reasons,
                    "note": f.note} for f in faults],
        "processes": [{"name": n, "pid": p, "warm_rss": w["rss"] if w else None,
                       "end_rss": e, "rss_pct": d} for n, p, w, e, d in fig["rss"]],
        "fds": [{"name": n, "base": b, "end": e} for n, b, e in fig["fds"]],
        "restarts": fig["restarts"], "excluded": fig["excluded"],
        "cpu_s": {k: round(v, 2) for k, v in fig["cpu"].items()},
        "peak_rss": sampler.peak, "streams_end": final["streams"],
        "idle_pauses": len(timeline["idles"]), "final_settle_s": final.get("settle_s"),
        "idle_pauses_with_open_streams": sum(1 for x in timeline["idles"] if not x["fds_settled"]),
        "verdict": "FAIL" if reasons else "PASS", "reasons": reasons,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print()
    if reasons:
        print("verdict: FAIL")
        for r in reasons:
            print(f"  - {r}")
    else:
        print("verdict: PASS (RSS within "
              f"{args.rss_tolerance:g} %, fds and streams back to baseline, no corrupted byte, "
              "failures only inside fault windows, every restart accounted for)")
    print(f"summary: {out / 'summary.json'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
