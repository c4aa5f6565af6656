"""OpenBao's own faults, with wrappers arriving all through them (FI-48 to
FI-52; issue 18, item 2): down, refusing, slow, resetting mid-response and
flapping. The deployed shape: the wrappers' TLS ends in the bridge
(--service-cert), the bridge polls OpenBao's health every second
(--vault-health-interval 1; FI-40, FI-41 are the health states themselves,
test_vault_health.py), the broker's pending timeout is its default 10 s.

For each fault, every wrapper that arrived during it must end with something
an OpenBao client understands: the secret, whole and byte-exact, the
bridge's 502, or a reset; never a hang past PENDING + its answer + MARGIN,
never a clean end after part of a body (lost_bytes) or a wrong byte
(corrupted_bytes). Meanwhile the daemons' processes stay the same ones (no
restart), none of them busy-loops (CPU from /proc/PID/stat), their logs stay
a few lines a second, and once OpenBao is back the next wrapper is served
(recover_s); where the daemons notice the fault, detect_s is how long that
took (the bridge's log line, or the first wrapper's reset). Two defects
found here were fixed with these tests: an empty clean end when OpenBao
closed without answering (now the 502), and a log line per wrapper while
OpenBao is down (now throttled).
"""
import hashlib
import socket
import ssl
import threading
import time

import pytest

from harness import (BYTES_CHUNK, KvUpstream, RawListener, abort, bytes_body_sha256, free_port,
                     kv_v2, wait_for)
from test_failures import SVC, BareFin, TlsOverSocket, _cpu_seconds
from test_rolling_update import _expected_kv, _parse_response

INTERVAL = 1         # --vault-health-interval, seconds
PROBE_DEADLINE = 2   # each probe's answer deadline in the bridge
PENDING = 10         # the broker's default --pending-timeout
MARGIN = 5           # for this shared, loaded 2-core machine
ARRIVAL = 0.2        # a wrapper every 200 ms during a fault
# A process busy-looping takes a whole core; one taking TLS handshakes at 5
# wrappers a second takes a few per cent. Even on a loaded machine a spinning
# process gets more than this.
CPU_BOUND = 0.2      # CPU seconds per second, each process
LINES_BOUND = 20     # log lines per second, each daemon


# ---------------------------------------------------------------- OpenBao's faults
def _request_head(c):
    c.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        b = c.recv(4096)
        if not b:
            break
        buf += b
    return buf


def rst_at_once(c):
    abort(c)


def close_at_once(c):
    """Reads the request, then closes (FIN) without a byte of answer (a
    handler that died, a proxy in front of OpenBao that gave up)."""
    _request_head(c)
    c.close()


def never_answer(c):
    """Reads the request and says nothing more (a stopped or wedged OpenBao),
    until the far end gives up (bounded: 30 s)."""
    _request_head(c)
    c.settimeout(30)
    for _ in range(1000):
        if not c.recv(4096):
            return


HALF = 100_000  # bytes of a 200,000-byte body sent before the reset


def reset_mid_response(c):
    """Health probes are answered (the node stays active); every other answer
    promises 2 * HALF bytes and is reset after HALF of them."""
    head = _request_head(c)
    if head.startswith(b"GET /v1/sys/health "):
        c.sendall(kv_v2.whole_answer(200, "OK", b'{"initialized":true,"sealed":false,'
                                                b'"standby":false}', close=True))
        return
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (2 * HALF) + BYTES_CHUNK[:HALF])
    abort(c)


class SwitchableOpenBao:
    """OpenBao on one port, switched between the KV stand-in ("up"), nothing
    listening ("down") and a RawListener behaviour."""

    def __init__(self, env):
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.now = None
        self.kv = None
        self.switch("up")
        env.upstreams.append(self)

    def switch(self, mode):
        if self.now is not None:
            self.now.close()
            self.now = None
        if mode == "up":
            self.kv = self.now = KvUpstream(port=self.port)
        elif mode != "down":
            self.now = RawListener(self.port, mode)

    def close(self):
        self.switch("down")


# ---------------------------------------------------------------- wrappers
class Wrapper(threading.Thread):
    """One wrapper: TLS to the bridge through the broker, one KV read, read
    to the end. outcome: '200' (whole and exact), '502' (the bridge's, JSON
    errors), 'reset', 'empty' (a clean end before any byte), or what is wrong:
    'truncated' (a clean end short of Content-Length), 'fin' (a FIN without
    close_notify), 'wrong' (a whole answer that is not the secret), 'hang',
    'error ...'."""

    def __init__(self, port, ctx, name, timeout):
        super().__init__(daemon=True)
        self.port, self.ctx, self.name, self.timeout = port, ctx, name, timeout
        self.outcome = None
        self.lost = self.corrupted = 0
        self.start_at = self.end_at = None
        self.data = b""

    def run(self):
        self.start_at = time.monotonic()
        try:
            self.outcome = self._attempt()
        except ConnectionResetError:
            self.outcome = "reset"
        except BareFin:
            self.outcome = "fin"
        except socket.timeout:
            self.outcome = "hang"
        except (OSError, ssl.SSLError) as e:
            self.outcome = f"error {e!r}"
        self.end_at = time.monotonic()

    def _attempt(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        try:
            t = TlsOverSocket(s, self.ctx, SVC)
            t.sendall(f"GET /v1/secret/data/{self.name} HTTP/1.1\r\nHost: {SVC}\r\n"
                      "Connection: close\r\n\r\n".encode())
            for _ in range(10000):  # bounded: 64 KiB reads of an answer far smaller
                b = t.recv(65536)
                if not b:
                    break
                self.data += b
        finally:
            s.close()
        if not self.data:
            return "empty"
        r = _parse_response(self.data)
        if r is None:
            head, _, body = self.data.partition(b"\r\n\r\n")
            promised = [int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                        if k.strip().lower() == b"content-length" and v.strip().isdigit()]
            self.lost = max(0, promised[0] - len(body)) if promised else len(self.data)
            return "truncated"
        status, body = r
        if status == 502:
            return "502" if b'"errors"' in body else "wrong"
        want = _expected_kv(self.name)
        if status != 200 or body != want:
            self.corrupted = sum(a != b for a, b in zip(body, want)) + abs(len(body) - len(want))
            return "wrong"
        return "200"


class Arrivals:
    """A wrapper every ARRIVAL seconds from start() until stop() (at most
    `cap`), each in its own thread."""

    def __init__(self, port, ctx, tag, timeout, cap=150):
        self.port, self.ctx, self.tag, self.timeout, self.cap = port, ctx, tag, timeout, cap
        self.wrappers = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        t0 = time.monotonic()
        for i in range(self.cap):
            w = Wrapper(self.port, self.ctx, f"{self.tag}{i}", self.timeout)
            self.wrappers.append(w)
            w.start()
            # The arrival schedule itself (not a wait for an event).
            if self.stopped.wait(max(0.0, t0 + (i + 1) * ARRIVAL - time.monotonic())):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(5)

    def finish(self):
        """Waits for every wrapper to end (each bounds itself by its timeout)."""
        self.stop()
        for w in self.wrappers:
            w.join(self.timeout + MARGIN)
        assert not any(w.is_alive() for w in self.wrappers), "a wrapper thread hung"
        return self.wrappers


def first_good_read(port, ctx, since, tag, within):
    """Seconds from `since` to the first wrapper served whole (one at a time,
    each bounded; a 502 or a reset is tried again)."""
    deadline = since + within
    for i in range(1000):
        w = Wrapper(port, ctx, f"{tag}{i}", timeout=within)
        w.run()
        if w.outcome == "200":
            return w.end_at - since
        assert w.outcome in ("502", "reset", "empty"), (w.outcome, w.data[:200])
        assert time.monotonic() < deadline, f"no good read within {within}s: {w.outcome}"
        time.sleep(0.05)  # between tries, as a client backs off
    raise AssertionError("no good read")


# ---------------------------------------------------------------- the world
class World:
    def __init__(self, env, broker_extra=(), interval=INTERVAL, bridge_extra=()):
        self.env = env
        self.openbao = SwitchableOpenBao(env)
        svc_crt, svc_key = env.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
        self.broker = env.broker(extra=broker_extra)
        self.bridge = env.bridge(self.broker.bridge_port, self.openbao.addr,
                                 service=(svc_crt, svc_key),
                                 extra=["--vault-health-interval", str(interval),
                                        *bridge_extra])
        self.broker.wait_log(r"conn=\d+ bridge connected")
        self.bridge.wait_log(r"connected to the broker")
        self.broker.wait_log(r"bridge's OpenBao: unknown -> active")
        self.ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
        self.port = self.broker.service_port
        self.pids = self._pids()
        w = Wrapper(self.port, self.ctx, "before", timeout=10)
        w.run()
        assert w.outcome == "200", (w.outcome, w.data[:300])

    def _pids(self):
        out = {}
        for name, d in (("broker", self.broker), ("bridge", self.bridge)):
            out[(name, "parent")] = d.proc.pid
            for role, pid in d.children().items():
                out[(name, role)] = pid
        return out

    def usage(self):
        """(CPU seconds by process, log lines by daemon, when)."""
        cpu = {k: _cpu_seconds(pid) for k, pid in self.pids.items()}
        lines = {"broker": len(self.broker.text().splitlines()),
                 "bridge": len(self.bridge.text().splitlines())}
        return cpu, lines, time.monotonic()

    def check_health(self, before, label):
        """No process restarted or busy-looping, logs quiet, since `before`."""
        cpu0, lines0, t0 = before
        cpu1, lines1, t1 = self.usage()
        span = t1 - t0
        rates = {k: (cpu1[k] - cpu0[k]) / span for k in cpu0}
        lps = {k: (lines1[k] - lines0[k]) / span for k in lines0}
        cpu_shown = {f"{a}-{b}": round(v, 3) for (a, b), v in rates.items()}
        print(f"{label}: over {span:.1f} s, CPU s/s {cpu_shown}, "
              f"log lines/s {({k: round(v, 1) for k, v in lps.items()})}")
        assert self._pids() == self.pids, "a process of a daemon was restarted or is gone"
        for d in (self.broker, self.bridge):
            assert d.proc.poll() is None
            assert d.count(r"started tls process") <= 1, d.text()
        assert max(rates.values()) < CPU_BOUND, rates
        assert max(lps.values()) < LINES_BOUND, lps

    def bulk_intact(self):
        """A 4 MiB answer through the tunnel, after the fault: every byte right."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        try:
            t = TlsOverSocket(s, self.ctx, SVC)
            n = 4 << 20
            t.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {SVC}\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            for _ in range(100000):
                b = t.recv(1 << 20)
                if not b:
                    break
                data += b
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and len(body) == n, (head, len(body))
        assert hashlib.sha256(body).hexdigest() == bytes_body_sha256(n)


def judge(wrappers, allowed, answer_s, record_property, pending=PENDING):
    """Every wrapper ended with an allowed outcome, in time; lost and
    corrupted bytes are recorded (and must be 0)."""
    outcomes = {}
    for w in wrappers:
        outcomes[w.outcome] = outcomes.get(w.outcome, 0) + 1
    took = max(w.end_at - w.start_at for w in wrappers)
    print(f"{len(wrappers)} wrappers: {outcomes}; the longest took {took:.2f} s")
    lost = sum(w.lost for w in wrappers)
    corrupted = sum(w.corrupted for w in wrappers)
    record_property("lost_bytes", lost)
    record_property("corrupted_bytes", corrupted)
    assert lost == 0 and corrupted == 0, (lost, corrupted)
    bad = [(w.name, w.outcome, w.data[:120]) for w in wrappers if w.outcome not in allowed]
    assert not bad, bad
    assert took <= pending + answer_s + MARGIN, took
    return outcomes


def detect_line(bridge, pattern, since, within):
    bridge.wait_log(pattern, timeout=within)
    return time.monotonic() - since


# ---------------------------------------------------------------- the faults
DOWN_FOR = 5  # seconds: past detection (INTERVAL + PROBE_DEADLINE), short of PENDING


@pytest.mark.parametrize("pending", [PENDING, 2], ids=["back-within-pending", "past-pending"])
def test_FI48_openbao_down_wrappers_get_a_502_or_wait_and_are_served_when_it_is_back(
        env, record_property, pending):
    w = World(env, broker_extra=[] if pending == PENDING else ["--pending-timeout", str(pending)])
    before = w.usage()
    arrivals = Arrivals(w.port, w.ctx, "down", timeout=pending + MARGIN)
    w.openbao.switch("down")
    t_fault = time.monotonic()  # the listener is closed: the fault is in force
    detect = detect_line(w.bridge, r"OpenBao at 127\.0\.0\.1:\d+: active -> unreachable",
                         t_fault, INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("detect_s", round(detect, 3))
    w.broker.wait_log(r"no bridge's OpenBao can serve .*: holding wrappers", timeout=MARGIN)
    # The outage itself lasts DOWN_FOR seconds from its start.
    time.sleep(max(0.0, t_fault + DOWN_FOR - time.monotonic()))
    arrivals.stop()
    w.check_health(before, f"FI-48 down (pending timeout {pending} s)")
    t_back = time.monotonic()
    w.openbao.switch("up")
    recover = first_good_read(w.port, w.ctx, t_back, "back", INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("recover_s", round(recover, 3))
    print(f"FI-48: detect_s {detect:.3f}, recover_s {recover:.3f}")
    # A reset: a connection OpenBao had queued but not taken when it went
    # down (its kernel resets the listener's backlog), as a crash does; or,
    # past the pending timeout, a held wrapper's end (NO_BRIDGE).
    wrappers = arrivals.finish()
    outcomes = judge(wrappers, {"200", "502", "reset"}, 0, record_property, pending)
    held_reset = [x for x in wrappers if x.outcome == "reset" and
                  x.end_at - x.start_at >= pending - 0.5]
    if pending == PENDING:
        # Held (they arrived once the bridge had said so), and served at its return.
        assert outcomes.get("200", 0) >= 1 and not held_reset, outcomes
    else:
        # Held for the pending timeout, then reset: an error, not a hang.
        assert held_reset, outcomes
        w.broker.wait_log(r"no bridge within the pending timeout: closing the wrapper "
                          r"\(NO_BRIDGE\)", timeout=MARGIN)
    w.bulk_intact()


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_FI49_openbao_refusing_connections_wrappers_get_an_error_never_a_hang(
        env, record_property, how):
    w = World(env)
    before = w.usage()
    arrivals = Arrivals(w.port, w.ctx, "refused", timeout=PENDING + MARGIN)
    w.openbao.switch(rst_at_once if how == "rst" else close_at_once)
    t_fault = time.monotonic()
    detect = detect_line(w.bridge, r"OpenBao at 127\.0\.0\.1:\d+: active -> unreachable",
                         t_fault, INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("detect_s", round(detect, 3))
    time.sleep(max(0.0, t_fault + DOWN_FOR - time.monotonic()))  # the fault's length
    arrivals.stop()
    w.check_health(before, f"FI-49 refusing ({how})")
    t_back = time.monotonic()
    w.openbao.switch("up")
    recover = first_good_read(w.port, w.ctx, t_back, "back", INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("recover_s", round(recover, 3))
    print(f"FI-49 ({how}): detect_s {detect:.3f}, recover_s {recover:.3f}")
    # Never "empty" (a clean TLS end before any byte), also for a connection
    # OpenBao read and closed without answering: that is the bridge's 502.
    allowed = {"200", "502", "reset"}
    judge(arrivals.finish(), allowed, 0, record_property)
    w.bulk_intact()


def test_FI49_openbao_closing_without_an_answer_is_a_502_or_a_reset_not_an_empty_end(env):
    w = World(env, interval=5)  # the default interval: room between two probes
    probes = w.openbao.kv.health_probes
    wait_for(lambda: w.openbao.kv.health_probes > probes, 10, "a health probe")
    w.openbao.switch(close_at_once)  # some 4 s before the next probe
    outcomes = []
    for i in range(3):
        x = Wrapper(w.port, w.ctx, f"closed{i}", timeout=MARGIN)
        x.run()
        outcomes.append(x.outcome)
    if w.bridge.count(r"-> unreachable"):
        pytest.fail("the next probe came before the wrappers were done: nothing was shown")
    print(f"OpenBao closing without an answer: wrappers got {outcomes}")
    # As when nothing listens (the 502), or a reset: an error a client sees
    # as one, never an end it may take for the server's, with no answer in it.
    assert all(o in ("502", "reset") for o in outcomes), outcomes


SLOW = 5  # seconds OpenBao takes per answer


def test_FI50_openbao_answering_slowly_every_wrapper_gets_its_whole_answer_late(
        env, record_property):
    w = World(env)
    before = w.usage()
    w.openbao.kv.answer_delay = SLOW  # the health probe is still answered at once
    arrivals = Arrivals(w.port, w.ctx, "slow", timeout=SLOW + MARGIN)
    # Wrappers keep arriving for a few seconds; all of them wait on OpenBao.
    wait_for(lambda: len(arrivals.wrappers) >= 15, 15, "15 wrappers under way")
    arrivals.stop()
    wrappers = arrivals.finish()
    w.check_health(before, "FI-50 slow")
    t_back = time.monotonic()
    w.openbao.kv.answer_delay = 0
    recover = first_good_read(w.port, w.ctx, t_back, "back", MARGIN)
    record_property("recover_s", round(recover, 3))
    outcomes = judge(wrappers, {"200"}, SLOW, record_property)
    slowest = min(x.end_at - x.start_at for x in wrappers)
    print(f"FI-50: each answer took {slowest:.2f} s at least; recover_s {recover:.3f}")
    assert outcomes == {"200": len(wrappers)}
    assert slowest >= SLOW - 0.5  # they did wait on OpenBao, not on something else
    # Slowness is not sickness: the node stayed active, nothing was logged as lost.
    assert w.bridge.count(r"-> unreachable") == 0, w.bridge.text()
    w.bulk_intact()


def test_FI50_an_openbao_that_never_answers_costs_each_wrapper_a_reset_at_a_deadline(
        env, record_property):
    """The limit of slow: requests that OpenBao never answers end at the
    bridge's --stream-idle-timeout (2 s here, 300 by default), later wrappers
    at the broker's --pending-timeout (2 s here) once the probe, unanswered
    too, says unreachable: a reset each, never a hang."""
    idle = pending = 2
    w = World(env, broker_extra=["--pending-timeout", str(pending)],
              bridge_extra=["--stream-idle-timeout", str(idle)])
    before = w.usage()
    w.openbao.switch(never_answer)
    t_fault = time.monotonic()
    arrivals = Arrivals(w.port, w.ctx, "wedged", timeout=max(idle, pending) + MARGIN)
    detect = detect_line(w.bridge, r"OpenBao at 127\.0\.0\.1:\d+: active -> unreachable",
                         t_fault, INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("detect_s", round(detect, 3))
    time.sleep(max(0.0, t_fault + DOWN_FOR - time.monotonic()))  # the fault's length
    arrivals.stop()
    w.check_health(before, "FI-50 never answering")
    t_back = time.monotonic()
    w.openbao.switch("up")
    recover = first_good_read(w.port, w.ctx, t_back, "back", INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("recover_s", round(recover, 3))
    print(f"FI-50 (never answering): detect_s {detect:.3f}, recover_s {recover:.3f}")
    wrappers = arrivals.finish()
    # The last ones were still held when it came back, and were served.
    outcomes = judge(wrappers, {"reset", "200"}, idle, record_property, pending)
    resets = [x.end_at - x.start_at for x in wrappers if x.outcome == "reset"]
    assert len(resets) >= 5, outcomes
    # Each reset came at a deadline, not before: none was cut early.
    assert min(resets) >= min(idle, pending) - 0.5, resets
    w.bulk_intact()


def test_FI51_openbao_resetting_mid_response_reaches_each_wrapper_as_a_reset(
        env, record_property):
    w = World(env)
    before = w.usage()
    w.openbao.switch(reset_mid_response)
    t_fault = time.monotonic()
    arrivals = Arrivals(w.port, w.ctx, "cut", timeout=MARGIN)
    wait_for(lambda: any(x.outcome for x in arrivals.wrappers), MARGIN, "a wrapper's end")
    first = min((x for x in arrivals.wrappers if x.outcome), key=lambda x: x.end_at)
    detect = first.end_at - t_fault
    record_property("detect_s", round(detect, 3))
    wait_for(lambda: len(arrivals.wrappers) >= 15, 15, "15 wrappers under way")
    wrappers = arrivals.finish()
    w.check_health(before, "FI-51 reset mid-response")
    t_back = time.monotonic()
    w.openbao.switch("up")
    recover = first_good_read(w.port, w.ctx, t_back, "back", MARGIN)
    record_property("recover_s", round(recover, 3))
    print(f"FI-51: detect_s {detect:.3f}, recover_s {recover:.3f}")
    outcomes = judge(wrappers, {"reset"}, 0, record_property)
    assert outcomes == {"reset": len(wrappers)}
    # Each saw part of the answer, then the reset: never a clean end.
    assert all(len(x.data.partition(b"\r\n\r\n")[2]) < 2 * HALF for x in wrappers)
    assert first.outcome == "reset" and detect < 1 + MARGIN
    w.bulk_intact()


FLAP = 1.0       # seconds up, then down, ...
FLAP_FOR = 10.0  # seconds of flapping


def test_FI52_openbao_flapping_costs_wrappers_no_hang_and_the_daemons_no_restart(
        env, record_property):
    w = World(env)
    before = w.usage()
    arrivals = Arrivals(w.port, w.ctx, "flap", timeout=PENDING + MARGIN)
    t_fault = time.monotonic()
    detect = None
    for i in range(int(FLAP_FOR / FLAP)):
        w.openbao.switch("down" if i % 2 == 0 else "up")
        # The fault's schedule: the next switch is due at t_fault + (i+1) * FLAP.
        while time.monotonic() < t_fault + (i + 1) * FLAP:
            if detect is None and w.bridge.count(r"-> unreachable"):
                detect = time.monotonic() - t_fault
            time.sleep(0.02)
    arrivals.stop()
    w.check_health(before, "FI-52 flapping")
    t_back = time.monotonic()
    w.openbao.switch("up")
    recover = first_good_read(w.port, w.ctx, t_back, "back", INTERVAL + PROBE_DEADLINE + MARGIN)
    record_property("recover_s", round(recover, 3))
    if detect is not None:
        record_property("detect_s", round(detect, 3))
    print(f"FI-52: detect_s {detect and round(detect, 3)}, recover_s {recover:.3f}, "
          f"health changes logged {w.bridge.count(r'OpenBao at .*: ')}")
    judge(arrivals.finish(), {"200", "502", "reset"}, 0, record_property)
    # One line per change of state, and at most one change per probe.
    probes = (time.monotonic() - t_fault) / INTERVAL + 2
    assert w.bridge.count(r"OpenBao at .*: ") <= probes, w.bridge.text()
    w.bulk_intact()


# ---------------------------------------------------------------- a burst while it is down
BURST = 200  # wrappers at once: within the broker's 256 per source address


def _burst_while_down(env):
    """OpenBao goes down just after a health probe (default interval, 5 s),
    and BURST plaintext wrappers arrive at once, before the next probe can
    tell: each stream reaches the bridge and finds nothing listening.
    Returns (bridge, endings, bridge log lines the burst added)."""
    up = env.kv()
    broker, bridge, _ = env.tunnel(upstream=up)  # health polled every 5 s (the default)
    bridge.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> active")
    probes = up.health_probes
    wait_for(lambda: up.health_probes > probes, 10, "a health probe")
    up.close()  # down, some 4 s before the next probe
    lines0 = len(bridge.text().splitlines())
    socks = []
    for i in range(BURST):
        s = socket.create_connection(("127.0.0.1", broker.service_port), timeout=5)
        s.sendall(f"GET /v1/secret/data/b{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    endings = {}
    for s in socks:
        try:
            e = "data" if s.recv(4096) else "eof"
        except ConnectionResetError:
            e = "reset"
        except socket.timeout:
            e = "hang"
        endings[e] = endings.get(e, 0) + 1
        s.close()
    if bridge.count(r"-> unreachable"):
        pytest.fail("the next probe came before the burst ended: nothing was shown")
    added = bridge.text().splitlines()[lines0:]
    print(f"a burst of {BURST} wrappers while OpenBao is down: {endings}; "
          f"the bridge logged {len(added)} lines, e.g. {added[:2]}")
    return bridge, endings, added


def test_FI48_a_burst_of_wrappers_while_openbao_is_down_is_reset_at_once(env):
    bridge, endings, _ = _burst_while_down(env)
    # Plaintext streams: the bridge cannot answer for OpenBao, so an RST.
    assert endings == {"reset": BURST}, endings
    assert bridge.proc.poll() is None and bridge.count(r"started tls process") == 1


def test_FI48_a_burst_of_wrappers_while_openbao_is_down_costs_the_bridge_log_a_few_lines(env):
    _, _, added = _burst_while_down(env)
    # Throttled as the codec's failures are (a line per 10 s with a count).
    assert len(added) <= 10, added[:20]
