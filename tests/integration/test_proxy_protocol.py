"""The pod's address reaches OpenBao (issue 14, docs/protocol.md §3a): with
--proxy-protocol the bridge writes a PROXY protocol v2 header before the first
byte of every connection to OpenBao. A stand-in for OpenBao parses it strictly
(tests/proxy_v2.py) and answers with what it parsed, so each wrapper sees what
OpenBao would log for it: wrappers bound to 127.0.0.2, 127.0.0.3 and ::1 show
up with their own address and port, the broker's service address, the
cluster's name and a unique id that the broker's and the bridge's logs also
carry, with wrapper TLS ending in the bridge (--service-cert) and passed
through to OpenBao (https://). Without the flag no header is sent."""
import json
import os
import re
import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest

from harness import BROKER, Daemon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy_v2 import ProxyV2Error, read_proxy_v2  # noqa: E402

SVC = "cloudtaser-broker.cloudtaser-system.svc"
CLUSTER = "test-cluster-eu"
SOURCES = ("127.0.0.2", "127.0.0.3", "::1")


class ProxyV2Standin:
    """OpenBao's listener, as far as these tests need it: with `proxy`, every
    connection must start with a valid PROXY v2 header (else it is recorded
    as an error and closed, as OpenBao would); then one HTTP request, over TLS
    when `tls=(crt, key)`, answered 200 with a JSON body of what the header
    said (and, without `proxy`, the connection's first bytes)."""

    def __init__(self, proxy, tls=None):
        self.proxy = proxy
        self.records = []
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(tls[0]), str(tls[1]))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        rec = {}
        conn.settimeout(10)
        try:
            if self.proxy:
                try:
                    rec["header"] = read_proxy_v2(conn)
                except ProxyV2Error as e:
                    rec["error"] = str(e)
                    self.records.append(rec)
                    return
            else:
                rec["first"] = conn.recv(16, socket.MSG_PEEK).hex()
            s = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 65536:
                b = s.recv(4096)
                if not b:
                    break
                req += b
            rec["request"] = req.split(b"\r\n", 1)[0].decode(errors="replace")
            self.records.append(rec)
            body = json.dumps(rec).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except (OSError, ssl.SSLError) as e:
            rec.setdefault("error", repr(e))
            self.records.append(rec)
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def start(env, proxy, passthrough, bridge_extra=()):
    """A broker listening for wrappers on [::] (both families) with
    --cluster-name, a bridge in front of the stand-in, linked."""
    upstream_tls = env.pki.issue("openbao", "serverAuth", sans=(f"DNS:{SVC}",)) \
        if passthrough else None
    up = ProxyV2Standin(proxy=proxy, tls=upstream_tls)
    env.upstreams.append(up)
    broker = Daemon([BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen", "[::]:0",
                     "--cert", env.broker_crt, "--key", env.broker_key, "--ca-cert",
                     env.pki.ca_crt, "--bridge-pin", env.bridge_pin, "--cluster-name", CLUSTER,
                     "--log-level", "debug"], env._log("broker"))
    env.daemons.append(broker)
    m = broker.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                        r"\[::\]:(\d+)")
    broker.bridge_port, broker.service_port = int(m.group(1)), int(m.group(2))
    broker.wait_log(r"\[parent\] info: ready")
    extra = ["--log-level", "debug", *bridge_extra] + (["--proxy-protocol"] if proxy else [])
    service = None if passthrough else env.pki.issue("service", "serverAuth",
                                                     sans=(f"DNS:{SVC}",))
    bridge = env.bridge(broker.bridge_port, up.addr, extra=extra, service=service)
    broker.wait_log(r"conn=\d+ bridge connected")
    bridge.wait_log(r"connected to the broker: .*\(protocol [3-9]\)")
    return broker, bridge, up


def fetch(env, broker, source):
    """One request from a wrapper bound to `source`, over TLS to the service
    name; returns (what the stand-in answered, the wrapper's own port)."""
    v6 = ":" in source
    raw = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
    raw.settimeout(10)
    raw.bind((source, 0))
    raw.connect(("::1" if v6 else "127.0.0.1", broker.service_port))
    port = raw.getsockname()[1]
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
    with ctx.wrap_socket(raw, server_hostname=SVC) as s:
        s.sendall(f"GET /v1/secret/data/x HTTP/1.1\r\nHost: {SVC}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not b:
                break
            data += b
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return json.loads(body), port


def check_header(env, broker, bridge, authority):
    uids = set()
    for src in SOURCES:
        got, port = fetch(env, broker, src)
        assert "error" not in got, got
        h = got["header"]
        assert h["command"] == "PROXY"
        assert h["family"] == ("TCP6" if ":" in src else "TCP4")
        assert (h["src"], h["src_port"]) == (src, port), f"OpenBao sees {h}, the wrapper was " \
                                                         f"{src}:{port}"
        assert (h["dst"], h["dst_port"]) == ("::1" if ":" in src else "127.0.0.1",
                                             broker.service_port)
        tlvs = h["tlvs"]
        assert tlvs.get("cluster") == CLUSTER
        assert tlvs.get("authority") == authority
        uid = tlvs["unique_id"]
        assert re.fullmatch(r"[0-9a-f]{16}", uid), uid
        uids.add(uid)
        # The same id in both daemons' lines for that stream.
        broker.wait_log(rf"uid={uid} wrapper from ")
        bridge.wait_log(rf"uid={uid} from ")
        assert got["request"].startswith("GET /v1/secret/data/x ")
    assert len(uids) == len(SOURCES), "every stream has an id of its own"


def test_service_cert_mode_openbao_sees_each_wrappers_address_cluster_and_id(env):
    broker, bridge, up = start(env, proxy=True, passthrough=False)
    check_header(env, broker, bridge, authority=SVC)
    assert all("error" not in r for r in up.records), up.records


def test_https_passthrough_the_header_precedes_the_wrappers_own_tls(env):
    broker, bridge, up = start(env, proxy=True, passthrough=True)
    # The bridge never sees the wrapper's TLS here, so no authority.
    check_header(env, broker, bridge, authority=None)
    assert all("error" not in r for r in up.records), up.records


@pytest.mark.parametrize("passthrough", [False, True], ids=["service-cert", "passthrough"])
def test_without_proxy_protocol_openbao_gets_the_wrappers_bytes_first(env, passthrough):
    broker, bridge, up = start(env, proxy=False, passthrough=passthrough)
    got, _ = fetch(env, broker, "127.0.0.2")
    first = bytes.fromhex(got["first"])
    # Plaintext HTTP after the bridge ended the wrapper's TLS, or the
    # wrapper's own ClientHello (a TLS handshake record); never a signature.
    if passthrough:
        assert first[:1] == b"\x16", first
    else:
        assert first.startswith(b"GET /v1/"), first
    assert not first.startswith(b"\r\n\r\n\x00\r\nQUIT\n")
    assert bridge.count("PROXY protocol v2 header") == 0


def test_the_strict_parser_refuses_what_the_spec_does_not_allow():
    # The stand-in is only as good as its parser: it must fail on bad input.
    def parse(b):
        a, c = socket.socketpair()
        with a, c:
            a.sendall(b)
            a.shutdown(socket.SHUT_WR)
            return read_proxy_v2(c)
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    good = sig + b"\x21\x11\x00\x0c" + bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 1, 187])
    assert parse(good)["src"] == "10.0.0.1"
    assert parse(sig + b"\x20\x00\x00\x00") == {"command": "LOCAL"}
    for bad in (b"GET / HTTP/1.1\r\n\r\n", sig + b"\x11\x11\x00\x0c" + good[16:],
                sig + b"\x22\x11\x00\x0c" + good[16:], sig + b"\x21\x12\x00\x0c" + good[16:],
                sig + b"\x21\x11\x00\x0b" + good[16:27], sig + b"\x21\x11\x00\x10" + good[16:] +
                b"\xe0\x00\x05a", sig + b"\x20\x11\x00\x0c" + good[16:], good[:20]):
        with pytest.raises(ProxyV2Error):
            parse(bad)


V2_BROKER = os.environ.get("CT_V2_BROKER")


@pytest.mark.skipif(not V2_BROKER, reason="set CT_V2_BROKER to a broker that speaks protocol 2 at most "
                    "(built before version 3; its -forward beside it)")
def test_a_broker_too_old_for_the_origin_still_works_with_local_headers_and_one_line(env):
    # docs/protocol.md §2: a version 2 broker sends empty OPENs. The bridge
    # says so once when the link comes up, and OpenBao gets the LOCAL command
    # (it sees the bridge's own address), not a refused connection.
    up = ProxyV2Standin(proxy=True)
    env.upstreams.append(up)
    broker = Daemon([V2_BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen",
                     "127.0.0.1:0", "--cert", env.broker_crt, "--key", env.broker_key,
                     "--ca-cert", env.pki.ca_crt, "--bridge-pin", env.bridge_pin],
                    env._log("old-broker"))
    env.daemons.append(broker)
    m = broker.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                        r"127\.0\.0\.1:(\d+)")
    broker.bridge_port, broker.service_port = int(m.group(1)), int(m.group(2))
    service = env.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
    bridge = env.bridge(broker.bridge_port, up.addr, extra=["--proxy-protocol"], service=service)
    bridge.wait_log(r"connected to the broker: .*\(protocol 2\)")
    bridge.wait_log(r"too old to say who connected")
    for _ in range(3):
        got, _ = fetch(env, broker, "127.0.0.2")
        assert got["header"] == {"command": "LOCAL"}, got
    assert bridge.count("too old to say who connected") == 1


def _stop_the_restarted_child(daemon, role, tries=10):
    """Kills `daemon`'s `role` child and stops its successor before that one has
    taken its data channel (it holds no eventfd yet: the PEER_WAKE that comes
    first is still in its control socket, so it has sent no HELLO), while its
    sibling already holds the new channel. Returns the stopped pid; the caller
    sends SIGCONT. A successor caught too late is let go and the kill repeated,
    at most `tries` times: this is the window the test is about, so never
    reaching it fails the test rather than passing it unexercised."""
    import signal
    import time
    for _ in range(tries):
        old = daemon.children()[role]
        os.kill(old, signal.SIGKILL)
        new = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: 10 s, a restart takes < 1 s
            new = daemon.children().get(role)
            if new and new != old:
                break
            new = None
        assert new, f"no new {role} process within 10 s"
        os.kill(new, signal.SIGSTOP)
        fds = []
        for f in Path(f"/proc/{new}/fd").iterdir():
            try:
                fds.append(os.readlink(f))
            except OSError:
                pass
        if not any("eventfd" in x for x in fds):
            return new
        os.kill(new, signal.SIGCONT)
        time.sleep(0.3)  # let it settle before the next kill (not a synchronisation)
    raise AssertionError(f"the new {role} process was never caught before its data channel "
                         f"in {tries} tries")


def _fetch_during(env, broker, pid):
    """A wrapper from 127.0.0.2 connects while `pid` is stopped; once its TCP
    connection is up (in the listener's queue at least), `pid` goes on."""
    import signal
    import time
    result = {}

    def run():
        try:
            result["got"] = fetch(env, broker, "127.0.0.2")
        except (AssertionError, OSError, ssl.SSLError) as e:
            result["error"] = repr(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    # Its connect() is complete in the kernel whether or not anyone accepts;
    # half a second more lets a forwarding process that would accept do so.
    time.sleep(0.5)
    os.kill(pid, signal.SIGCONT)
    t.join(30)
    assert not t.is_alive(), "the wrapper hung"
    return result


def test_a_wrapper_arriving_before_a_restarted_broker_tls_process_is_ready_keeps_its_origin(env):
    # docs/protocol.md §3a: an OPEN sent before the peer's HELLO carries no
    # origin. The broker's forwarding process gets its new data channel while
    # the restarted TLS process is still starting; a wrapper it accepted then
    # would reach OpenBao as the bridge itself (PROXY LOCAL). It accepts only
    # once the channel's HELLO is in: the wrapper waits in the listen queue.
    broker, bridge, up = start(env, proxy=True, passthrough=False)
    check_header(env, broker, bridge, authority=SVC)
    pid = _stop_the_restarted_child(broker, "tls")
    r = _fetch_during(env, broker, pid)
    assert "got" in r, r
    got, port = r["got"]
    assert got["header"].get("command") == "PROXY", got
    assert (got["header"]["src"], got["header"]["src_port"]) == ("127.0.0.2", port), got
    assert all(rec.get("header", {}).get("command") != "LOCAL" for rec in up.records), up.records


def test_a_stream_reaching_a_restarted_bridge_forwarding_process_too_early_is_refused_not_local(env):
    # The bridge's side of the same window (d96f551): its TLS process holds
    # the link while the forwarding process restarts; a stream for which it
    # could not pass the origin on is refused, never sent as the bridge's own.
    broker, bridge, up = start(env, proxy=True, passthrough=False)
    check_header(env, broker, bridge, authority=SVC)
    n = len(up.records)
    pid = _stop_the_restarted_child(bridge, "forward")
    r = _fetch_during(env, broker, pid)
    if "got" in r:  # served after the forwarding process's HELLO: with its origin
        got, port = r["got"]
        assert (got["header"].get("src"), got["header"].get("src_port")) == ("127.0.0.2", port)
    assert all(rec.get("header", {}).get("command") != "LOCAL" for rec in up.records[n:]), \
        up.records[n:]
    # And the bridge serves again once the new process has sent its HELLO (a
    # wrapper in between is refused, as above): bounded, 10 s.
    import time
    deadline = time.monotonic() + 10
    while True:
        try:
            fetch(env, broker, "127.0.0.2")
            break
        except (AssertionError, OSError, ssl.SSLError):
            assert time.monotonic() < deadline, "the bridge did not serve again within 10 s"
            time.sleep(0.05)
    check_header(env, broker, bridge, authority=SVC)
