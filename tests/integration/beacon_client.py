"""A broker's or a bridge's side of the rendezvous protocol, by hand, for the
beacon's integration tests: the outer TLS 1.3 session with ALPN
cloudtaser-beacon/1, the preamble and the answers, their bytes written here
from docs/beacon.md §2 (not taken from the C++ codec), and the beacon daemon
itself with its own throwaway CA.
"""
import os
import re
import socket
import ssl
import struct
import urllib.error
import urllib.request

from harness import BUILD, Daemon, Pki, wait_for

BEACON = BUILD / "cloudtaser-beacon"
ALPN = "cloudtaser-beacon/1"

# Roles and answer codes (docs/beacon.md §2).
BROKER, BRIDGE = 1, 2
PAIRED, KEEPALIVE, BAD_PREAMBLE, NO_PEER, OVER_CAPACITY, SHUTDOWN = range(6)
ANSWER_NAMES = ["PAIRED", "KEEPALIVE", "BAD_PREAMBLE", "NO_PEER", "OVER_CAPACITY", "SHUTDOWN"]


def rid(tag: str) -> bytes:
    """A 32-byte rendezvous id (any 32 bytes do for the beacon)."""
    return (tag.encode() * 32)[:32]


def instance(n: int) -> bytes:
    return bytes([n]) * 16


def preamble(role, rendezvous_id, instances=()):
    """magic CTBP | version 1 | role | flags 0 | count n | id (32) | n x instance (16)."""
    return (b"CTBP" + bytes([1, role, 0, len(instances)]) + rendezvous_id +
            b"".join(instances))


class Client:
    """One connection to the beacon: outer TLS, then raw bytes."""

    def __init__(self, port, ca, alpn=True, cert=None, timeout=10, source=None):
        """`source`: the local address to connect from (e.g. 127.0.0.2, another source)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(str(ca))
        if alpn:
            ctx.set_alpn_protocols([ALPN])
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        # As the daemons do: a preamble must not wait behind Nagle for the ACK of Finished.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")

    def send(self, data):
        self.s.sendall(data)

    def read_exact(self, n):
        """Exactly n bytes; EOFError when the session ends first."""
        out = bytearray()
        while len(out) < n:
            b = self.s.recv(min(n - len(out), 1 << 20))
            if not b:
                raise EOFError(f"session ended after {len(out)} of {n} bytes")
            out += b
        return bytes(out)

    def answer(self):
        """One answer: (code, reason). Fixed 8 bytes, then exactly the reason."""
        magic, version, code, rlen = struct.unpack(">4sBBH", self.read_exact(8))
        assert magic == b"CTBA" and version == 1, (magic, version)
        assert code <= SHUTDOWN and rlen <= 200, (code, rlen)
        reason = self.read_exact(rlen).decode("ascii")
        assert all(0x20 <= ord(ch) < 0x7f for ch in reason), reason
        return code, reason

    def answer_skipping_keepalives(self, limit=8):
        for _ in range(limit):
            code, reason = self.answer()
            if code != KEEPALIVE:
                return code, reason
        raise AssertionError(f"{limit} KEEPALIVEs and nothing else")

    def at_eof(self):
        """The beacon ended the session: close_notify, EOF or a reset (no more bytes)."""
        try:
            return self.s.recv(1) == b""
        except (ssl.SSLError, ConnectionResetError):
            return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Beacon(Daemon):
    """cloudtaser-beacon on loopback with its own CA and certificate."""

    def __init__(self, tmp, extra=(), client_ca=False, listen_port=0, reuse=None):
        """`reuse`: another Beacon whose CA and certificate this one serves (a restart);
        `listen_port`: a fixed port (0: any free one)."""
        if reuse is not None:
            self.pki, self.crt, self.key, self.ca = reuse.pki, reuse.crt, reuse.key, reuse.ca
        else:
            self.pki = Pki(tmp / "beacon-pki")
            self.crt, self.key = self.pki.issue("beacon", "serverAuth")
            self.ca = self.pki.ca_crt
        argv = [BEACON, "--listen", f"127.0.0.1:{listen_port}", "--cert", self.crt, "--key",
                self.key, "--metrics-listen", "127.0.0.1:0", *extra]
        if client_ca:
            argv += ["--client-ca", self.ca]
        n = 1
        while (tmp / f"beacon-{n}.log").exists():
            n += 1
        super().__init__(argv, tmp / f"beacon-{n}.log")
        self.port = int(self.wait_log(r"listening for brokers and bridges on "
                                      r"127\.0\.0\.1:(\d+)").group(1))
        self.metrics_port = int(self.wait_log(r"serving metrics on 127\.0\.0\.1:(\d+)").group(1))
        self.wait_log(r"\[parent\] info: ready")

    def client(self, **kw):
        return Client(self.port, self.ca, **kw)

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as r:
                return r.read().decode()
        except (OSError, urllib.error.URLError):
            return ""

    def metric(self, name, labels=""):
        sel = "{" + labels + "}" if labels else ""
        m = re.search(rf"^{re.escape(name + sel)} (\d+)$", self.metrics(), re.M)
        return int(m.group(1)) if m else None

    def wait_metric(self, name, labels, value, timeout=10):
        """The TLS process sends its figures once a second: wait for them."""
        return wait_for(lambda: self.metric(name, labels) == value, timeout,
                        f"{name}{{{labels}}} == {value}")

    def waiting(self, role):
        return self.metric("cloudtaser_beacon_waiting", f'role="{role}"')
