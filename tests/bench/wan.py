#!/usr/bin/env python3
"""make bench-wan: what the tunnel costs over a WAN link, each figure beside a baseline
measured in the same run through the same emulator (tests/wan/wanem.py, docs/wan.md).

The emulator sits on the bridge-broker link. Wrappers speak TLS to the bridge
(--service-cert, as deployed) and reach the broker's service port on loopback, as
pods reach it in the cluster. The baseline is a client that connects straight to the
OpenBao stand-in over TLS through a second emulator with the same settings.

  (a) one new wrapper's time to a secret, in round trips (design minimum: tunnel 2 RTT,
      the wrapper's TLS 1.3 handshake and its request; direct 3: TCP, TLS, request)
  (b) WRAPPERS (1,000) wrappers starting at once: p50/p99 time to secret
  (c) one 64 MiB stream at 40 and 100 ms RTT, beside the stream window's cap (window/RTT:
      the 1 MiB a stream starts with, and the 16 MiB auto-tuning may grow it to)
  (d) reconnect after a broker restart: p50/p99 from the broker being ready to the first
      read served, over TRIES (20) restarts; beside it (a)'s figure, the same read with
      the link already up

Knobs (environment): RTT_MS [40], RTT2_MS [100] (second RTT of (c)), RATE_MBIT [1000]
(the link's bandwidth, both emulators; 0 = no cap), WRAPPERS [1000], TRIES [20],
SAMPLES [20] (of (a)), BULK_MIB [64], PARTS ["a b c d"], CT_BUILD [build/], KEEP [] (1: keep
the daemons' and emulators' logs and print where).
The emulators run under SCHED_FIFO when allowed (their delays stay accurate on a loaded
machine); the daemons and the clients do not.
"""
import hashlib
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests" / "wan"))
import harness  # noqa: E402
from harness import Bridge, Broker, Pki, bytes_body_sha256, free_port, pin_of  # noqa: E402
from wan import Wan  # noqa: E402

SVC = "cloudtaser-broker.cloudtaser-system.svc"
RTT_MS = float(os.environ.get("RTT_MS", 40))
RTT2_MS = float(os.environ.get("RTT2_MS", 100))
RATE = float(os.environ.get("RATE_MBIT", 1000)) or None
WRAPPERS = int(os.environ.get("WRAPPERS", 1000))
TRIES = int(os.environ.get("TRIES", 20))
SAMPLES = int(os.environ.get("SAMPLES", 20))
BULK = int(os.environ.get("BULK_MIB", 64)) << 20
PARTS = os.environ.get("PARTS", "a b c d").split()
# A stream's window: where it starts, and what auto-tuning may grow it to
# with the round trip (shared/wire/limits.h kMaxAutoStreamWindow; at most half
# of --memory-budget, whose default is 32 MiB).
WINDOW = 1 << 20
MAX_WINDOW = 16 << 20


def serve_kv(tls_crt=None, tls_key=None):
    """In a process of its own: the KV stand-in (harness.KvUpstream) with Nagle off,
    so that its header and body writes do not wait on a delayed ACK (issue 18, item 6)."""
    harness._KvHandler.disable_nagle_algorithm = True
    up = harness.KvUpstream(tls=(tls_crt, tls_key) if tls_crt else None)
    up.server.request_queue_size = 4096
    print(up.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


class KvProcess:
    def __init__(self, tls=None):
        argv = [sys.executable, __file__, "--serve-kv", *(map(str, tls) if tls else [])]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("bench-wan: the KV stand-in did not start")
        self.port = int(line)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def get_secret(port, ctx, name="x", timeout=60):
    """A wrapper: TCP connect, TLS handshake, one GET; True when the secret came back."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw, server_hostname=SVC) as s:
        s.sendall(f"GET /v1/secret/data/{name} HTTP/1.1\r\nHost: {SVC}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                return False
            buf += b
        head, _, body = buf.partition(b"\r\n\r\n")
        n = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                     if l.lower().startswith(b"content-length:")))
        while len(body) < n:
            b = s.recv(65536)
            if not b:
                return False
            body += b
        return head.startswith(b"HTTP/1.1 200") and f"s3cr3t-{name}".encode() in body


def timed_secret(port, ctx, name="x"):
    t0 = time.monotonic()
    ok = get_secret(port, ctx, name)
    return time.monotonic() - t0, ok


def download(port, ctx, n, path=None):
    """One stream: GET /bytes/n (or `path`) over TLS; returns (seconds, sha256 ok)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    t0 = time.monotonic()
    with ctx.wrap_socket(raw, server_hostname=SVC) as s:
        s.sendall(f"GET {path or f'/bytes/{n}'} HTTP/1.1\r\nHost: {SVC}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(1 << 20)
        _, _, first = buf.partition(b"\r\n\r\n")
        h = hashlib.sha256(first)
        got = len(first)
        while got < n:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            got += len(b)
    return time.monotonic() - t0, got == n and h.hexdigest() == bytes_body_sha256(n)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class BulkServer:
    """The direct baseline of (c): `openssl s_server -WWW` (C, so that the baseline shows
    the link, not a Python server's TLS) serving a file with the /bytes/N body."""

    def __init__(self, tmp, crt, key, n):
        www = Path(tmp) / "www"
        www.mkdir(exist_ok=True)
        chunk = harness.BYTES_CHUNK
        with open(www / "bytes", "wb") as f:
            for _ in range(n // len(chunk)):
                f.write(chunk)
            f.write(chunk[: n % len(chunk)])
        self.port = free_port()
        self.proc = subprocess.Popen(["openssl", "s_server", "-WWW", "-quiet", "-accept",
                                      f"127.0.0.1:{self.port}", "-cert", str(crt), "-key", str(key)],
                                     cwd=www, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        harness.wait_for(up, 10, "openssl s_server to listen")

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


class World:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.pki = Pki(self.tmp / "pki")
        self.broker_files = (*self.pki.issue("broker", "serverAuth"), self.pki.ca_crt)
        self.bridge_files = (*self.pki.issue("bridge", "clientAuth"), self.pki.ca_crt)
        self.svc = self.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
        self.ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        self.kv = KvProcess()                # behind the bridge, plaintext on loopback
        self.kv_tls = KvProcess(tls=self.svc)  # the direct baseline's OpenBao, over TLS
        self.bport, self.sport = free_port(), free_port()
        self.n = 0
        self.broker = self.start_broker()
        self.link = Wan("127.0.0.1", self.bport, rtt_ms=RTT_MS, rate_mbit=RATE, realtime=True,
                        log_path=self.log("wanem-link"))
        self.direct = Wan("127.0.0.1", self.kv_tls.port, rtt_ms=RTT_MS, rate_mbit=RATE,
                          realtime=True, log_path=self.log("wanem-direct"))
        self.wans = [self.link, self.direct]
        self.bulk = self.bulk_wan = None
        if "c" in PARTS:
            self.bulk = BulkServer(self.tmp, *self.svc, BULK)
            self.bulk_wan = Wan("127.0.0.1", self.bulk.port, rtt_ms=RTT_MS, rate_mbit=RATE,
                                realtime=True, log_path=self.log("wanem-bulk"))
            self.wans.append(self.bulk_wan)
        self.bridge = Bridge(self.bridge_files, self.log("bridge"), self.link.port,
                             f"http://127.0.0.1:{self.kv.port}", service=self.svc,
                             extra=["--broker-pin", pin_of(self.broker_files[0])])
        self.broker.wait_log(r"conn=\d+ bridge connected", timeout=30)
        self.bridge.wait_log(r"connected to the broker", timeout=30)

    def log(self, name):
        self.n += 1
        return self.tmp / f"{self.n:02d}-{name}.log"

    def start_broker(self):
        return Broker(self.broker_files, self.log("broker"), bridge_port=self.bport,
                      service_port=self.sport,
                      # Every wrapper here comes from 127.0.0.1; in a cluster each pod has
                      # its own address, and the default cap (256 per source) would refuse
                      # most of (b)'s thousand.
                      extra=["--bridge-pin", pin_of(self.bridge_files[0]),
                             "--max-wrappers-per-source", str(max(256, 2 * WRAPPERS))])

    def set_rtt(self, ms):
        """A new RTT for both emulators, once nothing queued under the old one is left."""
        for w in self.wans:
            w.set_delay(ms / 2)
        harness.wait_for(lambda: all(w.status()["queued"] == 0 for w in self.wans),
                         10, "the emulators' queues to drain")

    def close(self):
        for d in (self.bridge, self.broker):
            d.kill()
        for w in self.wans:
            w.close()
        if self.bulk:
            self.bulk.close()
        self.kv.close()
        self.kv_tls.close()


def part_a(w, rows):
    rtt = RTT_MS / 1e3
    get_secret(w.sport, w.ctx)  # warm: the bridge's upstream pool, the first stream
    tun, direct = [], []
    for i in range(SAMPLES):  # interleaved: both see the same moment's load
        t, ok = timed_secret(w.sport, w.ctx, f"a{i}")
        assert ok
        tun.append(t)
        t, ok = timed_secret(w.direct.port, w.ctx, f"a{i}")
        assert ok
        direct.append(t)
    for name, xs in (("tunnel", tun), ("direct", direct)):
        print(f"  (a) {name}: " + " ".join(f"{x / rtt:.2f}" for x in xs) + " RTT")
    rows.append(("(a) new wrapper: time to secret",
                 f"p50 {statistics.median(tun) * 1e3:.0f} ms = {statistics.median(tun) / rtt:.2f} RTT "
                 f"(p90 {pct(tun, 90) / rtt:.2f})",
                 f"p50 {statistics.median(direct) * 1e3:.0f} ms = {statistics.median(direct) / rtt:.2f} RTT "
                 f"(p90 {pct(direct, 90) / rtt:.2f})",
                 "minimum: tunnel 2 RTT, direct 3 RTT"))
    # The same at 0 ms: what is processing, not round trips. (p50 at RTT - p50 at 0) / RTT
    # is the number of round trips a new wrapper waits for.
    w.set_rtt(0)
    tun0 = [timed_secret(w.sport, w.ctx, f"z{i}")[0] for i in range(SAMPLES)]
    dir0 = [timed_secret(w.direct.port, w.ctx, f"z{i}")[0] for i in range(SAMPLES)]
    w.set_rtt(RTT_MS)
    trips_t = (statistics.median(tun) - statistics.median(tun0)) / rtt
    trips_d = (statistics.median(direct) - statistics.median(dir0)) / rtt
    rows.append(("(a) the same at 0 ms RTT (processing)",
                 f"p50 {statistics.median(tun0) * 1e3:.1f} ms",
                 f"p50 {statistics.median(dir0) * 1e3:.1f} ms", ""))
    rows.append(("(a) round trips waited: (p50 - p50 at 0 ms) / RTT", f"{trips_t:.2f}",
                 f"{trips_d:.2f}", "")) 
    return statistics.median(tun)


def burst(port, ctx, n):
    """n wrappers released at once; returns their times to secret and the failures."""
    threading.stack_size(256 << 10)
    gate = threading.Event()
    times, fails = [], []
    lock = threading.Lock()

    def one(i):
        gate.wait()
        t0 = start[0]
        try:
            ok = get_secret(port, ctx, f"b{i}", timeout=120)
        except OSError as e:
            ok = False
            with lock:
                fails.append(repr(e))
        with lock:
            if ok:
                times.append(time.monotonic() - t0)
            elif not fails or len(fails) < len(times) + 1:
                fails.append("no secret")
    start = [0.0]
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start[0] = time.monotonic()
    gate.set()
    for t in threads:
        t.join(180)
    return times, fails


def part_b(w, rows):
    out = {}
    for name, port in (("tunnel", w.sport), ("direct", w.direct.port)):
        times, fails = burst(port, w.ctx, WRAPPERS)
        out[name] = (f"p50 {pct(times, 50):.2f} s, p99 {pct(times, 99):.2f} s "
                     f"({len(times)}/{WRAPPERS} served)" if times else f"none served: {fails[:3]}")
        if fails:
            print(f"  (b) {name}: {len(fails)} failed, e.g. {fails[:3]}")
    rows.append((f"(b) {WRAPPERS} wrappers at once: time to secret", out["tunnel"],
                 out["direct"], "the stand-in is Python: its TLS is the direct row's floor"))


def part_c(w, rows):
    for rtt in (RTT_MS, RTT2_MS):
        w.set_rtt(rtt)
        res = {}
        for name, port, path in (("tunnel", w.sport, None),
                                 ("direct", w.bulk_wan.port, "/bytes")):
            secs, ok = download(port, w.ctx, BULK, path)
            assert ok, f"{name}: the 64 MiB body arrived damaged or short"
            res[name] = BULK / secs / 2**20
        cap = WINDOW / (rtt / 1e3) / 2**20
        top = MAX_WINDOW / (rtt / 1e3) / 2**20
        rows.append((f"(c) one {BULK >> 20} MiB stream at {rtt:g} ms RTT",
                     f"{res['tunnel']:.1f} MiB/s", f"{res['direct']:.1f} MiB/s",
                     f"window/RTT {cap:.1f} MiB/s at 1 MiB, {top:.0f} at 16 MiB (auto-tuned); "
                     f"direct: openssl s_server; link "
                     f"{'%.0f MiB/s' % (RATE * 1e6 / 8 / 2**20) if RATE else 'uncapped'}"))
    w.set_rtt(RTT_MS)


def part_d(w, rows, a_p50):
    times = []
    for i in range(TRIES):
        lost = w.bridge.count(r"link to the broker lost")
        w.broker.kill()
        harness.wait_for(lambda: w.bridge.count(r"link to the broker lost") > lost, 30,
                         "the bridge to see the broker gone")
        before = w.bridge.count(r"connected to the broker")
        w.broker = w.start_broker()  # returns once the broker logs "ready"
        back = time.monotonic()
        # A wrapper that arrives now is held by the broker until the bridge links.
        ok = get_secret(w.sport, w.ctx, f"d{i}", timeout=60)
        assert ok, f"try {i}: no secret after the restart"
        times.append(time.monotonic() - back)
        harness.wait_for(lambda: w.bridge.count(r"connected to the broker") > before, 30,
                         "the bridge to log its new link")
    print("  (d) " + " ".join(f"{t:.2f}" for t in times) + " s")
    rows.append((f"(d) broker restart: ready -> first read served ({TRIES} tries)",
                 f"p50 {pct(times, 50):.2f} s, p99 {pct(times, 99):.2f} s",
                 f"{a_p50:.2f} s (a: link already up)",
                 "bridge redial after a lost link: 250-500 ms"))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-kv":
        serve_kv(*sys.argv[2:4])
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    for b in (harness.BROKER, harness.BRIDGE):
        if not Path(b).exists():
            raise SystemExit(f"bench-wan: {b} not built; run make first")
    rows = []
    keep = os.environ.get("KEEP")  # KEEP=1: keep the logs (the directory is printed)
    with tempfile.TemporaryDirectory(prefix="bench-wan-") as tmp:
        if keep:
            tmp = tempfile.mkdtemp(prefix="bench-wan-logs-")
            print(f"bench-wan: logs in {tmp}")
        w = World(tmp)
        try:
            a_p50 = part_a(w, rows) if "a" in PARTS or "d" in PARTS else 0.0
            if "b" in PARTS:
                part_b(w, rows)
            if "c" in PARTS:
                part_c(w, rows)
            if "d" in PARTS:
                part_d(w, rows, a_p50)
            realtime = w.link.status().get("realtime")
        finally:
            w.close()
    load = os.getloadavg()
    print()
    print(f"bench-wan: link {RTT_MS:g} ms RTT, rate {f'{RATE:g} Mbit/s' if RATE else 'uncapped'}, "
          f"emulator realtime={realtime}; load average {load[0]:.1f} on {os.cpu_count()} cores")
    head = ("figure", "tunnel", "baseline (same emulator)", "note")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    for r in [head, tuple("-" * n for n in widths), *rows]:
        print("| " + " | ".join(str(c).ljust(n) for c, n in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
