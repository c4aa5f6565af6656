"""The broker's three listening ports under hostile load: floods of silent
sockets on the bridge port, a bridge at its advertised stream limit with
wrappers waiting, too many wrappers from one source, and idle floods on the
metrics port. Every flood is a real client on loopback (127/8 sources are
bound explicitly), bounded in count and in time."""
import os
import re
import selectors
import socket
import ssl
import struct
import threading
import time

from harness import free_port, http_get, kv_ok, wait_for


# ---------------------------------------------------------------- helpers
def metrics_text(port):
    try:
        status, body = http_get(port, "/metrics", timeout=5)
        return body.decode() if status == 200 else ""
    except OSError:
        return ""


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def admission(text, port, reason):
    return metric(text, "cloudtaser_broker_admission_refusals_total",
                  f'{{port="{port}",reason="{reason}"}}') or 0


class SilentFlood:
    """Keeps `n` TCP connections to 127.0.0.1:port open from the given source
    addresses (round robin), sending nothing, and re-opens every one the
    server closes, until stop() or `cap` seconds."""

    def __init__(self, port, n, sources, cap=60):
        self.port, self.n, self.sources, self.cap = port, n, sources, cap
        self.sel = selectors.DefaultSelector()
        self.opened = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()

    def running(self):
        return self._thread.is_alive()

    def _open(self, src):
        s = socket.socket()
        s.setblocking(False)
        s.bind((src, 0))
        s.connect_ex(("127.0.0.1", self.port))
        self.sel.register(s, selectors.EVENT_READ, src)
        self.opened += 1

    def _run(self):
        deadline = time.monotonic() + self.cap
        for i in range(self.n):
            self._open(self.sources[i % len(self.sources)])
        while not self._stop.is_set() and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # whatever the server says, we stay silent
                self.sel.unregister(s)
                s.close()
                self.closed_by_server += 1
                self._open(key.data)


def frame(ftype, stream, payload=b"", flags=0):
    return struct.pack(">IBBI", len(payload), ftype, flags, stream) + payload


HELLO, OPEN, DATA, WINDOW, RESET, PING, GOAWAY = range(7)
FIN = 1


class FakeBridge:
    """A bridge that speaks the link protocol (docs/protocol.md) with a real
    client certificate and advertises `max_streams`. With `serve`, it answers
    every stream the broker opens with b"served" and FIN; otherwise it holds
    the stream open and says nothing."""

    def __init__(self, env, broker_port, max_streams, serve, cap=60):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(str(env.pki.ca_crt))
        ctx.load_cert_chain(str(env.bridge_crt), str(env.bridge_key))
        raw = socket.create_connection(("127.0.0.1", broker_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(0.2)
        self.serve, self.cap = serve, cap
        self.opened = []
        self.resets = {}
        self._stop = threading.Event()
        hello = (b"CTRC" + struct.pack(">HHBBH", 1, 1, 2, 0, 0) +
                 struct.pack(">IIII", 1 << 20, 16 << 20, max_streams, 16384) + os.urandom(16))
        self.sock.sendall(frame(HELLO, 0, hello))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _run(self):
        buf = b""
        deadline = time.monotonic() + self.cap
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 10:
                length, ftype, flags, stream = struct.unpack(">IBBI", buf[:10])
                if len(buf) < 10 + length:
                    break
                payload, buf = buf[10:10 + length], buf[10 + length:]
                self._on_frame(ftype, flags, stream, payload)

    def _on_frame(self, ftype, flags, stream, payload):
        if ftype == OPEN:
            self.opened.append(stream)
            if self.serve:
                self.sock.sendall(frame(DATA, stream, b"served", FIN))
        elif ftype == RESET:
            self.resets[stream] = struct.unpack(">I", payload)[0]
        elif ftype == PING and not flags & 1:
            self.sock.sendall(frame(PING, 0, payload, 1))


def start_wrappers(port, n):
    """n wrapper connections to the service port, each having sent a request."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /v1/secret/data/x HTTP/1.0\r\n\r\n")
        socks.append(s)
    return socks


def outcomes(socks, timeout, enough=None):
    """What each wrapper got before the broker ended it: its bytes and how it
    ended ("eof", "reset" or None), within `timeout` seconds overall or until
    `enough` of them ended."""
    sel = selectors.DefaultSelector()
    got = {}  # socket -> [bytes, end]
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = [b"", None]
    deadline = time.monotonic() + timeout
    enough = len(socks) if enough is None else enough
    while len(socks) - len(sel.get_map()) < enough and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                got[s][1] = "reset"
                sel.unregister(s)
                continue
            if data:
                got[s][0] += data
            else:
                # Close our side too, as a client does: the stream ends.
                got[s][1] = "eof"
                sel.unregister(s)
                s.close()
    sel.close()
    return list(got.values())


# ---------------------------------------------------------------- bridge port
def test_a_restarted_bridge_is_back_and_serving_within_5s_while_300_silent_sockets_flood_the_bridge_port(env):
    mport = free_port()
    broker, bridge, up = env.tunnel(broker_extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    assert kv_ok(broker.service_port)
    # 50 source addresses x 6 silent sockets: more than the handshake pool
    # holds, each source under its own cap, so only eviction lets a bridge in.
    sources = [f"127.0.0.{i}" for i in range(2, 52)]
    with SilentFlood(broker.bridge_port, 300, sources) as flood:
        wait_for(lambda: flood.closed_by_server >= 300, 30, "the flood to cycle through the pool")
        # The established link holds a reserved slot: the flood never touches it.
        assert kv_ok(broker.service_port, "during")
        bridge.kill()
        wait_for(lambda: metric(metrics_text(mport), "cloudtaser_broker_bridges_connected") == 0,
                 10, "the broker to notice the bridge is gone")
        t0 = time.monotonic()
        env.bridge(broker.bridge_port, up.addr)
        status, body = http_get(broker.service_port, "/v1/secret/data/back", timeout=10)
        recovery = time.monotonic() - t0
        assert status == 200 and b"s3cr3t-back" in body
        print(f"recovery after bridge restart under a 300-socket flood: {recovery:.2f} s")
        assert recovery < 5, recovery
        assert flood.running()  # the flood lasted through the measurement
        text = metrics_text(mport)
    assert admission(text, "bridge", "evicted") > 0, text
    # Silent sockets that are evicted are not handshake failures; those that
    # ran out the deadline are counted as timeouts.
    assert metric(text, "cloudtaser_broker_handshake_failures_total", '{reason="other"}') is None


def test_a_source_over_its_handshake_cap_is_refused_while_a_bridge_from_another_source_connects(env):
    mport = free_port()
    up = env.kv()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    with SilentFlood(broker.bridge_port, 40, ["127.0.0.9"]) as flood:
        wait_for(lambda: admission(metrics_text(mport), "bridge", "per_source") > 0, 10,
                 "per-source refusals")
        env.bridge(broker.bridge_port, up.addr)
        broker.wait_log(r"conn=\d+ bridge connected", timeout=5)
        assert kv_ok(broker.service_port)
        assert flood.running()
    # One source never holds more than its share of the pool.
    assert re.search(r"bridge connection from 127\.0\.0\.9 refused: per_source "
                     r"\(\d+ more like this", broker.text())
    assert broker.count("refused: per_source") < 20, "refusals must be logged throttled"


def test_bridge_handshake_failures_are_counted_by_reason_and_logged_at_most_once_per_interval(env):
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    # 30 plain-HTTP clients and 10 TLS clients without a client certificate.
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", broker.bridge_port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(str(env.pki.ca_crt))
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", broker.bridge_port), timeout=5) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.recv(1)  # the server's alert arrives after our Finished
            except OSError:
                pass

    def counted():
        text = metrics_text(mport)
        return (metric(text, "cloudtaser_broker_handshake_failures_total", '{reason="not_tls"}'),
                metric(text, "cloudtaser_broker_handshake_failures_total",
                       '{reason="no_certificate"}'))
    wait_for(lambda: counted() == (30, 10), 10, "30 not_tls and 10 no_certificate failures")
    # 40 failures, well within one 10 s interval: at most two lines (the first,
    # and one more if the interval rolled over on a slow machine).
    assert 1 <= broker.count(r"bridge handshake failed") <= 2, broker.text()


# ---------------------------------------------------------------- pending wrappers
def test_a_bridge_at_its_max_streams_gets_pending_wrappers_one_at_a_time_and_the_broker_never_hangs(env):
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}", "--pending-timeout", "60"])
    socks = start_wrappers(broker.service_port, 100)
    wait_for(lambda: metric(metrics_text(mport), "cloudtaser_broker_wrappers_pending") == 100, 10,
             "100 wrappers pending")
    fake = FakeBridge(env, broker.bridge_port, max_streams=1, serve=True)
    try:
        results = outcomes(socks, 40)
        served = sum(1 for data, end in results if data == b"served" and end == "eof")
        assert served == 100, results
        # The TLS process is alive and its numbers move: nothing left waiting.
        wait_for(lambda: metric(metrics_text(mport), "cloudtaser_broker_wrappers_pending") == 0,
                 5, "no wrapper pending")
        assert metric(metrics_text(mport), "cloudtaser_broker_streams_total") == 100
        assert len(fake.opened) == 100
    finally:
        fake.close()
        for s in socks:
            s.close()


def test_wrappers_waiting_for_a_bridge_at_its_max_streams_are_reset_as_refused_at_the_pending_timeout(env):
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}", "--pending-timeout", "3"])
    fake = FakeBridge(env, broker.bridge_port, max_streams=1, serve=False)
    try:
        broker.wait_log(r"conn=\d+ bridge connected")
        socks = start_wrappers(broker.service_port, 100)
        t0 = time.monotonic()
        results = outcomes(socks, 30, enough=99)
        elapsed = time.monotonic() - t0
        ended = [end for _, end in results if end is not None]
        # One holds the bridge's only stream; every other is closed by the
        # pending timeout, not left hanging and not served by a full bridge.
        assert len(ended) == 99, results
        assert len(fake.opened) == 1
        assert 2 < elapsed < 20, elapsed
        assert outcomes([s for s, (_, end) in zip(socks, results) if end is None], 1) == \
            [[b"", None]], "the wrapper on the bridge's only stream stays open"
        text = metrics_text(mport)
        assert metric(text, "cloudtaser_broker_stream_resets_total", '{reason="REFUSED"}') == 99
        assert metric(text, "cloudtaser_broker_pending_timeouts_total") == 99
        assert metric(text, "cloudtaser_broker_bridges_connected") == 1
        for s in socks:
            s.close()
    finally:
        fake.close()


# ---------------------------------------------------------------- service port
def echo_from(src, port, payload=b"ping", timeout=5):
    """A wrapper bound to `src` that sends `payload`: the socket when the echo
    came back through the tunnel, None when the broker closed it instead."""
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        # A refusal at accept is an RST, which may beat connect()'s return.
        s.connect(("127.0.0.1", port))
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = s.recv(4096)
            if not b:
                break
            got += b
    except OSError:
        got = b""
    if got == payload:
        return s
    s.close()
    return None


def test_one_source_over_its_wrapper_cap_is_refused_while_another_source_is_served(env):
    mport = free_port()
    broker, _, _ = env.tunnel(upstream=env.echo(), broker_extra=[
        "--max-wrappers-per-source", "4", "--metrics-listen", f"127.0.0.1:{mport}"])
    held = [echo_from("127.0.0.5", broker.service_port) for _ in range(4)]
    assert all(held), held
    # The fifth from the same address is closed at accept, unserved.
    assert echo_from("127.0.0.5", broker.service_port) is None
    # Another source is served meanwhile.
    other = echo_from("127.0.0.6", broker.service_port)
    assert other is not None
    text = metrics_text(mport)
    assert admission(text, "service", "per_source") >= 1, text
    broker.wait_log(r"wrapper connection from 127\.0\.0\.5 refused: per_source")
    # A wrapper that leaves gives its source the slot back.
    held.pop().close()
    again = wait_for(lambda: echo_from("127.0.0.5", broker.service_port, timeout=2), 10,
                     "a freed slot for 127.0.0.5")
    for s in [*held, other, again]:
        s.close()


# ---------------------------------------------------------------- metrics port
def probe_latencies(port, seconds):
    """GET /readyz every 0.1 s for `seconds`: (status, latency) of each."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status = http_get(port, "/readyz", timeout=1)[0]
        except OSError:
            status = None
        out.append((status, time.monotonic() - t0))
        time.sleep(0.1)
    return out


def run_metrics_flood(env, n, sources):
    mport, pport = free_port(), free_port()
    broker, _, _ = env.tunnel(broker_extra=["--metrics-listen", f"127.0.0.1:{mport}",
                                            "--probe-listen", f"127.0.0.1:{pport}"])
    wait_for(lambda: http_get(pport, "/readyz")[0] == 200, 5, "ready")
    assert http_get(pport, "/metrics")[0] == 404  # probes only on the probe port
    with SilentFlood(mport, n, sources) as flood:
        wait_for(lambda: flood.opened >= n, 10, "the flood to connect")
        probes = probe_latencies(pport, 5)
        # Prometheus still gets its scrape through the flood within its
        # default scrape timeout (10 s): idle connections ahead of it in the
        # backlog are admitted and evicted, oldest first, until its turn.
        t0 = time.monotonic()
        status, body = http_get(mport, "/metrics", timeout=10)
        print(f"/metrics through a {n}-connection flood: {time.monotonic() - t0:.2f} s")
        assert flood.running()
    bad = [p for p in probes if p[0] != 200 or p[1] >= 1]
    assert not bad and len(probes) >= 10, probes
    assert status == 200
    text = body.decode()
    assert admission(text, "metrics", "evicted") + admission(text, "metrics", "deadline") > 0
    return broker


def test_probes_keep_answering_within_1s_while_16_idle_connections_hold_the_metrics_port(env):
    run_metrics_flood(env, 16, ["127.0.0.2", "127.0.0.3"])


def test_probes_keep_answering_within_1s_while_200_idle_connections_flood_the_metrics_port(env):
    run_metrics_flood(env, 200, [f"127.0.0.{i}" for i in range(2, 27)])


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_full_service_port_pauses_before_the_fd_limit_so_metrics_and_probes_still_answer(env):
    from harness import BROKER, Daemon
    mport, pport = free_port(), free_port()
    up = env.echo()
    # 160 fds: the forwarding process keeps 96 apart, so 64 wrappers fill it.
    broker = Daemon(["prlimit", "--nofile=160:160", "--", BROKER,
                     "--bridge-listen", "127.0.0.1:0", "--service-listen", "127.0.0.1:0",
                     "--metrics-listen", f"127.0.0.1:{mport}", "--probe-listen",
                     f"127.0.0.1:{pport}", "--cert", env.broker_crt, "--key", env.broker_key,
                     "--ca-cert", env.pki.ca_crt, "--bridge-pin", env.bridge_pin],
                    env.tmp / "broker-160fds.log")
    env.daemons.append(broker)
    m = broker.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                        r"127\.0\.0\.1:(\d+)")
    bport, sport = int(m.group(1)), int(m.group(2))
    broker.wait_log(r"at most 64 wrapper connections, 256 per source address")
    env.bridge(bport, up.addr)
    broker.wait_log(r"conn=\d+ bridge connected")
    fwd = broker.children()["forward"]
    held = [echo_from(f"127.0.0.{10 + i % 8}", sport) for i in range(64)]
    assert all(held)
    # The 65th waits in the backlog: not accepted, not closed.
    waiting = socket.create_connection(("127.0.0.1", sport), timeout=5)
    waiting.sendall(b"late")
    waiting.settimeout(1)
    try:
        assert waiting.recv(4) == b"", "served beyond the pool"
    except socket.timeout:
        pass  # not answered: waiting, as it should
    # Metrics and probes keep their fds, and the paused listener costs no CPU.
    before = cpu_seconds(fwd)
    assert http_get(pport, "/readyz", timeout=1)[0] == 200
    text = metrics_text(mport)
    assert admission(text, "service", "paused") >= 1, text
    assert admission(text, "service", "fd_limit") == 0
    time.sleep(2)
    assert cpu_seconds(fwd) - before < 0.5, "the forwarding process spins with a full pool"
    # One wrapper leaves: the waiting one is accepted and served.
    held.pop().close()
    waiting.settimeout(10)
    assert waiting.recv(4) == b"late"
    for s in [*held, waiting]:
        s.close()
