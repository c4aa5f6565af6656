"""OpenBao-aware bridges (issue 12): each bridge polls its OpenBao's health
endpoint, tells the brokers the state, and the broker sends new streams only
to bridges whose OpenBao can serve them (FI-40, FI-41).

Two bridges, each in front of its own KV stand-in ("OpenBao node 1 and 2"),
linked to one broker; a stand-in's health code is set to seal, unseal or
demote its node, and each stand-in counts the requests it served.
"""
import re
import socket
import time

from harness import free_port, http_get, wait_for

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


def test_an_https_upstream_is_not_probed_and_says_so(env):
    mport = free_port()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    bridge = env.bridge(broker.bridge_port, f"https://127.0.0.1:{free_port()}", service=None)
    bridge.wait_log(r"OpenBao health: not polled \(https:// --vault-addr\)")
    broker.wait_log(r"conn=\d+ bridge connected")
    wait_for(lambda: by_upstream(mport).get("unknown") == 1, 5, "metrics: one unknown")


def test_the_health_flags_are_documented_and_checked(env):
    import subprocess
    from harness import BRIDGE, ROOT
    out = subprocess.run([str(BRIDGE), "--help"], capture_output=True, text=True).stdout
    assert "--vault-health-path PATH" in out and "--vault-health-interval SECONDS" in out
    man = (ROOT / "docs/man/vault-bridge.8").read_text().replace("\\-", "-")
    assert "vault-health-path" in man and "vault-health-interval" in man
    up = env.kv()
    crt, key, ca = env.bridge_files()
    base = [str(BRIDGE), "--broker-address", "127.0.0.1:1", "--vault-addr", up.addr,
            "--client-cert", str(crt), "--client-key", str(key), "--ca-cert", str(ca),
            "--insecure-no-pin", "--allow-plaintext-streams"]
    for bad in (["--vault-health-path", "v1/sys/health"],
                ["--vault-health-path", "/a b"],
                ["--vault-health-interval", "-1"],
                ["--vault-health-interval", "3601"],
                ["--vault-health-interval", "soon"]):
        r = subprocess.run(base + bad, capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (bad, r.returncode, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "--vault-health-" in r.stderr, r.stderr
