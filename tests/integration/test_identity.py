"""Identity fails closed: no pin means no start, pins and roles are checked
explicitly, and a reload that removes a peer's pin ends that peer's link."""
import shutil
import signal
import subprocess

import pytest

from harness import BRIDGE, BROKER, Broker, Pki, kv_ok, pin_of, wait_for


def run(argv, timeout=20):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout)
    return r.returncode, r.stderr.decode()


def broker_argv(env, *extra, cert=None):
    return [BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen", "127.0.0.1:0",
            "--cert", cert or env.broker_crt, "--key", env.broker_key, "--ca-cert", env.pki.ca_crt,
            *extra]


def bridge_argv(env, *extra):
    return [BRIDGE, "--broker-address", "127.0.0.1:1", "--vault-addr", "http://127.0.0.1:8200",
            "--allow-plaintext-streams", "--client-cert", env.bridge_crt, "--client-key",
            env.bridge_key, "--ca-cert", env.pki.ca_crt, *extra]


@pytest.mark.parametrize("daemon", ["broker", "bridge"])
def test_a_daemon_without_any_pin_refuses_to_start_with_one_line_naming_what_to_add(env, daemon):
    argv = broker_argv(env) if daemon == "broker" else bridge_argv(env)
    flag, default = (("--bridge-pin", "bridge.pin") if daemon == "broker"
                     else ("--broker-pin", "broker.pin"))
    rc, err = run(argv)
    assert rc == 2, err
    assert err.count("\n") == 1, err
    assert flag in err and default in err and "--insecure-no-pin" in err, err


@pytest.mark.parametrize("daemon", ["broker", "bridge"])
def test_insecure_no_pin_starts_and_says_so_with_a_warning(env, daemon):
    up = env.kv()
    if daemon == "broker":
        d = env.broker(extra=["--insecure-no-pin"])
    else:
        broker = env.broker()
        d = env.bridge(broker.bridge_port, up.addr, extra=["--insecure-no-pin"])
        d.wait_log(r"connected to the broker")
    d.wait_log(r"warn: --insecure-no-pin: any \w+ certificate the CA signed is accepted")


def test_insecure_no_pin_beside_a_pin_is_a_contradiction_refused_at_start(env):
    rc, err = run(broker_argv(env, "--insecure-no-pin", "--bridge-pin", env.bridge_pin))
    assert rc == 2 and err.count("\n") == 1 and "contradicts" in err, err


def test_the_default_pin_file_beside_the_certificate_pins_the_peer(env):
    # The broker's certificate directory holds bridge.pin: with no pin flag,
    # that file decides, so only the bridge it names connects.
    d = env.tmp / "etc-broker"
    d.mkdir()
    shutil.copy(env.broker_crt, d / "tls.crt")
    shutil.copy(env.broker_key, d / "tls.key")
    (d / "bridge.pin").write_text(f"# bridges admitted\n{env.bridge_pin}\n")
    up = env.kv()
    # Started directly, not through env.broker(), which adds a --bridge-pin.
    broker = Broker((d / "tls.crt", d / "tls.key", env.pki.ca_crt), env.tmp / "dflt-broker.log")
    env.daemons.append(broker)
    broker.wait_log(r"1 bridge pin\(s\)")
    env.bridge(broker.bridge_port, up.addr).wait_log(r"connected to the broker")
    assert wait_for(lambda: kv_ok(broker.service_port, "dflt"), 10, "a secret through the tunnel")
    # Another key from the same CA is refused: the file, not the CA, decides.
    crt, key = env.pki.issue("other-bridge", "clientAuth")
    env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt))
    broker.wait_log(r"matches no configured pin")


def test_a_pin_file_without_a_pin_is_refused_at_start(env):
    pins = env.tmp / "pins"
    pins.write_text("# being rewritten\n\n")
    rc, err = run(broker_argv(env, "--bridge-pin-file", pins))
    assert rc == 2 and err.count("\n") == 1 and "no pin in the file" in err, err


def test_more_than_sixteen_pins_are_refused_at_start(env):
    many = [a for i in range(17) for a in ("--bridge-pin", "sha256//" + chr(65 + i) * 43 + "=")]
    rc, err = run(broker_argv(env, *many))
    assert rc == 2 and err.count("\n") == 1 and "at most 16" in err, err


@pytest.mark.parametrize("bad", ["empty", "seventeen"])
def test_a_reload_to_a_pin_file_without_a_pin_or_with_too_many_keeps_the_old_pins(env, bad):
    pins = env.tmp / "bridge-pins"
    pins.write_text(f"{env.bridge_pin}\n")
    broker, bridge, _ = env.tunnel(broker_extra=["--bridge-pin-file", str(pins)])
    tls_pid = broker.children()["tls"]
    if bad == "empty":
        pins.write_text("# nothing here yet\n")
    else:
        pins.write_text("".join(f"sha256//{chr(65 + i) * 43}=\n" for i in range(16)) +
                        f"{env.bridge_pin}\n")
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"reload refused, keeping the material in service: .*"
                    + ("no pin in the file" if bad == "empty" else "at most 16"))
    # The TLS process lived, the link stayed, and the old pin still admits the bridge.
    assert broker.children().get("tls") == tls_pid
    assert kv_ok(broker.service_port, "kept")
    assert broker.count(r"bridge no longer admitted") == 0


def test_a_bridge_whose_pin_is_removed_is_disconnected_with_goaway_at_the_reload(env):
    other = Pki(env.tmp / "other", "other-ca")
    next_crt, _ = other.issue("next-bridge", "clientAuth")
    pins = env.tmp / "bridge-pins"
    pins.write_text(f"{env.bridge_pin}\n{pin_of(next_crt)}\n")
    broker, bridge, _ = env.tunnel(broker_extra=["--bridge-pin-file", str(pins)])
    pins.write_text(f"{pin_of(next_crt)}\n")  # this bridge's key is retired
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"bridge no longer admitted by the reloaded material: .*matches no "
                    r"configured pin", timeout=10)
    bridge.wait_log(r"broker sent GOAWAY \(REFUSED\)", timeout=10)
    # Its redials are refused too: nothing serves a wrapper any more.
    broker.wait_log(r"bridge handshake failed", timeout=20)
    assert not kv_ok(broker.service_port, "gone", timeout=3)


def test_a_broker_whose_pin_is_removed_is_left_by_the_bridge_at_the_reload(env):
    other = Pki(env.tmp / "other", "other-ca")
    next_crt, _ = other.issue("next-broker", "serverAuth")
    pins = env.tmp / "broker-pins"
    pins.write_text(f"{env.broker_pin}\n")
    broker, bridge, _ = env.tunnel(bridge_extra=["--broker-pin-file", str(pins)])
    pins.write_text(f"{pin_of(next_crt)}\n")
    bridge.signal(signal.SIGHUP)
    bridge.wait_log(r"broker no longer admitted by the reloaded material: .*matches no "
                    r"configured pin", timeout=10)
    broker.wait_log(r"bridge sent GOAWAY \(REFUSED\)", timeout=10)


@pytest.mark.parametrize("side", ["bridge", "broker"])
def test_a_certificate_without_extended_key_usage_is_refused_in_either_role(env, side):
    # Same CA and pinned, but no EKU: OpenSSL's purpose check alone would let it pass.
    crt, key = env.pki.issue(f"no-eku-{side}", None)
    up = env.kv()
    if side == "bridge":
        broker = env.broker(extra=["--bridge-pin", pin_of(crt)])
        bridge = env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt))
        broker.wait_log(r"peer certificate lacks the clientAuth extended key usage")
    else:
        broker = env.broker(files=(crt, key, env.pki.ca_crt))
        bridge = env.bridge(broker.bridge_port, up.addr, extra=["--broker-pin", pin_of(crt)])
        bridge.wait_log(r"peer certificate lacks the serverAuth extended key usage")
    assert broker.count(r"conn=\d+ bridge connected") == 0
    assert bridge.count(r"connected to the broker") == 0


def test_a_ca_file_holding_a_leaf_certificate_is_refused_at_start(env):
    rc, err = run([BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen", "127.0.0.1:0",
                   "--cert", env.broker_crt, "--key", env.broker_key, "--ca-cert", env.bridge_crt,
                   "--bridge-pin", env.bridge_pin])
    assert rc == 2 and err.count("\n") == 1 and "not a CA" in err, err


@pytest.mark.parametrize("side", ["broker", "bridge"])
def test_a_reload_that_still_admits_the_peer_keeps_the_link(env, side):
    # The re-check after a reload covers chain, name, EKU and pins: a peer
    # that passes them all keeps its link (and its streams).
    broker, bridge, _ = env.tunnel()
    d = broker if side == "broker" else bridge
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload: new certificate material in service")
    assert kv_ok(broker.service_port, "still-here")
    assert d.count(r"no longer admitted") == 0
    assert broker.count(r"conn=\d+ bridge connected") == 1


def test_a_handshake_in_flight_at_a_reload_is_started_again_under_the_new_pins(env):
    # A connection still in its handshake would be judged by the old pins: the
    # reload closes it, and the peer's next handshake meets the new material.
    import socket
    import time
    pins = env.tmp / "bridge-pins"
    pins.write_text(f"{env.bridge_pin}\n")
    broker = env.broker(extra=["--bridge-pin-file", str(pins), "--log-level", "debug"])
    s = socket.create_connection(("127.0.0.1", broker.bridge_port), timeout=10)
    broker.wait_log(r"conn=\d+ bridge connection accepted")  # the TLS process holds it
    other = Pki(env.tmp / "other", "other-ca")
    next_crt, _ = other.issue("next-bridge", "clientAuth")
    pins.write_text(f"{pin_of(next_crt)}\n")
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"reload: new certificate material in service")
    t0 = time.monotonic()
    s.settimeout(8)
    assert s.recv(100) == b""  # closed now, not at the 10 s handshake deadline
    assert time.monotonic() - t0 < 5
    s.close()
