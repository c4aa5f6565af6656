"""Beacon mode across three hosts that accept no inbound connection (issue 13): three network
namespaces this test creates, joined by veth pairs whose addresses exist only inside them,

    [cluster] 10.252.1.2 --- 10.252.1.1 [relay] 10.252.2.1 --- 10.252.2.2 [vault]
    broker, wrappers           cloudtaser-beacon :443          vault-bridge, OpenBao stand-in

The relay does not route between its two links. The cluster and the vault host drop every
inbound packet but established replies (nftables, input policy drop) and send nothing but
to the relay's port 443 (output policy drop), so the only way between them is the beacon.
A wrapper in the cluster reads a secret, a 256 MiB body arrives with its sha256, and 100
wrappers at once each read their own secret; and the drop is real: a listener on the vault
host is unreachable from the relay.
"""
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import uuid

import pytest

from beacon_world import pairing_key
from beacon_client import BEACON
from harness import BRIDGE, BROKER, Daemon, Pki, pin_of

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft")),
    reason="needs root, iproute2 and nft for namespaces and their firewalls")

CLUSTER_IP, RELAY_C, RELAY_V, VAULT_IP = "10.252.1.2", "10.252.1.1", "10.252.2.1", "10.252.2.2"
TOKEN = "s.beacon-" + uuid.uuid4().hex[:8]

# OpenBao's KV read path and health, and /bytes/N (a deterministic body), on loopback.
UPSTREAM = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
CHUNK = bytes(range(256)) * 256
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/v1/sys/health":
            body = b'{"initialized":true,"sealed":false,"standby":false}'
        elif self.path.startswith("/bytes/"):
            n = int(self.path[7:])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                self.wfile.write(CHUNK[:min(n, len(CHUNK))])
                n -= min(n, len(CHUNK))
            return
        elif self.path.startswith("/v1/secret/data/"):
            name = self.path.rsplit("/", 1)[1]
            body = json.dumps({"data": {"data": {"password": "s3cr3t-" + name}}}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", 8200), H)
print("upstream ready", flush=True)
srv.serve_forever()
"""

# In the cluster: N wrappers at once, each GET of `path % i`; prints one line per
# wrapper: its index, the status, the body's length and sha256.
WRAPPERS = r"""
import hashlib, http.client, sys, threading
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = [None] * n
def one(i):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", path % i if "%" in path else path)
        r = c.getresponse()
        body = r.read()
        out[i] = f"{i} {r.status} {len(body)} {hashlib.sha256(body).hexdigest()} {body[:200]!r}"
    except Exception as e:
        out[i] = f"{i} ERR {e!r}"
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join(300)
print("\n".join(o or "timeout" for o in out))
"""

# One connection attempt; prints "connected" or the error.
PROBE = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except Exception as e:
    print(type(e).__name__)
"""

# A listener that accepts for as long as it lives (the target of the drop test).
LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def no_inbound(ns, relay_ip):
    """The host's firewall: nothing in but replies, nothing out but the relay's 443."""
    rules = f"""
table inet lock {{
  chain input {{ type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
  }}
  chain output {{ type filter hook output priority 0; policy drop;
    oif lo accept
    ct state established,related accept
    ip daddr {relay_ip} tcp dport 443 accept
  }}
}}
"""
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True,
                   check=True, capture_output=True)


class Hosts:
    def __init__(self, tmp):
        self.tmp = tmp
        tag = uuid.uuid4().hex[:6]
        self.ns = {h: f"ctb-{tag}-{h}" for h in ("cluster", "relay", "vault")}
        self.made, self.daemons = [], []

    def up(self):
        for ns in self.ns.values():
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        r = self.ns["relay"]
        for name, peer, relay_ip, ip in (("c", "cluster", RELAY_C, CLUSTER_IP),
                                         ("v", "vault", RELAY_V, VAULT_IP)):
            # Made inside the relay's namespace, the peer moved straight into the host's:
            # no interface ever exists in this machine's own namespace.
            run("ip", "-n", r, "link", "add", f"r{name}", "type", "veth", "peer", "name",
                f"h{name}", "netns", self.ns[peer])
            run("ip", "-n", r, "addr", "add", f"{relay_ip}/24", "dev", f"r{name}")
            run("ip", "-n", self.ns[peer], "addr", "add", f"{ip}/24", "dev", f"h{name}")
            run("ip", "-n", r, "link", "set", f"r{name}", "up")
            run("ip", "-n", self.ns[peer], "link", "set", f"h{name}", "up")
        no_inbound(self.ns["cluster"], RELAY_C)
        no_inbound(self.ns["vault"], RELAY_V)

    def exec(self, host, *argv):
        return ["ip", "netns", "exec", self.ns[host], *map(str, argv)]

    def daemon(self, host, argv, name):
        d = Daemon(self.exec(host, *argv), self.tmp / f"{name}.log")
        self.daemons.append(d)
        return d

    def python(self, host, script, *args, timeout=300):
        return subprocess.run(self.exec(host, sys.executable, "-c", script, *args),
                              capture_output=True, text=True, timeout=timeout)

    def close(self):
        for d in reversed(self.daemons):
            d.kill()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beacon-netns")
    h = Hosts(tmp)
    try:
        h.up()
        pki = Pki(tmp / "pki")
        broker_crt, broker_key = pki.issue("broker", "serverAuth")
        bridge_crt, bridge_key = pki.issue("bridge", "clientAuth")
        beacon_crt, beacon_key = pki.issue("beacon", "serverAuth",
                                           sans=(f"IP:{RELAY_C}", f"IP:{RELAY_V}"))
        key = pairing_key(tmp / "pairing.key")
        h.daemon("relay", [BEACON, "--listen", "0.0.0.0:443", "--cert", beacon_crt, "--key",
                           beacon_key], "beacon").wait_log(r"\[parent\] info: ready")
        up = subprocess.Popen(h.exec("vault", sys.executable, "-c", UPSTREAM),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        h.upstream = up
        assert up.stdout.readline().strip() == "upstream ready"
        beacon = ["--beacon-ca", pki.ca_crt, "--pairing-key-file", key]
        broker = h.daemon("cluster", [
            BROKER, "--beacon-address", f"{RELAY_C}:443", *beacon, "--service-listen",
            "127.0.0.1:8443", "--cert", broker_crt, "--key", broker_key, "--ca-cert", pki.ca_crt,
            "--bridge-pin", pin_of(bridge_crt)], "broker")
        broker.wait_log(r"\[parent\] info: ready")
        bridge = h.daemon("vault", [
            BRIDGE, "--beacon-address", f"{RELAY_V}:443", *beacon, "--vault-addr",
            "http://127.0.0.1:8200", "--client-cert", bridge_crt, "--client-key", bridge_key,
            "--ca-cert", pki.ca_crt, "--broker-pin", pin_of(broker_crt),
            "--allow-plaintext-streams"], "bridge")
        broker.wait_log(r"conn=\d+ bridge connected", 30)
        bridge.wait_log(r"linked to broker instance", 30)
        h.broker, h.bridge = broker, bridge
        yield h
    finally:
        if getattr(h, "upstream", None):
            h.upstream.kill()
        h.close()


def wrappers(hosts, n, path):
    r = hosts.python("cluster", WRAPPERS, 8443, n, path)
    assert r.returncode == 0, r.stderr
    return [line.split(" ", 4) for line in r.stdout.splitlines()]


def test_the_hosts_accept_nothing_from_outside(hosts):
    # A listener on the vault host and one in the cluster: from the relay, neither answers
    # (dropped: the attempt times out), while on the relay the beacon's port does.
    for host, ip in (("vault", VAULT_IP), ("cluster", CLUSTER_IP)):
        lst = subprocess.Popen(hosts.exec(host, sys.executable, "-c", LISTENER, 9999),
                               stdout=subprocess.PIPE, text=True)
        try:
            assert lst.stdout.readline().strip() == "listening"
            assert hosts.python("relay", PROBE, ip, 9999, 2).stdout.strip() == "TimeoutError"
            assert hosts.python(host, PROBE, "127.0.0.1", 9999, 2).stdout.strip() == "connected"
        finally:
            lst.kill()
            lst.wait(5)
    assert hosts.python("vault", PROBE, RELAY_V, 443, 2).stdout.strip() == "connected"
    # Nor can the cluster reach the vault host directly: the relay does not route.
    assert hosts.python("cluster", PROBE, VAULT_IP, 443, 2).stdout.strip() != "connected"


def test_a_wrapper_in_the_cluster_reads_a_secret_through_the_beacon(hosts):
    name = "s" + secrets.token_hex(6)
    [(i, status, n, digest, body)] = wrappers(hosts, 1, f"/v1/secret/data/{name}")
    assert status == "200" and f"s3cr3t-{name}" in body, (status, body)


def test_256_mib_arrive_intact_through_the_beacon(hosts):
    n = 256 << 20
    chunk = bytes(range(256)) * 256
    want = hashlib.sha256()
    for _ in range(n // len(chunk)):
        want.update(chunk)
    [(i, status, length, digest, _)] = wrappers(hosts, 1, f"/bytes/{n}")
    assert status == "200" and int(length) == n and digest == want.hexdigest()


def test_100_wrappers_at_once_each_read_their_own_secret(hosts):
    tag = secrets.token_hex(4)
    rows = wrappers(hosts, 100, f"/v1/secret/data/{tag}-%d")
    assert len(rows) == 100
    for i, row in enumerate(rows):
        assert row[1] == "200" and f"s3cr3t-{tag}-{i}" in row[4], row
