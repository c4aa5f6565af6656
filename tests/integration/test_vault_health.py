"""OpenBao-aware bridges (issue 12): each bridge polls its OpenBao's health
endpoint, tells the brokers the state, and the broker sends new streams only
to bridges whose OpenBao can serve them (FI-40, FI-41), an https:// OpenBao
polled over TLS verified with --vault-ca, or not at all (FI-42).

Two bridges, each in front of its own KV stand-in ("OpenBao node 1 and 2"),
linked to one broker; a stand-in's health code is set to seal, unseal or
demote its node, and each stand-in counts the requests it served.
"""
import re
import signal
import socket
import ssl
import time

from harness import Pki, free_port, http_get, read_to_eof, wait_for

INTERVAL = 1  # --vault-health-interval of these tests, seconds
MARGIN = 4    # what a state change may take beyond one interval (probe, STATUS, logs)


def by_upstream(mport):
    text = http_get(mport, "/metrics")[1].decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^cloudtaser_broker_bridges_by_upstream\{state="([a-z_]+)"\} (\d+)$', text, re.M)}


def vault_state(path):
    """The state the bridge's status file shows at 1 (exactly one must be)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    ones = re.findall(r'^cloudtaser_bridge_vault_state\{state="([a-z_]+)"\} 1$', text, re.M)
    assert len(ones) <= 1, text
    return ones[0] if ones else None


def fetch(port, n, tag):
    """n KV reads through the broker, one after another; each must succeed."""
    for i in range(n):
        status, body = http_get(port, f"/v1/secret/data/{tag}{i}")
        assert status == 200 and f"s3cr3t-{tag}{i}".encode() in body, (status, body)


def two_nodes(env, code1, code2, mport, extra2=()):
    node1, node2 = env.kv(), env.kv()
    node1.health_code, node2.health_code = code1, code2
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    status2 = env.tmp / "bridge2.prom"
    b1 = env.bridge(broker.bridge_port, node1.addr,
                    extra=["--vault-health-interval", str(INTERVAL)])
    b2 = env.bridge(broker.bridge_port, node2.addr,
                    extra=["--vault-health-interval", str(INTERVAL), "--status-file", status2,
                           *extra2])
    wait_for(lambda: broker.count(r"conn=\d+ bridge connected") == 2, 10, "two bridges linked")
    return broker, (b1, b2), (node1, node2), status2


def test_a_sealed_node_gets_no_stream_and_its_standby_takes_over_when_the_active_seals(env):
    mport = free_port()
    broker, (b1, b2), (node1, node2), status2 = two_nodes(env, 200, 503, mport)
    b1.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> active")
    b2.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> sealed")
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unknown -> active")
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unknown -> sealed")
    wait_for(lambda: by_upstream(mport).get("sealed") == 1 and
             by_upstream(mport).get("active") == 1, 5, "metrics: one active, one sealed")
    wait_for(lambda: vault_state(status2) == "sealed", 5, "status file: sealed")
    assert node2.health_probes >= 1  # it was asked, and said sealed

    fetch(broker.service_port, 20, "a")
    assert (node1.requests, node2.requests) == (20, 0)

    # Node 2 unsealed, as a standby: back in the pool, behind the active node.
    node2.health_code = 429
    t0 = time.monotonic()
    b2.wait_log(r"sealed -> standby", timeout=INTERVAL + MARGIN)
    broker.wait_log(r"conn=\d+ bridge's OpenBao: sealed -> standby", timeout=INTERVAL + MARGIN)
    assert time.monotonic() - t0 <= INTERVAL + MARGIN
    wait_for(lambda: vault_state(status2) == "standby", 5, "status file: standby")
    fetch(broker.service_port, 10, "b")
    assert (node1.requests, node2.requests) == (30, 0)  # active first

    # Node 1 seals: every new stream goes to node 2 within an interval or so.
    node1.health_code = 503
    t0 = time.monotonic()
    broker.wait_log(r"conn=\d+ bridge's OpenBao: active -> sealed", timeout=INTERVAL + MARGIN)
    assert time.monotonic() - t0 <= INTERVAL + MARGIN
    fetch(broker.service_port, 20, "c")
    assert (node1.requests, node2.requests) == (30, 20)
    wait_for(lambda: by_upstream(mport).get("sealed") == 1 and
             by_upstream(mport).get("standby") == 1 and
             by_upstream(mport).get("active") == 0, 5, "metrics: one standby, one sealed")
    # One line per change, not one per probe (several probes ran meanwhile).
    assert b2.count(r"OpenBao at .*: ") == 2, b2.text()
    assert broker.count(r"bridge's OpenBao: ") == 4, broker.text()


def test_wrappers_wait_while_no_node_can_serve_and_are_served_when_one_unseals(env):
    mport = free_port()
    broker, (b1, b2), (node1, node2), _ = two_nodes(env, 501, 503, mport)
    broker.wait_log(r"bridge's OpenBao: unknown -> uninitialized")
    broker.wait_log(r"bridge's OpenBao: unknown -> sealed")
    wait_for(lambda: by_upstream(mport).get("uninitialized") == 1, 5, "metrics: uninitialized")
    # Held (the broker's pending timeout is 10 s), not refused...
    s = socket.create_connection(("127.0.0.1", broker.service_port), timeout=15)
    s.sendall(b"GET /v1/secret/data/held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    broker.wait_log(r"no bridge's OpenBao can serve .*: holding wrappers")
    # Two more rounds of probes on both nodes, and still nothing reached either.
    p1, p2 = node1.health_probes, node2.health_probes
    wait_for(lambda: node1.health_probes >= p1 + 2 and node2.health_probes >= p2 + 2,
             3 * INTERVAL + MARGIN, "two more probes of each node")
    assert (node1.requests, node2.requests) == (0, 0)
    # ...and served by the node that unseals, within an interval or so.
    node2.health_code = 200
    t0 = time.monotonic()
    data = b""
    while b"\r\n\r\n" not in data or b"s3cr3t-held" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        assert len(data) < 1 << 20
    s.close()
    assert b"s3cr3t-held" in data, data
    assert time.monotonic() - t0 <= INTERVAL + MARGIN
    assert (node1.requests, node2.requests) == (0, 1)


def test_with_polling_off_the_state_stays_unknown_and_streams_still_flow(env):
    mport = free_port()
    up = env.kv()
    up.health_code = 503  # would be sealed, but nobody asks
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    status = env.tmp / "bridge.prom"
    bridge = env.bridge(broker.bridge_port, up.addr,
                        extra=["--vault-health-interval", "0", "--status-file", status])
    bridge.wait_log(r"OpenBao health: not polled \(--vault-health-interval 0\)")
    broker.wait_log(r"conn=\d+ bridge connected")
    wait_for(lambda: by_upstream(mport).get("unknown") == 1, 5, "metrics: one unknown")
    fetch(broker.service_port, 5, "u")
    assert up.requests == 5 and up.health_probes == 0
    assert vault_state(status) == "unknown"
    assert bridge.count(r"OpenBao at ") == 0 and broker.count(r"bridge's OpenBao") == 0


def test_an_answer_that_is_not_http_or_an_openbao_that_is_gone_is_unreachable(env):
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    # An echo server answers our request with itself: not a status line.
    echo = env.echo()
    b1 = env.bridge(broker.bridge_port, echo.addr, extra=["--vault-health-interval", str(INTERVAL)])
    b1.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> unreachable")
    # A stand-in that answers, then goes away: connection refused.
    up = env.kv()
    b2 = env.bridge(broker.bridge_port, up.addr, extra=["--vault-health-interval", str(INTERVAL)])
    b2.wait_log(r"unknown -> active")
    up.close()
    b2.wait_log(r"active -> unreachable", timeout=INTERVAL + MARGIN)
    wait_for(lambda: by_upstream(mport).get("unreachable") == 2, 5, "metrics: two unreachable")
    # Both bridges stay up and linked, their TLS processes never restarted.
    for b in (b1, b2):
        assert b.proc.poll() is None
        assert b.count(r"started tls process") == 1, b.text()


def https_fetch(port, n, tag, ca):
    """n KV reads through the broker to an https:// stand-in, the wrapper's TLS
    passing through the bridge unchanged (verified against `ca`)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(f"GET /v1/secret/data/{tag}{i} HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = read_to_eof(s)
        assert data.startswith(b"HTTP/1.1 200") and f"s3cr3t-{tag}{i}".encode() in data, data


def vault_pki(env, name="vault-ca"):
    """OpenBao's own CA (not the link's), made for this test."""
    return Pki(env.tmp / name, name=name)


def test_an_https_openbao_is_polled_over_verified_tls_and_brokers_route_by_its_state(env):
    vpki = vault_pki(env)
    crt, key = vpki.issue("openbao", "serverAuth")
    # Node 2 speaks TLS 1.2 at most: the probe's client takes 1.2 or 1.3.
    node1 = env.kv(tls=(crt, key))
    node2 = env.kv(tls=(crt, key), tls_max=ssl.TLSVersion.TLSv1_2)
    node1.health_code, node2.health_code = 200, 503
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    status2 = env.tmp / "bridge2.prom"
    flags = ["--vault-health-interval", str(INTERVAL), "--vault-ca", vpki.ca_crt]
    b1 = env.bridge(broker.bridge_port, node1.addr, extra=flags)
    b2 = env.bridge(broker.bridge_port, node2.addr, extra=[*flags, "--status-file", status2])
    for b in (b1, b2):
        b.wait_log(r"OpenBao health: GET /v1/sys/health every 1 s over TLS, verifying "
                   r"127\.0\.0\.1 with .*vault-ca\.crt")
    b1.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> active")
    b2.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> sealed")
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unknown -> active")
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unknown -> sealed")
    wait_for(lambda: by_upstream(mport).get("sealed") == 1 and
             by_upstream(mport).get("active") == 1, 5, "metrics: one active, one sealed")
    wait_for(lambda: vault_state(status2) == "sealed", 5, "status file: sealed")
    assert node1.health_probes >= 1 and node2.health_probes >= 1
    assert node1.tls_failures == 0 and node2.tls_failures == 0

    # Wrappers' own TLS passes through to the active node only.
    https_fetch(broker.service_port, 10, "a", vpki.ca_crt)
    assert (node1.requests, node2.requests) == (10, 0)

    # Node 1 seals, node 2 becomes active: every new stream goes to node 2.
    node1.health_code, node2.health_code = 503, 200
    t0 = time.monotonic()
    b1.wait_log(r"active -> sealed", timeout=INTERVAL + MARGIN)
    b2.wait_log(r"sealed -> active", timeout=INTERVAL + MARGIN)
    broker.wait_log(r"conn=\d+ bridge's OpenBao: active -> sealed", timeout=INTERVAL + MARGIN)
    broker.wait_log(r"conn=\d+ bridge's OpenBao: sealed -> active", timeout=INTERVAL + MARGIN)
    assert time.monotonic() - t0 <= INTERVAL + MARGIN
    wait_for(lambda: vault_state(status2) == "active", 5, "status file: active")
    https_fetch(broker.service_port, 10, "b", vpki.ca_crt)
    assert (node1.requests, node2.requests) == (10, 10)
    assert b1.count(r"OpenBao health probe to ") == 0, b1.text()


def test_a_wrong_vault_ca_or_name_is_unreachable_with_the_reason_logged_until_a_reload(env):
    vpki, other = vault_pki(env), vault_pki(env, "other-ca")
    crt, key = vpki.issue("openbao", "serverAuth")
    # A certificate that verifies against the right CA but names another host.
    crt2, key2 = vpki.issue("elsewhere", "serverAuth", sans=("DNS:openbao.example",))
    node = env.kv(tls=(crt, key))
    named = env.kv(tls=(crt2, key2))
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    ca_file = env.tmp / "vault-ca.pem"
    ca_file.write_bytes(other.ca_crt.read_bytes())
    b1 = env.bridge(broker.bridge_port, node.addr,
                    extra=["--vault-health-interval", str(INTERVAL), "--vault-ca", ca_file])
    b2 = env.bridge(broker.bridge_port, named.addr,
                    extra=["--vault-health-interval", str(INTERVAL), "--vault-ca", vpki.ca_crt])
    b1.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> unreachable")
    b1.wait_log(r"OpenBao health probe to 127\.0\.0\.1:\d+ \(verifying 127\.0\.0\.1\): "
                r"OpenBao TLS handshake failed: certificate verify failed: "
                r"unable to get local issuer certificate")
    b2.wait_log(r"OpenBao at 127\.0\.0\.1:\d+: unknown -> unreachable")
    b2.wait_log(r"OpenBao health probe to .*: OpenBao TLS handshake failed: certificate verify "
                r"failed: IP address mismatch")
    wait_for(lambda: by_upstream(mport).get("unreachable") == 2, 5, "metrics: two unreachable")
    # Probes keep failing; the reason is logged once per throttle interval
    # (10 s), and no request ever went out over an unverified connection.
    wait_for(lambda: node.tls_failures >= 3, 3 * INTERVAL + MARGIN, "three failed handshakes")
    assert b1.count(r"OpenBao health probe to ") == 1, b1.text()
    assert b1.count(r"OpenBao at [0-9.:]+: ") == 1, b1.text()  # one change, not one per probe
    assert node.health_probes == 0 and named.health_probes == 0
    # The right CA in the file, and SIGHUP: the next probe verifies.
    ca_file.write_bytes(vpki.ca_crt.read_bytes())
    b1.signal(signal.SIGHUP)
    b1.wait_log(r"unreachable -> active", timeout=INTERVAL + MARGIN)
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unreachable -> active")
    assert node.health_probes >= 1
    for b in (b1, b2):
        assert b.proc.poll() is None
        assert b.count(r"started tls process") == 1, b.text()


def test_an_https_openbao_without_vault_ca_is_not_probed_and_the_bridge_says_to_add_it(env):
    vpki = vault_pki(env)
    crt, key = vpki.issue("openbao", "serverAuth")
    up = env.kv(tls=(crt, key))
    up.health_code = 503  # would be sealed, but nobody asks
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    bridge = env.bridge(broker.bridge_port, up.addr)
    bridge.wait_log(r"OpenBao health: not polled \(https:// --vault-addr without --vault-ca\): "
                    r"add --vault-ca FILE")
    assert bridge.count(r"OpenBao health: ") == 1
    broker.wait_log(r"conn=\d+ bridge connected")
    wait_for(lambda: by_upstream(mport).get("unknown") == 1, 5, "metrics: one unknown")
    time.sleep(2 * INTERVAL)
    # Nothing connected but the one wrapper below: no probe, verified or not.
    assert up.tls_handshakes == 0 and up.health_probes == 0
    https_fetch(broker.service_port, 1, "u", vpki.ca_crt)
    assert up.tls_handshakes == 1 and up.requests == 1 and up.health_probes == 0


def test_the_health_flags_are_documented_and_checked(env):
    import subprocess
    from harness import BRIDGE, ROOT
    out = subprocess.run([str(BRIDGE), "--help"], capture_output=True, text=True).stdout
    assert "--vault-health-path PATH" in out and "--vault-health-interval SECONDS" in out
    assert "--vault-ca FILE" in out
    man = (ROOT / "docs/man/vault-bridge.8").read_text().replace("\\-", "-")
    assert "vault-health-path" in man and "vault-health-interval" in man and "vault-ca" in man
    up = env.kv()
    crt, key, ca = env.bridge_files()
    base = [str(BRIDGE), "--broker-address", "127.0.0.1:1", "--vault-addr", up.addr,
            "--client-cert", str(crt), "--client-key", str(key), "--ca-cert", str(ca),
            "--insecure-no-pin", "--allow-plaintext-streams"]
    # --vault-ca verifies an https:// OpenBao; with http:// it is a mistake.
    r = subprocess.run(base + ["--vault-ca", str(ca)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "--vault-ca verifies an https:// --vault-addr" in r.stderr, r.stderr
    # A --vault-ca that holds no CA is named at start, like the other files.
    https = [a if a != up.addr else up.addr.replace("http:", "https:") for a in base]
    r = subprocess.run(https + ["--vault-ca", str(crt)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "--vault-ca: CA file holds a certificate that is not a CA" \
        in r.stderr, r.stderr
    for bad in (["--vault-health-path", "v1/sys/health"],
                ["--vault-health-path", "/a b"],
                ["--vault-health-interval", "-1"],
                ["--vault-health-interval", "3601"],
                ["--vault-health-interval", "soon"]):
        r = subprocess.run(base + bad, capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (bad, r.returncode, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "--vault-health-" in r.stderr, r.stderr
