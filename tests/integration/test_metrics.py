"""--metrics-listen: /healthz, /readyz and Prometheus /metrics (counts only)."""
import re
import shutil
import signal
import subprocess
import socket
import urllib.error
import urllib.request

from harness import free_port, http_get, labelled, not_after_of, pin_of, wait_for


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def test_readiness_follows_the_bridge_link_and_metrics_count_streams(env):
    mport = free_port()
    up = env.kv()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    assert get(mport, "/healthz")[0] == 200
    assert get(mport, "/readyz") == (503, "no bridge connected\n")
    bridge = env.bridge(broker.bridge_port, up.addr)
    broker.wait_log(r"conn=\d+ bridge connected")
    wait_for(lambda: get(mport, "/readyz")[0] == 200, 5, "readyz to turn 200")
    for i in range(3):
        assert http_get(broker.service_port, f"/v1/secret/data/m{i}")[0] == 200
    wait_for(lambda: metric(get(mport, "/metrics")[1], "cloudtaser_broker_streams_total") == 3,
             5, "streams_total == 3")
    text = get(mport, "/metrics")[1]
    assert metric(text, "cloudtaser_broker_bridges_connected") == 1
    assert metric(text, "cloudtaser_broker_wrapper_connections_total") == 3
    assert metric(text, "cloudtaser_broker_bytes_from_bridge_total") > 0
    # Every sample line is "name{labels} integer"; HELP/TYPE precede each family.
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or \
            re.fullmatch(r'[a-z_]+(\{[a-z_]+="[A-Za-z0-9_./+=]+"(,[a-z_]+="[A-Za-z0-9_./+=]+")*\})?'
                         r' \d+', line), line
    assert b"s3cr3t" not in text.encode()  # counts, never payload
    bridge.kill()
    wait_for(lambda: get(mport, "/readyz")[0] == 503, 10, "readyz to turn 503 without a bridge")


def test_sigterm_turns_readiness_false_before_the_streams_finish(env):
    mport = free_port()
    echo = env.echo()
    broker, _, _ = env.tunnel(upstream=echo, broker_extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    wait_for(lambda: get(mport, "/readyz")[0] == 200, 5, "ready")
    s = socket.create_connection(("127.0.0.1", broker.service_port), timeout=10)
    s.sendall(b"hold")
    assert s.recv(10) == b"hold"
    broker.signal(signal.SIGTERM)
    wait_for(lambda: get(mport, "/readyz") == (503, "draining\n"), 5, "readyz to say draining")
    s.close()
    assert broker.wait_exit(15) == 0


def test_handshake_failures_are_counted_by_reason(env):
    from harness import Pki
    mport = free_port()
    other = Pki(env.tmp / "other", "other-ca")
    crt, key = other.issue("intruder", "clientAuth")
    up = env.kv()
    broker = env.broker(extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt))
    wait_for(lambda: 'cloudtaser_broker_handshake_failures_total{reason="verify"}' in
             get(mport, "/metrics")[1], 10, "a counted verify failure")


def test_metrics_give_each_certificates_not_after_the_own_pin_and_the_linked_bridges_leaf(env):
    mport = free_port()
    broker, bridge, _ = env.tunnel(broker_extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    name = "cloudtaser_broker_peer_certificate_not_after_timestamp_seconds"
    wait_for(lambda: labelled(get(mport, "/metrics")[1], name, pin=env.bridge_pin) is not None,
             5, "the bridge's leaf in /metrics")
    text = get(mport, "/metrics")[1]
    own = "cloudtaser_broker_certificate_not_after_timestamp_seconds"
    assert labelled(text, own, certificate="leaf", pin=env.broker_pin) == \
        not_after_of(env.broker_crt), text
    assert labelled(text, own, certificate="ca", index="0") == not_after_of(env.pki.ca_crt)
    assert labelled(text, name, pin=env.bridge_pin) == not_after_of(env.bridge_crt)
    assert metric(text, "cloudtaser_broker_pins_configured") == 1
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    # The link gone, its leaf goes from /metrics; our own certificates stay.
    bridge.kill()
    wait_for(lambda: labelled(get(mport, "/metrics")[1], name) is None, 10,
             "the bridge's leaf to leave /metrics")
    assert labelled(get(mport, "/metrics")[1], own, certificate="leaf") is not None


def test_a_certificate_expiring_within_a_week_is_warned_about_once(env):
    crt, key = env.pki.issue("broker-soon", "serverAuth", days=5)
    mport = free_port()
    broker = env.broker(files=(crt, key, env.pki.ca_crt),
                        extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    broker.wait_log(r"warn: certificate leaf \(pin sha256//\S+\) expires in [45] day\(s\) \d+ "
                    r"hour\(s\) \(\S+Z\), within 7 day\(s\)")
    # The check runs with every STATS (once a second): a bridge linking and
    # leaving makes several; still one warning.
    up = env.kv()
    bridge = env.bridge(broker.bridge_port, up.addr, extra=["--broker-pin", pin_of(crt)])
    broker.wait_log(r"conn=\d+ bridge connected")
    bridge.kill()
    broker.wait_log(r"conn=\d+ bridge disconnected")
    wait_for(lambda: metric(get(mport, "/metrics")[1], "cloudtaser_broker_bridges_connected") == 0,
             5, "bridges_connected back to 0")
    assert broker.count(r"warn: certificate leaf") == 1, broker.text()
    # The bridge's 45-day certificates were not warned about.
    assert broker.count(r"warn: peer certificate") == 0, broker.text()
