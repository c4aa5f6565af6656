"""A rolling update on loopback: two brokers behind stand-ins for the cluster's
two Services, one bridge, wrappers that keep asking, and SIGTERM to the old
broker while requests and one long stream run through it (issue 5 section 3:
"a rolling update loses no request").

- ServiceProxy stands in for kube-proxy in front of Service cloudtaser-broker:
  every NEW connection goes to a broker whose /readyz answered 200 at its last
  poll (every 100 ms, as endpoints would update); with no ready broker the
  connection is reset at once, as kube-proxy rejects a Service with no
  endpoints. Bytes are forwarded both ways, EOF as EOF and a reset as a reset.
- LoadBalancer stands in for Service cloudtaser-broker-bridge (which publishes
  not-ready pods): every new bridge connection goes to the first broker, in
  order A, B, whose bridge port accepts the TCP connection.
- Wrappers retry, with exponential backoff, only when the connection is
  refused or closed (or reset) before any byte of the response: that is what
  wrappers do while the bridge reconnects. Anything else is a lost request.
"""
import random
import signal
import socket
import struct
import threading
import time

import pytest

from harness import free_port, wait_for

DRAIN_TIMEOUT = 20          # --drain-timeout of the old broker, seconds
LONG_STREAM_BYTES = 24 << 20
REQUEST_DEADLINE = 60       # one request may retry this long before it counts as lost
ATTEMPT_TIMEOUT = 30        # one attempt that sees no byte for this long is a hang, not a retry
LOAD_THREADS = 6


def _abort(s):
    """Close with RST (SO_LINGER 0). SHUT_RD first wakes a thread blocked in recv()
    on it (close() alone would not: the blocked call keeps the socket alive, and
    no RST goes out until it returns); SHUT_RD sends nothing."""
    for op in (lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0)),
               lambda: s.shutdown(socket.SHUT_RD), s.close):
        try:
            op()
        except OSError:
            pass


def _readyz(port, timeout=0.5):
    """(status, body) of GET /readyz, or (None, error name)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            buf = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                buf += b
        head, _, body = buf.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()
    except (OSError, IndexError, ValueError) as e:
        return None, type(e).__name__


class Forwarder:
    """A TCP forwarder on 127.0.0.1; pick() returns (name, connected socket) or None."""

    def __init__(self, name):
        self.name = name
        self.routes = {}        # client port -> backend name
        self.lock = threading.Lock()
        self.socks = set()
        self.stopping = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name=f"{name}-accept")
        self.thread.start()

    def pick(self):
        raise NotImplementedError

    def _track(self, s):
        with self.lock:
            self.socks.add(s)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, addr = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            self._track(c)
            threading.Thread(target=self._serve, args=(c, addr[1]), daemon=True).start()

    def _serve(self, c, client_port):
        target = self.pick()
        if target is None:
            with self.lock:
                self.routes[client_port] = None
            _abort(c)
            return
        name, b = target
        self._track(b)
        with self.lock:
            self.routes[client_port] = name
        done = threading.Barrier(2, action=lambda: (c.close(), b.close()))
        threading.Thread(target=self._pipe, args=(c, b, done), daemon=True).start()
        self._pipe(b, c, done)

    @staticmethod
    def _pipe(src, dst, done):
        try:
            while True:
                try:
                    data = src.recv(1 << 16)
                except ConnectionResetError:
                    _abort(dst)  # a reset stays a reset
                    break
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    break
                dst.sendall(data)
        except OSError:
            _abort(src)
            _abort(dst)
        try:
            done.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass

    def close(self):
        self.stopping.set()
        self.listener.close()
        self.thread.join(5)
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            _abort(s)


class ServiceProxy(Forwarder):
    """kube-proxy for Service cloudtaser-broker: new connections to ready brokers only."""

    def __init__(self, backends):
        self.backends = backends  # name -> (service port, metrics port)
        self.ready = []
        self.ready_log = []       # (monotonic time, sorted ready names) on every change
        self._rr = 0
        super().__init__("service")
        self.poller = threading.Thread(target=self._poll, daemon=True, name="endpoints")
        self.poller.start()

    def _poll(self):
        while not self.stopping.is_set():
            backends = self.backends
            ready = sorted(n for n, (_, mport) in backends.items() if _readyz(mport)[0] == 200)
            if ready != self.ready:
                self.ready = ready
                self.ready_log.append((time.monotonic(), ready))
            self.stopping.wait(0.1)

    def pick(self):
        backends = self.backends  # one snapshot: tests may replace the dict
        ready = [n for n in self.ready if n in backends]
        if not ready:
            return None
        self._rr += 1
        name = ready[self._rr % len(ready)]
        try:
            s = socket.create_connection(("127.0.0.1", backends[name][0]), timeout=2)
        except OSError:
            return None
        s.settimeout(None)  # the connect timeout only: streams may idle
        return name, s

    def close(self):
        super().close()
        self.poller.join(5)


class LoadBalancer(Forwarder):
    """Service cloudtaser-broker-bridge: the first broker whose bridge port accepts."""

    def __init__(self, backends):
        self.backends = backends  # [(name, bridge port)] in order
        super().__init__("lb")

    def pick(self):
        for name, port in self.backends:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            s.settimeout(None)  # the link idles between pings
            return name, s
        return None


# ---------------------------------------------------------------- wrappers
def _expected_kv(name):
    import json
    return json.dumps({"data": {"data": {"name": name, "password": "s3cr3t-" + name},
                                "metadata": {"version": 1}}}).encode()


def _parse_response(buf):
    """(status, body) of one complete HTTP/1.1 response with Content-Length, else None."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:])
                      if k.strip().lower() == b"content-length")
    except (IndexError, ValueError, StopIteration):
        return None
    if len(body) != length:
        return None
    return status, body


class Wrapper:
    """One request with the wrappers' retry rule; records every attempt."""

    def __init__(self, port, name):
        self.port, self.name = port, name
        self.attempts = []   # (outcome, client port)
        self.outcome = None  # "ok" or the reason it was lost
        self.start = self.end = None

    def run(self):
        self.start = time.monotonic()
        delay = 0.02
        req = (f"GET /v1/secret/data/{self.name} HTTP/1.1\r\nHost: cloudtaser-broker\r\n"
               f"Connection: close\r\n\r\n").encode()
        while True:
            verdict, cport = self._attempt(req)
            self.attempts.append((verdict, cport))
            if verdict != "retry":
                self.outcome = verdict
                break
            if time.monotonic() - self.start > REQUEST_DEADLINE:
                self.outcome = f"gave up after {len(self.attempts)} attempts"
                break
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 1.0)
        self.end = time.monotonic()
        return self

    def _attempt(self, req):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=ATTEMPT_TIMEOUT)
        except (ConnectionRefusedError, ConnectionResetError):
            return "retry", None
        except OSError as e:
            return f"connect failed: {e!r}", None
        cport = s.getsockname()[1]
        buf = b""
        try:
            s.sendall(req)
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                buf += b
        except (ConnectionResetError, BrokenPipeError):
            if not buf:
                return "retry", cport  # closed before any byte of the response
            return f"reset after {len(buf)} bytes of the response", cport
        except socket.timeout:
            return f"hang: no end of response after {ATTEMPT_TIMEOUT}s ({len(buf)} bytes)", cport
        finally:
            s.close()
        if not buf:
            return "retry", cport
        r = _parse_response(buf)
        if r is None:
            return f"partial or malformed response ({len(buf)} bytes)", cport
        if r != (200, _expected_kv(self.name)):
            return f"wrong answer: status {r[0]}, {len(r[1])} body bytes", cport
        return "ok", cport


class LoadGenerator:
    def __init__(self, port, threads):
        self.port = port
        self.stop = threading.Event()
        self.done = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(t,), daemon=True)
                        for t in range(threads)]
        for t in self.threads:
            t.start()

    def _loop(self, t):
        i = 0
        while not self.stop.is_set():
            w = Wrapper(self.port, f"t{t}-r{i}").run()
            with self.lock:
                self.done.append(w)
            i += 1

    def ok_count(self):
        with self.lock:
            return sum(w.outcome == "ok" for w in self.done)

    def finish(self, timeout):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a wrapper thread hung"
        return list(self.done)


class LongStream(threading.Thread):
    """GET /bytes/N read slowly, so that it is still in flight during the drain."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.received = 0
        self.error = None
        self.corrupt_at = None
        self.status_line = None
        self.cport = None
        self.finished_at = None

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.cport = s.getsockname()[1]
            s.sendall(f"GET /bytes/{LONG_STREAM_BYTES} HTTP/1.1\r\nHost: x\r\n"
                      f"Connection: close\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = s.recv(4096)
                if not b:
                    raise EOFError("closed before the response headers")
                buf += b
            head, _, body = buf.partition(b"\r\n\r\n")
            self.status_line = head.split(b"\r\n")[0].decode()
            self._check(body)
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                self._check(b)
                time.sleep(0.01)  # ~6 MB/s: the stream outlives the SIGTERM by seconds
            s.close()
        except Exception as e:  # noqa: BLE001 - recorded and asserted on
            self.error = repr(e)
        self.finished_at = time.monotonic()

    def _check(self, b):
        # The upstream's body is bytes(range(256)) repeated: byte k is k % 256.
        start = self.received % 256
        want = (bytes(range(256)) * (len(b) // 256 + 2))[start:start + len(b)]
        if b != want and self.corrupt_at is None:
            self.corrupt_at = self.received + next(i for i in range(len(b)) if b[i] != want[i])
        self.received += len(b)


# ---------------------------------------------------------------- the test
def test_a_rolling_update_loses_no_request(env):
    up = env.kv()
    mport_a, mport_b = free_port(), free_port()
    a = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport_a}",
                          "--drain-timeout", str(DRAIN_TIMEOUT)])
    b = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport_b}",
                          "--drain-timeout", str(DRAIN_TIMEOUT)])
    svc = ServiceProxy({"A": (a.service_port, mport_a), "B": (b.service_port, mport_b)})
    lb = LoadBalancer([("A", a.bridge_port), ("B", b.bridge_port)])
    load = None
    try:
        bridge = env.bridge(lb.port, up.addr)
        a.wait_log(r"conn=\d+ bridge connected")
        wait_for(lambda: svc.ready == ["A"], 5, "the Service to have A as its only endpoint")
        assert _readyz(mport_b)[0] == 503  # the new pod: no bridge yet

        load = LoadGenerator(svc.port, LOAD_THREADS)
        wait_for(lambda: load.ok_count() >= 20, 20, "requests served before the update")

        long = LongStream(svc.port)
        long.start()
        wait_for(lambda: long.received >= 1 << 20 or long.error, 10, "the long stream flowing")
        assert long.error is None, long.error
        assert svc.routes.get(long.cport) == "A"

        # A's readiness as seen every 5 ms from the moment of SIGTERM.
        seen = []
        stop_probe = threading.Event()

        def probe():
            while not stop_probe.is_set():
                seen.append((time.monotonic(), _readyz(mport_a, timeout=0.2)))
                stop_probe.wait(0.005)
        prober = threading.Thread(target=probe, daemon=True)
        t0 = time.monotonic()
        at_sigterm = long.received
        a.signal(signal.SIGTERM)
        prober.start()

        rc = a.wait_exit(DRAIN_TIMEOUT + 5)
        a_exit = time.monotonic()
        stop_probe.set()
        prober.join(5)
        assert rc == 0, a.text()
        assert a_exit - t0 < DRAIN_TIMEOUT, f"A took {a_exit - t0:.1f}s to drain"

        # The bridge is now linked to B, and B serves.
        b.wait_log(r"conn=\d+ bridge connected", timeout=30)
        wait_for(lambda: svc.ready == ["B"], 30, "the Service to have B as its only endpoint")
        b_ready = next(t for t, r in svc.ready_log if r == ["B"])
        served_before = load.ok_count()
        wait_for(lambda: load.ok_count() >= served_before + 20, 20, "requests served by B")
        long.join(30)
        assert not long.is_alive(), "the long stream hung"
    finally:
        done = load.finish(REQUEST_DEADLINE + ATTEMPT_TIMEOUT) if load else []
        lb.close()
        svc.close()

    # ---- readiness went false first, while A still carried its stream
    first_change = next(((t, r) for t, r in seen if r != (200, "ready\n")), None)
    assert first_change is not None, seen[:5]
    assert first_change[1] == (503, "draining\n"), (first_change, seen[:5])
    assert first_change[0] < long.finished_at and first_change[0] < a_exit

    # ---- the in-flight stream on A finished intact
    assert long.error is None, long.error
    assert long.status_line == "HTTP/1.1 200 OK"
    assert long.corrupt_at is None, f"long stream corrupted at byte {long.corrupt_at}"
    assert long.received == LONG_STREAM_BYTES, long.received
    assert at_sigterm < LONG_STREAM_BYTES, "the long stream was over before the SIGTERM"

    # ---- the bridge moved to B
    bridge.wait_log(r"broker sent GOAWAY")
    assert b.count(r"conn=\d+ bridge connected") >= 1
    # ---- no request lost, partial or corrupted
    lost = [(w.name, w.outcome, w.attempts[-3:]) for w in done if w.outcome != "ok"]
    routes = {**svc.routes}
    by_backend = {"A": 0, "B": 0, None: 0}
    for w in done:
        by_backend[routes.get(w.attempts[-1][1])] += 1
    retried = [w for w in done if len(w.attempts) > 1]
    worst = max((w.end - w.start for w in done), default=0)
    summary = (f"{len(done)} requests, served by A {by_backend['A']}, by B {by_backend['B']}; "
               f"{len(retried)} retried; slowest {worst:.2f}s; A drained in {a_exit - t0:.2f}s; "
               f"B ready {b_ready - t0:.2f}s after SIGTERM; endpoints {svc.ready_log}")
    print(summary)
    assert not lost, f"{len(lost)} lost: {lost[:10]}\n{summary}"
    # The new broker took over while the old one was still draining its stream.
    assert b_ready < a_exit, summary
    assert by_backend["A"] > 0 and by_backend["B"] > 0, summary


# Found by the test above: a draining broker's parent (and forwarding
# process) kept their copies of the listening sockets open, so the kernel still
# completed handshakes on the old broker's ports and the bridge's new link
# waited in its backlog for the whole drain. They close them on drain now.
def test_the_bridge_links_to_the_new_broker_while_the_old_one_drains(env):
    echo = env.echo()
    a = env.broker(extra=["--drain-timeout", str(DRAIN_TIMEOUT)])
    b = env.broker(extra=["--drain-timeout", str(DRAIN_TIMEOUT)])
    lb = LoadBalancer([("A", a.bridge_port), ("B", b.bridge_port)])
    try:
        bridge = env.bridge(lb.port, echo.addr)
        a.wait_log(r"conn=\d+ bridge connected")
        hold = socket.create_connection(("127.0.0.1", a.service_port), timeout=10)
        hold.sendall(b"hold")
        assert hold.recv(10) == b"hold"
        a.signal(signal.SIGTERM)
        bridge.wait_log(r"broker sent GOAWAY")
        # Within one handshake, not one drain: A still carries the held stream.
        b.wait_log(r"conn=\d+ bridge connected", timeout=8)
        assert a.proc.poll() is None
        hold.sendall(b"still")
        assert hold.recv(10) == b"still"
        hold.close()
        assert a.wait_exit(DRAIN_TIMEOUT) == 0
    finally:
        lb.close()
