"""cloudtaser-beacon (docs/beacon.md): pairing, relaying, refusals, drain,
restart and sandbox, with hand-written rendezvous clients on loopback
(beacon_client.py). One behaviour per test, each with its own beacon and CA.
"""
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from beacon_client import (BAD_PREAMBLE, BEACON, BRIDGE, BROKER, KEEPALIVE, NO_PEER, OVER_CAPACITY,
                           PAIRED, SHUTDOWN, Beacon, Client, instance, preamble, rid)
from harness import SANITIZER_BUILD as ASAN, Pki, http_get, wait_for

# Short pairing timeout and keepalive interval so that the tests are quick.
FAST = ["--pairing-timeout", "1", "--keepalive-interval", "1"]


@pytest.fixture
def beacon(tmp_path):
    started = []

    def start(extra=(), client_ca=False):
        b = Beacon(tmp_path, extra=extra, client_ca=client_ca)
        started.append(b)
        return b
    yield start
    for b in started:
        b.kill()


def connect(b, role, tag, instances=(), **kw):
    c = b.client(**kw)
    c.send(preamble(role, rid(tag), instances))
    return c


def pair(b, tag="pair", broker_instance=1):
    """A waiting broker connection and a bridge that pairs with it; both read PAIRED."""
    br = connect(b, BROKER, tag, [instance(broker_instance)])
    bg = connect(b, BRIDGE, tag)
    assert bg.answer() == (PAIRED, "")
    assert br.answer_skipping_keepalives() == (PAIRED, "")
    return br, bg


def relay(src, dst, n):
    """n random bytes from src to dst (read on a thread of its own); their sha256 both ends."""
    data = os.urandom(n)
    got = {}

    def reader():
        got["digest"] = hashlib.sha256(dst.read_exact(n)).hexdigest()
    t = threading.Thread(target=reader)
    t.start()
    for i in range(0, n, 1 << 16):
        src.send(data[i:i + (1 << 16)])
    t.join(timeout=60)
    assert not t.is_alive(), "the relayed bytes did not all arrive within 60 s"
    return hashlib.sha256(data).hexdigest(), got["digest"]


def tls_pid(b, old=None):
    return wait_for(lambda: (b.children().get("tls") not in (None, old)) and b.children()["tls"],
                    15, "a TLS process")


# ---------------------------------------------------------------- pairing and relaying
def test_a_broker_and_a_bridge_of_one_id_are_paired_and_8_mib_pass_both_ways_unchanged(beacon):
    b = beacon()
    br, bg = pair(b)
    sent, received = relay(br, bg, 8 << 20)
    assert sent == received
    sent, received = relay(bg, br, 8 << 20)
    assert sent == received
    # One side's end (close_notify) ends the other's session.
    br.s.unwrap()
    assert bg.at_eof()
    b.wait_metric("cloudtaser_beacon_pairs_total", "", 1)
    b.wait_metric("cloudtaser_beacon_pairs_active", "", 0)
    assert b.metric("cloudtaser_beacon_bytes_relayed_total",
                    'direction="broker_to_bridge"') == 8 << 20
    assert b.metric("cloudtaser_beacon_bytes_relayed_total",
                    'direction="bridge_to_broker"') == 8 << 20
    assert b.metric("cloudtaser_beacon_answers_total", 'code="PAIRED"') == 2


def inner_tls(outer, ctx, server, work, result):
    """A TLS session inside `outer`'s session (the link's, as the broker and the
    bridge run it through the beacon): memory BIOs pumped over the outer socket."""
    rd, wr = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(rd, wr, server_side=server,
                       server_hostname=None if server else "localhost")

    def run(op):
        for _ in range(10000):  # bounded: each turn moves at least one record or ends
            try:
                return op()
            except ssl.SSLWantReadError:
                if wr.pending:
                    outer.send(wr.read())
                data = outer.s.recv(65536)
                if not data:
                    rd.write_eof()
                rd.write(data)
            finally:
                if wr.pending:
                    outer.send(wr.read())
        raise AssertionError("inner session made no progress")
    try:
        run(obj.do_handshake)
        result["value"] = work(obj, run)
    except Exception as e:  # reported to the test's thread
        result["error"] = e


def test_the_inner_mutual_tls_runs_end_to_end_and_its_close_reaches_the_other_side(beacon,
                                                                                     tmp_path):
    b = beacon()
    link = Pki(tmp_path / "link-pki", name="link")
    broker_crt, broker_key = link.issue("broker", "serverAuth")
    bridge_crt, bridge_key = link.issue("bridge", "clientAuth")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sctx.load_cert_chain(str(broker_crt), str(broker_key))
    sctx.load_verify_locations(str(link.ca_crt))
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cctx.load_cert_chain(str(bridge_crt), str(bridge_key))
    cctx.load_verify_locations(str(link.ca_crt))
    br, bg = pair(b, tag="inner")

    def broker_side(obj, run):
        # The broker (inner server) sees the bridge's certificate, answers, and closes.
        peer = obj.getpeercert()["subject"]
        assert run(lambda: obj.read(5)) == b"hello"
        run(lambda: obj.write(b"canary-secret"))

        def close_notify():  # one way: sent, not waited for
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
        run(close_notify)
        return peer

    def bridge_side(obj, run):
        run(lambda: obj.write(b"hello"))
        got = run(lambda: obj.read(13))
        try:  # then the broker's close_notify: the end, as on a direct link
            end = run(lambda: obj.read(1))
        except ssl.SSLZeroReturnError:
            end = b""
        return got, end
    rb, rg = {}, {}
    threads = [threading.Thread(target=inner_tls, args=(br, sctx, True, broker_side, rb)),
               threading.Thread(target=inner_tls, args=(bg, cctx, False, bridge_side, rg))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive(), "inner sessions did not finish within 20 s"
    assert "error" not in rb and "error" not in rg, (rb, rg)
    assert ((("commonName", "bridge"),)) in rb["value"]
    assert rg["value"] == (b"canary-secret", b"")


def test_two_bridges_of_one_id_are_not_paired_with_each_other(beacon):
    b = beacon(FAST)
    one = connect(b, BRIDGE, "same")
    two = connect(b, BRIDGE, "same")
    assert one.answer()[0] == NO_PEER
    assert two.answer()[0] == NO_PEER
    assert b.metric("cloudtaser_beacon_pairs_total") == 0


def test_two_brokers_of_one_id_are_not_paired_with_each_other(beacon):
    b = beacon(FAST)
    one = connect(b, BROKER, "same", [instance(1)])
    two = connect(b, BROKER, "same", [instance(2)])
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 2)
    # Only keepalives come while they wait, never PAIRED.
    for c in (one, two):
        assert c.answer()[0] == KEEPALIVE


def test_a_bridge_excluding_the_only_waiting_broker_gets_no_peer_after_the_timeout(beacon):
    b = beacon(FAST)
    br = connect(b, BROKER, "ex", [instance(7)])
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 1)
    started = time.monotonic()
    bg = connect(b, BRIDGE, "ex", [instance(7)])
    code, reason = bg.answer()
    assert code == NO_PEER and reason
    assert 0.5 <= time.monotonic() - started < 5
    assert bg.at_eof()
    # The broker was left waiting: a bridge that does not exclude it pairs with it.
    other = connect(b, BRIDGE, "ex", [instance(8)])
    assert other.answer() == (PAIRED, "")
    assert br.answer_skipping_keepalives() == (PAIRED, "")


def test_connections_of_different_ids_never_pair(beacon):
    b = beacon(FAST)
    br = connect(b, BROKER, "one", [instance(1)])
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 1)
    bg = connect(b, BRIDGE, "two")
    assert bg.answer()[0] == NO_PEER
    assert b.metric("cloudtaser_beacon_pairs_total") == 0
    assert br.answer() == (KEEPALIVE, "")  # still waiting, unpaired


def test_a_side_that_does_not_read_slows_only_its_own_pair(beacon):
    b = beacon()
    slow_br, slow_bg = pair(b, tag="slow")
    data = os.urandom(32 << 20)
    # The slow pair's bridge reads nothing: the broker's writes stop once the
    # beacon's 256 KiB and the kernels' buffers are full, far short of 32 MiB.
    slow_br.s.settimeout(1.0)
    sent = 0
    try:
        while sent < len(data):
            sent += slow_br.s.send(data[sent:sent + (1 << 16)])
    except (TimeoutError, ssl.SSLWantWriteError):
        pass
    assert sent < len(data), "32 MiB went into a pair whose receiver does not read"
    # Meanwhile another pair relays at full speed.
    fast_br, fast_bg = pair(b, tag="fast", broker_instance=2)
    a, z = relay(fast_br, fast_bg, 4 << 20)
    assert a == z
    # Nothing of the slow pair was lost: once its bridge reads, every byte arrives.
    got = slow_bg.read_exact(sent)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data[:sent]).digest()


def test_a_certificate_reloaded_on_sighup_serves_new_connections_and_keeps_live_pairs(beacon):
    b = beacon()
    br, bg = pair(b, tag="reload")
    new_crt, new_key = b.pki.issue("beacon-next", "serverAuth")
    Path(b.crt).write_bytes(Path(new_crt).read_bytes())
    Path(b.key).write_bytes(Path(new_key).read_bytes())
    b.signal(signal.SIGHUP)
    b.wait_log(r"reload: new certificate material in service")
    c = b.client()
    der = c.s.getpeercert(binary_form=True)
    assert ssl.DER_cert_to_PEM_cert(der).split() == Path(new_crt).read_text().split()
    c.close()
    a, z = relay(br, bg, 1 << 20)
    assert a == z


# ---------------------------------------------------------------- refusals
def test_a_malformed_preamble_gets_bad_preamble_with_a_reason(beacon):
    b = beacon()
    c = b.client()
    c.send(b"XXXX" + bytes([1, BROKER, 0, 1]) + rid("bad") + instance(1))
    code, reason = c.answer()
    assert code == BAD_PREAMBLE and "magic" in reason
    assert c.at_eof()
    # A broker naming no instance is malformed too.
    c = b.client()
    c.send(preamble(BROKER, rid("bad")))
    code, reason = c.answer()
    assert code == BAD_PREAMBLE and reason
    b.wait_metric("cloudtaser_beacon_connections_refused_total", 'reason="bad_preamble"', 2)


def test_a_byte_before_paired_closes_the_connection_with_a_reason(beacon):
    b = beacon()
    c = connect(b, BROKER, "early", [instance(1)])
    c.send(b"x")
    assert c.answer_skipping_keepalives() == (BAD_PREAMBLE, "spoke before PAIRED")
    assert c.at_eof()
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 0)
    # Sent in one write with the preamble, it is refused the same way.
    c = b.client()
    c.send(preamble(BROKER, rid("early"), [instance(2)]) + b"y")
    assert c.answer() == (BAD_PREAMBLE, "spoke before PAIRED")


def test_a_preamble_not_complete_within_5_s_gets_bad_preamble(beacon):
    b = beacon()
    c = b.client()
    c.send(preamble(BROKER, rid("slow"), [instance(1)])[:10])
    started = time.monotonic()
    code, reason = c.answer()
    assert code == BAD_PREAMBLE and "5 s" in reason
    assert 4 <= time.monotonic() - started < 8
    assert c.at_eof()


def test_a_client_without_alpn_is_refused(beacon):
    b = beacon()
    with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
        b.client(alpn=False)
    b.wait_metric("cloudtaser_beacon_connections_refused_total", 'reason="handshake"', 1)
    # With ALPN the same beacon serves.
    br, bg = pair(b)


def test_with_client_ca_a_client_without_a_certificate_is_refused(beacon, tmp_path):
    b = beacon(client_ca=True)
    c = b.client()  # TLS 1.3: the client's handshake ends before the beacon checks
    with pytest.raises((ssl.SSLError, EOFError, ConnectionResetError)):
        c.send(preamble(BRIDGE, rid("ca")))
        c.answer()
    b.wait_metric("cloudtaser_beacon_connections_refused_total", 'reason="handshake"', 1)
    # Certificates of the client CA are admitted, both roles.
    crt, key = b.pki.issue("beacon-client", "clientAuth")
    br = connect(b, BROKER, "ca", [instance(1)], cert=(crt, key))
    bg = connect(b, BRIDGE, "ca", cert=(crt, key))
    assert bg.answer() == (PAIRED, "")
    assert br.answer_skipping_keepalives() == (PAIRED, "")


def test_waiting_connections_beyond_the_per_id_cap_get_over_capacity(beacon):
    b = beacon(["--max-waiting-per-id", "2"])
    keep = [connect(b, BROKER, "cap", [instance(i)]) for i in (1, 2)]
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 2)
    third = connect(b, BROKER, "cap", [instance(3)])
    code, reason = third.answer()
    assert code == OVER_CAPACITY and "too many waiting broker" in reason
    # Another id has room of its own.
    other = connect(b, BROKER, "cap2", [instance(4)])
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 3)
    assert len(keep) == 2 and other


def test_connections_beyond_the_per_source_cap_get_over_capacity(beacon):
    b = beacon(["--max-conns-per-source", "2"])
    keep = [connect(b, BROKER, "src", [instance(i)]) for i in (1, 2)]
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 2)
    c = b.client()
    code, reason = c.answer()
    assert code == OVER_CAPACITY and "address" in reason
    assert len(keep) == 2


def test_a_waiting_broker_gets_keepalives(beacon):
    b = beacon(["--keepalive-interval", "1"])
    c = connect(b, BROKER, "ka", [instance(1)])
    started = time.monotonic()
    assert c.answer() == (KEEPALIVE, "")
    assert c.answer() == (KEEPALIVE, "")
    assert time.monotonic() - started < 5
    # Still waiting, still pairable.
    bg = connect(b, BRIDGE, "ka")
    assert bg.answer() == (PAIRED, "")
    assert c.answer_skipping_keepalives() == (PAIRED, "")


@pytest.mark.skipif(ASAN, reason="sanitizer build: RSS is ASan's, not the beacon's")
def test_waiting_connections_cost_the_tls_process_little_memory(beacon):
    b = beacon(["--max-waiting-per-source", "1000"])
    pid = b.children()["tls"]

    def rss_kib():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    before = rss_kib()
    # 10 ids x 60 brokers, under the per-id cap of 64: all 600 wait.
    conns = [connect(b, BROKER, f"mem{i % 10}", [instance(i // 10 + 1)]) for i in range(600)]
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 600, timeout=20)
    per_conn = (rss_kib() - before) / len(conns)
    # Measured at about 21 KiB each (OpenSSL's session and our state; the
    # read-ahead buffer is allocated but barely touched by a silent client),
    # so the 4096 waiting connections of docs/beacon.md §3 fit in ~100 MiB.
    assert per_conn < 40, f"{per_conn:.1f} KiB per waiting connection"


def test_a_thousand_unpaired_connections_from_one_source_are_capped_and_cost_bounded_memory(
        beacon):
    import resource
    import select
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    b = beacon()
    pid = b.children()["tls"]

    def rss_kib():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    before = rss_kib()
    # A thousand waiting brokers, each of an id of its own (so no per-id cap applies),
    # all from 127.0.0.1: 256 wait (whichever preambles arrive first), every later one
    # is told why and closed.
    conns = [connect(b, BROKER, f"flood{i:04d}", [instance(1)]) for i in range(1000)]
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 256, timeout=20)
    b.wait_metric("cloudtaser_beacon_connections_refused_total", 'reason="over_capacity"', 744,
                  timeout=20)
    answered = []
    for c in conns:
        # A refused connection has its answer to read; a waiting one has nothing (its
        # first KEEPALIVE is 25 s away).
        # poll, not select: with a thousand sockets open, fds pass 1024.
        p = select.poll()
        p.register(c.s, select.POLLIN)
        if p.poll(0) or c.s.pending():
            answered.append(c.answer())
            c.close()
    assert len(answered) == 744
    assert all(code == OVER_CAPACITY and "from this source (256)" in reason
               for code, reason in answered), answered[:3]
    # All thousand held a TLS session at once before the refusals: the bound is the
    # per-source connection cap (1024) times what one costs (about 21 KiB, measured in
    # test_waiting_connections_cost_the_tls_process_little_memory), never more.
    grown = rss_kib() - before
    assert ASAN or grown < 1000 * 40, f"the TLS process grew {grown} KiB"
    # Another source still pairs.
    br = connect(b, BROKER, "real", [instance(1)], source="127.0.0.2")
    bg = connect(b, BRIDGE, "real", source="127.0.0.3")
    assert bg.answer() == (PAIRED, "")
    assert br.answer_skipping_keepalives() == (PAIRED, "")


# ---------------------------------------------------------------- lifecycle
def test_sigterm_sends_shutdown_to_waiting_connections_and_lets_a_live_pair_finish(beacon):
    b = beacon(["--drain-timeout", "20"])
    br, bg = pair(b)
    waiting = connect(b, BROKER, "drain", [instance(2)])
    b.wait_metric("cloudtaser_beacon_waiting", 'role="broker"', 1)
    b.signal(signal.SIGTERM)
    code, reason = waiting.answer()
    assert code == SHUTDOWN and reason
    assert waiting.at_eof()
    waiting.close()
    # The port is closed: clients go to the next beacon of their order at once.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", b.port), timeout=5).close()
    # The pair still relays while the beacon drains.
    sent, received = relay(br, bg, 1 << 20)
    assert sent == received
    assert b.proc.poll() is None
    # Its end is the beacon's: exit 0 well before the drain timeout.
    started = time.monotonic()
    br.s.unwrap().close()
    assert bg.at_eof()
    bg.close()
    assert b.wait_exit(15) == 0
    assert time.monotonic() - started < 10


def test_kill_9_of_the_tls_process_is_restarted_and_new_pairs_work(beacon):
    b = beacon()
    old_br, old_bg = pair(b, tag="before")
    old = tls_pid(b)
    os.kill(old, signal.SIGKILL)
    # Its connections die with it; the sides redial.
    assert old_br.at_eof() and old_bg.at_eof()
    new = tls_pid(b, old)
    assert new != old
    b.wait_log(r"(?s)killed by signal 9.*certificate material loaded")

    def paired():
        try:
            br, bg = pair(b, tag="again")
            return br, bg
        except (OSError, EOFError):
            return None
    br, bg = wait_for(paired, 15, "a pair through the restarted TLS process", interval=0.2)
    sent, received = relay(bg, br, 1 << 20)
    assert sent == received


def test_the_tls_process_runs_with_seccomp_and_no_capabilities(beacon):
    b = beacon()
    pids = wait_for(lambda: len(b.children()) == 2 and b.children(), 10, "both children")

    def status(role):
        text = Path(f"/proc/{pids[role]}/status").read_text()
        return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    # A child is listed from its exec; it enters its sandbox once it has its
    # settings (a make test under load saw the forwarding process before).
    wait_for(lambda: all(status(r)["Seccomp"].strip() == "2" for r in ("tls", "forward")), 10,
             "both children in seccomp filter mode")
    for role in ("tls", "forward"):
        fields = status(role)
        assert fields["Seccomp"].strip() == "2", role
        assert fields["NoNewPrivs"].strip() == "1", role
        for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 0, (role, cap)


@pytest.mark.parametrize("process", ["tls", "forward"])
@pytest.mark.parametrize("call", ["execve", "openat", "socket", "connect", "fork", "ptrace"])
def test_a_forbidden_call_kills_a_beacon_child_with_sigsys(process, call):
    if ASAN:
        pytest.skip("sanitizer build: sandbox in log mode")
    r = subprocess.run([str(BEACON), "--sandbox-probe", process, call], capture_output=True,
                       timeout=10)
    assert r.returncode == -signal.SIGSYS, (process, call, r.returncode, r.stderr)


def test_metrics_and_readiness_are_served_without_the_key(beacon):
    b = beacon()
    wait_for(lambda: http_get(b.metrics_port, "/readyz") == (200, b"ready\n"), 5, "ready")
    assert http_get(b.metrics_port, "/healthz") == (200, b"ok\n")
    text = b.metrics()
    assert "cloudtaser_beacon_connections_accepted_total" in text
    # The process serving HTTP maps no OpenSSL.
    fwd = b.children()["forward"]
    maps = Path(f"/proc/{fwd}/maps").read_text()
    assert "libssl" not in maps and "libcrypto" not in maps


# ---------------------------------------------------------------- command line
def test_bad_flags_and_files_stop_the_beacon_with_one_line_and_exit_2(tmp_path):
    pki = Pki(tmp_path / "pki")
    crt, key = pki.issue("beacon", "serverAuth")
    other_crt, other_key = pki.issue("other", "serverAuth")
    base = [str(BEACON), "--listen", "127.0.0.1:0"]
    cases = [
        ([*base, "--cert", crt, "--key", other_key], "private key does not match"),
        ([*base, "--cert", crt, "--key", key, "--client-ca", other_crt], "not a CA"),
        ([*base, "--cert", crt, "--key", key, "--pairing-timeout", "0"], "bad --pairing-timeout"),
        ([*base, "--cert", crt, "--key", key, "--max-waiting-per-id", "x"],
         "bad --max-waiting-per-id"),
        ([*base, "--key", key], "missing required flag --cert"),
    ]
    for argv, expect in cases:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2, (argv, r.returncode, r.stderr)
        assert expect in r.stderr, (argv, r.stderr)


def test_metrics_give_the_beacons_certificate_not_after_with_its_pin_and_the_client_ca(beacon):
    import re as _re
    from harness import not_after_of, pin_of
    b = beacon(client_ca=True)
    name = "cloudtaser_beacon_certificate_not_after_timestamp_seconds"

    def value(labels):
        m = _re.search(rf"^{name}\{{{_re.escape(labels)}\}} (\d+)$", b.metrics(), _re.M)
        return int(m.group(1)) if m else None
    wait_for(lambda: value(f'certificate="leaf",index="0",pin="{pin_of(b.crt)}"') is not None, 5,
             "the beacon's leaf in /metrics")
    assert value(f'certificate="leaf",index="0",pin="{pin_of(b.crt)}"') == not_after_of(b.crt)
    assert value('certificate="ca",index="0"') == not_after_of(b.ca)
    assert "cloudtaser_beacon_pins_configured" not in b.metrics()  # a blind relay pins nothing
