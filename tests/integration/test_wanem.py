"""The WAN emulator (tests/wan/wanem.py) does what the link tests and `make bench-wan`
rely on: bytes arrive in order and intact (with jitter too), the delay is accurate to a
millisecond, the rate cap holds within 5 %, and each command does what it says."""
import hashlib
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import EchoUpstream, read_to_eof, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "wan"))
from wan import Wan  # noqa: E402

PROBE = Path(__file__).resolve().parents[1] / "wan" / "probe.py"


class Sink:
    """A target that records every byte it receives with its arrival time, and how
    the connection ended ('eof' or 'reset'). keep=False: count the bytes, keep none."""

    def __init__(self, keep=True):
        self.keep = keep
        self.count = 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.data = bytearray()
        self.arrivals = []  # (monotonic time, bytes so far)
        self.ending = None
        self.conn = None
        self.accepted_at = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.ls.settimeout(60)
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        self.accepted_at = time.monotonic()
        self.conn = c
        c.settimeout(120)
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    self.ending = "eof"
                    return
                self.count += len(b)
                if self.keep:
                    self.data += b
                self.arrivals.append((time.monotonic(), self.count))
        except ConnectionResetError:
            self.ending = "reset"
        except OSError as e:
            self.ending = f"error {e!r}"

    def close(self):
        self.ls.close()
        if self.conn:
            self.conn.close()


@pytest.fixture
def echo():
    e = EchoUpstream()
    yield e
    e.close()


def pump(sock, total, seed=7):
    """Writes `total` pseudo-random bytes in writes of varied sizes (1 B to 256 KiB);
    returns the sha256 of what it wrote."""
    import random
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)
    h = hashlib.sha256()
    sent = 0
    for _ in range(total):  # bounded: each turn writes at least one byte
        if sent >= total:
            break
        n = min(total - sent, rng.choice((1, 7, 100, 1460, 16384, 65536, 262144)))
        off = rng.randrange(0, len(block) - n + 1)
        part = block[off:off + n]
        sock.sendall(part)
        h.update(part)
        sent += n
    return h.hexdigest()


def test_bytes_arrive_in_order_and_intact_both_ways_with_jitter(echo):
    with Wan("127.0.0.1", echo.port, rtt_ms=20, jitter_ms=8) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=60)
        total = 24 << 20
        sent = {}
        t = threading.Thread(target=lambda: (sent.update(h=pump(s, total)),
                                             s.shutdown(socket.SHUT_WR)))
        t.start()
        got = read_to_eof(s)
        t.join(60)
        s.close()
        assert len(got) == total
        assert hashlib.sha256(got).hexdigest() == sent["h"]
        st = wan.status()
        assert st["bytes_up"] == total and st["bytes_down"] == total, st


def _one_way_samples(rtt_ms, n=150, gap_ms=10):
    """One-way delays (ms) of n small messages, measured by tests/wan/probe.py in a
    process of its own (this one's heap and threads would pause it for milliseconds)."""
    import json
    import subprocess
    out = subprocess.run([sys.executable, str(PROBE), "--rtt-ms", str(rtt_ms), "--count", str(n),
                          "--gap-ms", str(gap_ms)], capture_output=True, timeout=120, check=True)
    r = json.loads(out.stdout)
    assert len(r["one_way_ms"]) == n, r
    return r["one_way_ms"], r["realtime"], r["emulator"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


@pytest.mark.parametrize("delay_ms", [20, 50])
def test_the_one_way_delay_is_accurate_to_a_millisecond(delay_ms, record_property):
    # Light load: one small message every 10 ms. The emulator and both ends run under
    # SCHED_FIFO where allowed: on this shared 2-core machine the run queue alone adds
    # tens of milliseconds to a normal thread's wake-up.
    # What the emulator adds is judged against the same path with no delay, measured in
    # the same test: the endpoints' own wake-ups and two loopback hops (0.3-0.6 ms here)
    # are the measurement's, not the emulator's (CI, 2026-12-02: p50 1.15 ms late, of which
    # the emulator's own sends were at most 0.64 ms). The path is measured before and
    # after, and the faster of the two is the floor. Early is asserted on its own, so the
    # error is how late a message was beyond the path's own time.
    #
    # The design's bound, 1 ms, holds at p50, and nine packets in ten are within 2 ms.
    # p99 is this VM's scheduler, not the emulator's arithmetic: its own sends, under
    # SCHED_FIFO on an idle machine, were once 8.6 ms late (make test, 2026-12-02: p99
    # 5.6 ms at 50 ms one-way; 0.4-3.4 ms in other runs). It is recorded, not asserted;
    # docs/wan.md gives the figures.
    #
    # The host this VM runs on pauses it now and then for milliseconds (2026-12-03, idle
    # machine: once the no-delay path's p50 was 2.97 ms, once the emulator's own sends
    # were 3.7 ms late, against 0.2-0.6 in the runs around them). Such a pause only ever
    # makes messages later, so the measurement is taken up to three times and the bounds
    # must hold in one of them: a wrong delay fails all three. Every attempt is printed.
    attempts = []
    for attempt in range(3):
        before, _, _ = _one_way_samples(0)
        samples, rt, emu = _one_way_samples(2 * delay_ms)
        after, _, _ = _one_way_samples(0)
        assert min(samples) >= delay_ms - 0.05, min(samples)  # never early, in any attempt
        floor = min(pct(before, 50), pct(after, 50))
        err = [max(0.0, x - delay_ms - floor) for x in samples]
        p50, p90, p99 = pct(err, 50), pct(err, 90), pct(err, 99)
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        print(f"one-way {delay_ms} ms, attempt {attempt + 1} (realtime={rt}): the path without "
              f"delay p50 {floor:.3f} ms; beyond it error p50 {p50:.3f} ms, p90 {p90:.3f} ms, "
              f"p99 {p99:.3f} ms, min {min(samples):.3f} max {max(samples):.3f}; emulator late "
              f"at most {emu['max_late_ms']} ms; load per cpu {load:.2f}")
        attempts.append((p50, p90, p99, floor, load))
        if p50 <= 1.0 and p90 <= 2.0:
            break
    p50, p90, p99, floor, load = attempts[-1]
    record_property("attempts", len(attempts))
    record_property("path_p50_ms", round(floor, 3))
    record_property("error_p50_ms", round(p50, 3))
    record_property("error_p90_ms", round(p90, 3))
    record_property("error_p99_ms", round(p99, 3))
    record_property("load_per_cpu", round(load, 2))
    assert p50 <= 1.0 and p90 <= 2.0, attempts


def test_an_asymmetric_delay_is_applied_per_direction(echo):
    # Up alone, one way into a sink: 10 ms. Then the round trip through an echo: 10 + 60.
    # Never early; the upper bounds leave room for this loaded machine's wake-ups (the
    # accuracy itself is the test above's).
    sink = Sink()
    with Wan("127.0.0.1", sink.port, delay_up_ms=10, delay_down_ms=60) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"w")
        wait_for(lambda: sink.data, 5, "the first byte")
        ups = []
        for i in range(5):
            t0 = time.monotonic()
            s.sendall(b"u")
            wait_for(lambda: len(sink.data) >= i + 2, 5, "the byte")
            ups.append((sink.arrivals[-1][0] - t0) * 1e3)
        s.close()
    sink.close()
    with Wan("127.0.0.1", echo.port, delay_up_ms=10, delay_down_ms=60) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"warm")
        assert s.recv(10) == b"warm"
        rtts = []
        for _ in range(5):
            t0 = time.monotonic()
            s.sendall(b"p")
            assert s.recv(10) == b"p"
            rtts.append((time.monotonic() - t0) * 1e3)
        s.close()
    assert min(ups) >= 9.95 and statistics.median(ups) < 30, ups
    assert min(rtts) >= 69.95 and statistics.median(rtts) < 100, rtts


def test_a_new_connection_pays_the_tcp_handshake_round_trip():
    """As over a real link, a client's first bytes arrive 1.5 RTT after its connect."""
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=100) as wan:
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"hello")
        wait_for(lambda: sink.arrivals, 10, "the first bytes")
        first = (sink.arrivals[0][0] - t0) * 1e3
        s.close()
    sink.close()
    assert 150 <= first < 250, first  # 1.5 RTT, never less


@pytest.mark.parametrize("mbit", [80, 800])
def test_the_rate_cap_holds_within_5_percent(mbit, record_property):
    sink = Sink(keep=False)
    total = int(mbit * 1e6 / 8 * 2.5)  # 2.5 s worth
    # Under SCHED_FIFO: on this loaded machine a normal-priority emulator can fall behind
    # 100 MB/s, and what is tested is the bucket, not the run queue.
    with Wan("127.0.0.1", sink.port, rtt_ms=10, rate_mbit=mbit, realtime=True) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=60)
        pump(s, total)
        s.shutdown(socket.SHUT_WR)
        wait_for(lambda: sink.ending, 60, "the sink to read everything")
        s.close()
    sink.close()
    assert sink.ending == "eof" and sink.count == total
    # From the first byte to the last: the first 64 KiB (the bucket's depth) are free.
    (t_first, n_first), (t_last, _) = sink.arrivals[0], sink.arrivals[-1]
    rate = (total - n_first) * 8 / (t_last - t_first) / 1e6
    record_property("rate_mbit", round(rate, 1))
    print(f"cap {mbit} Mbit/s: measured {rate:.1f} Mbit/s")
    assert abs(rate - mbit) <= 0.05 * mbit, rate


def test_bulk_throughput_without_a_cap(echo, record_property):
    """What the emulator itself reaches on one connection, both ways at once (a figure
    for docs/wan.md; the floor only catches a broken emulator)."""
    figures = {}
    for rtt in (0, 40):
        with Wan("127.0.0.1", echo.port, rtt_ms=rtt) as wan:
            s = socket.create_connection(("127.0.0.1", wan.port), timeout=60)
            total = 128 << 20
            blk = os.urandom(1 << 20)
            t0 = time.monotonic()
            t = threading.Thread(target=lambda: ([s.sendall(blk) for _ in range(total >> 20)],
                                                 s.shutdown(socket.SHUT_WR)))
            t.start()
            got = 0
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                got += len(b)
            figures[rtt] = got / (time.monotonic() - t0) / 2**20
            t.join(10)
            s.close()
            assert got == total
    # One direction only, into a sink, at 40 ms.
    sink = Sink(keep=False)
    with Wan("127.0.0.1", sink.port, rtt_ms=40) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=60)
        total = 256 << 20
        blk = os.urandom(1 << 20)
        for _ in range(total >> 20):
            s.sendall(blk)
        s.shutdown(socket.SHUT_WR)
        wait_for(lambda: sink.ending, 60, "the sink to read everything")
        s.close()
    sink.close()
    assert sink.count == total
    one_way = (total - sink.arrivals[0][1]) / (sink.arrivals[-1][0] - sink.arrivals[0][0]) / 2**20
    record_property("mib_s_one_way_rtt40", round(one_way, 1))
    print(f"emulator bulk, one way: {one_way:.0f} MiB/s at 40 ms RTT")
    record_property("mib_s_rtt0", round(figures[0], 1))
    record_property("mib_s_rtt40", round(figures[40], 1))
    print(f"emulator bulk, each way at once: {figures[0]:.0f} MiB/s at 0 ms, "
          f"{figures[40]:.0f} MiB/s at 40 ms RTT")
    assert min(figures.values()) > 30


def test_stall_holds_the_bytes_without_fin_or_rst_and_resume_delivers_them():
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=10) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"before")
        wait_for(lambda: bytes(sink.data) == b"before", 5, "bytes before the stall")
        wan.stall("up")
        s.sendall(b" during")
        time.sleep(1.0)  # a stall is an absence: nothing may arrive in this second
        assert bytes(sink.data) == b"before" and sink.ending is None
        assert wan.status()["queued"] == len(b" during")
        wan.resume()
        wait_for(lambda: bytes(sink.data) == b"before during", 5, "the held bytes")
        s.close()
        wait_for(lambda: sink.ending, 5, "the end")
    sink.close()
    assert sink.ending == "eof"


def test_a_stall_of_one_direction_leaves_the_other_flowing(echo):
    with Wan("127.0.0.1", echo.port, rtt_ms=10) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        wan.stall("down")
        s.sendall(b"b")
        wait_for(lambda: wan.status()["bytes_up"] == 2, 5, "the up direction to carry b")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(10)  # the echo is held
        wan.resume("down")
        s.settimeout(5)
        assert s.recv(10) == b"b"
        s.close()


def test_connections_made_during_an_up_stall_reach_the_target_only_after_resume():
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=10) as wan:
        wan.stall("both")
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"syn into the void")
        time.sleep(0.5)
        assert sink.accepted_at is None
        wan.resume()
        wait_for(lambda: bytes(sink.data) == b"syn into the void", 5, "the held bytes")
        s.close()
    sink.close()


def test_rst_resets_both_sides():
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=10) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"x")
        wait_for(lambda: sink.data, 5, "the first byte")
        assert wan.rst() == 1
        with pytest.raises(ConnectionResetError):
            s.recv(10)
        wait_for(lambda: sink.ending, 5, "the target to see the end")
        s.close()
    sink.close()
    assert sink.ending == "reset"


def test_cut_after_n_bytes_delivers_exactly_n_then_resets():
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=10) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"head")
        wait_for(lambda: sink.data, 5, "the first bytes")
        wan.cut_after(100_000, "up")
        try:
            pump(s, 4 << 20)
        except (ConnectionResetError, BrokenPipeError):
            pass
        wait_for(lambda: sink.ending, 10, "the cut")
        s.close()
    sink.close()
    assert sink.ending == "reset"
    assert len(sink.data) == 4 + 100_000


def test_fin_ends_both_sides_with_a_bare_fin(echo):
    sink = Sink()
    with Wan("127.0.0.1", sink.port, rtt_ms=10) as wan:
        s = socket.create_connection(("127.0.0.1", wan.port), timeout=10)
        s.sendall(b"x")
        wait_for(lambda: sink.data, 5, "the first byte")
        assert wan.fin() == 1
        assert s.recv(10) == b""  # a clean FIN, not an RST
        wait_for(lambda: sink.ending, 5, "the target to see the end")
        s.close()
    sink.close()
    assert sink.ending == "eof"


class TlsEcho:
    """A TLS 1.3 server that echoes, recording the error that ended its connection."""

    def __init__(self, crt, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(str(crt), str(key))
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.error = None
        self.received = b""
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.ls.settimeout(30)
        c, _ = self.ls.accept()
        c.settimeout(30)
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
            while True:
                b = t.recv(65536)
                if not b:
                    return
                self.received += b
                t.sendall(b)
        except (ssl.SSLError, OSError) as e:
            self.error = e


@pytest.mark.parametrize("direction", ["up", "down"])
def test_flip_corrupts_the_next_tls_application_data_record_and_tls_sees_it(env, direction):
    crt, key = env.pki.issue("tlsecho", "serverAuth")
    srv = TlsEcho(crt, key)
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
    with Wan("127.0.0.1", srv.port, rtt_ms=10) as wan:
        c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", wan.port), timeout=10),
                            server_hostname="localhost")
        c.sendall(b"intact")
        assert c.recv(100) == b"intact"  # untouched until armed
        assert wan.status()["flipped"] == 0
        wan.flip_next_record(direction)
        if direction == "up":
            c.sendall(b"this record is corrupted on the way")
            wait_for(lambda: srv.error, 5, "the server's TLS to fail")
            assert "BAD_RECORD_MAC" in str(srv.error) or "DECRYPT" in str(srv.error).upper(), \
                srv.error
            assert srv.received == b"intact"
        else:
            c.sendall(b"the echo of this record is corrupted")
            with pytest.raises(ssl.SSLError) as e:
                c.recv(100)
            assert "BAD_RECORD_MAC" in str(e.value) or "DECRYPT" in str(e.value).upper(), e.value
        assert wan.status()["flipped"] == 1
        c.close()
