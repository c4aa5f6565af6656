"""Mutual TLS with pins: who may connect to whom (T-01..T-07)."""
import subprocess

from harness import Pki, http_get, pin_of


def _no_link(broker, bridge):
    assert broker.count(r"conn=\d+ bridge connected") == 0
    assert bridge.count(r"connected to the broker") == 0


def test_a_bridge_with_a_certificate_from_another_ca_is_rejected(env):
    other = Pki(env.tmp / "other", "other-ca")
    crt, key = other.issue("intruder", "clientAuth")
    broker = env.broker(extra=["--pending-timeout", "1"])
    up = env.kv()
    bridge = env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt))
    broker.wait_log(r"bridge handshake failed: certificate verification failed")
    _no_link(broker, bridge)
    # And a wrapper is not served by it: it is closed after the pending timeout.
    try:
        status, _ = http_get(broker.service_port, "/v1/secret/data/x", timeout=5)
    except (ConnectionError, OSError):
        status = None
    assert status is None


def test_a_broker_whose_key_does_not_match_broker_pin_is_rejected(env):
    other = Pki(env.tmp / "other", "other-ca")
    wrong_crt, _ = other.issue("someone-else", "serverAuth")
    broker = env.broker()
    up = env.kv()
    bridge = env.bridge(broker.bridge_port, up.addr, extra=["--broker-pin", pin_of(wrong_crt)])
    bridge.wait_log(r"matches no configured pin")
    bridge.wait_log(r"TLS with the broker failed")
    _no_link(broker, bridge)


def test_a_bridge_whose_key_is_not_in_bridge_pin_is_rejected(env):
    other = Pki(env.tmp / "other", "other-ca")
    wrong_crt, _ = other.issue("someone-else", "clientAuth")
    broker = env.broker(extra=["--bridge-pin", pin_of(wrong_crt)])
    up = env.kv()
    bridge = env.bridge(broker.bridge_port, up.addr)
    broker.wait_log(r"matches no configured pin")
    broker.wait_log(r"bridge handshake failed")
    _no_link(broker, bridge)


def test_matching_pins_on_both_sides_connect_and_a_next_pin_may_sit_beside_the_current(env):
    other = Pki(env.tmp / "other", "other-ca")
    next_crt, _ = other.issue("next-key", "serverAuth")
    broker, bridge, _ = env.tunnel(
        broker_extra=["--bridge-pin", pin_of(env.bridge_crt)],
        bridge_extra=["--broker-pin", pin_of(next_crt), "--broker-pin", pin_of(env.broker_crt)])
    status, body = http_get(broker.service_port, "/v1/secret/data/pinned")
    assert status == 200 and b"s3cr3t-pinned" in body


def test_a_client_without_a_certificate_is_refused(env):
    broker = env.broker()
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.bridge_port}",
                        "-CAfile", str(env.pki.ca_crt), "-tls1_3"],
                       input=b"", capture_output=True, timeout=20)
    broker.wait_log(r"bridge handshake failed")
    assert broker.count(r"conn=\d+ bridge connected") == 0


def test_tls_1_2_is_refused(env):
    broker = env.broker()
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.bridge_port}",
                        "-cert", str(env.bridge_crt), "-key", str(env.bridge_key),
                        "-CAfile", str(env.pki.ca_crt), "-tls1_2"],
                       input=b"", capture_output=True, timeout=20)
    assert b"alert protocol version" in r.stderr or r.returncode != 0
    broker.wait_log(r"bridge handshake failed")
    assert broker.count(r"conn=\d+ bridge connected") == 0


def test_a_server_certificate_is_not_accepted_as_a_bridge_client_certificate(env):
    # Right CA, wrong extended key usage: a leaked broker key cannot pose as a bridge.
    crt, key = env.pki.issue("misused", "serverAuth")
    broker = env.broker()
    up = env.kv()
    bridge = env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt))
    broker.wait_log(r"bridge handshake failed: certificate verification failed")
    _no_link(broker, bridge)
