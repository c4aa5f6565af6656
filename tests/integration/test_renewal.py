"""Certificate renewal over time (issue 15): deploy/cloudtaser-certs renew with
the same key and with --new-key in the documented order, seen through the
daemons' expiry metrics, and the kubelet's Secret update (a `..data` symlink
swap) picked up by a running broker."""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness import Daemon, free_port, labelled, not_after_of, pin_of, wait_for
from test_status_file import read

CERTS = Path(__file__).resolve().parents[2] / "deploy" / "cloudtaser-certs"
LEAF = "cloudtaser_broker_certificate_not_after_timestamp_seconds"
PEER = "cloudtaser_broker_peer_certificate_not_after_timestamp_seconds"
PINS = "cloudtaser_broker_peer_pins"


def certs(*args):
    r = subprocess.run(["bash", str(CERTS), *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def plain(text, name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


class Pump:
    """Streams echoing 16 KiB blocks through the broker until stopped; each
    records whether every byte came back (a stream error fails it)."""

    def __init__(self, port, n=4):
        self.stop = threading.Event()
        self.results = []
        self.threads = [threading.Thread(target=self._run, args=(port, i)) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, port, i):
        block = hashlib.sha256(str(i).encode()).digest() * 512
        sent = got = 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                while not self.stop.is_set() or got < sent:
                    if not self.stop.is_set():
                        s.sendall(block)
                        sent += len(block)
                    while got < sent:
                        b = s.recv(1 << 16)
                        if not b:
                            raise ConnectionError("stream closed early")
                        got += len(b)
            self.results.append((sent, True))
        except OSError as e:
            self.results.append((sent, repr(e)))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert len(self.results) == len(self.threads)
        for sent, ok in self.results:
            assert ok is True and sent > 0, self.results


def pair(env, pki, mport, broker_files=None, echo=True, bridge_extra=()):
    """A broker and a bridge made from a cloudtaser-certs tree, each reading
    its pin file (as deployed)."""
    up = env.echo() if echo else env.kv()
    b = pki / "broker"
    broker = env.broker(files=broker_files or (b / "tls.crt", b / "tls.key", b / "ca.crt"),
                        extra=["--bridge-pin-file", b / "bridge.pin",
                               "--metrics-listen", f"127.0.0.1:{mport}"])
    g = pki / "bridge"
    bridge = env.bridge(broker.bridge_port, up.addr,
                        files=(g / "tls.crt", g / "tls.key", g / "ca.crt"),
                        extra=["--broker-pin-file", g / "broker.pin", *bridge_extra])
    broker.wait_log(r"conn=\d+ bridge connected")
    return broker, bridge


def test_a_renewal_keeping_the_key_under_load_loses_no_stream_and_shows_the_new_not_after(env):
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1", "--days", "20")
    mport = free_port()
    broker, bridge = pair(env, pki, mport)
    pin = pin_of(pki / "broker" / "tls.crt")
    before = not_after_of(pki / "broker" / "tls.crt")
    assert labelled(metrics(mport), LEAF, certificate="leaf", pin=pin) == before
    pump = Pump(broker.service_port)
    out = certs("renew", "--ca", pki / "ca", pki / "broker", "--days", "90")
    assert f"the pin stays: {pin}" in out
    after = not_after_of(pki / "broker" / "tls.crt")
    assert after > before
    broker.signal(signal.SIGHUP)
    wait_for(lambda: labelled(metrics(mport), LEAF, certificate="leaf", pin=pin) == after, 10,
             "the renewed not-after (same pin) in /metrics")
    pump.finish()
    assert broker.count(r"bridge disconnected") == 0, broker.text()
    assert bridge.count(r"link to the broker lost") == 0, bridge.text()
    # The bridge still pins the same key: a new handshake with the renewed
    # certificate succeeds (a second bridge, the same files).
    g = pki / "bridge"
    up = env.echo()
    env.bridge(broker.bridge_port, up.addr, files=(g / "tls.crt", g / "tls.key", g / "ca.crt"),
               extra=["--broker-pin-file", g / "broker.pin"])
    wait_for(lambda: plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 2, 10,
             "a second bridge linked with the renewed certificate")


def test_a_new_bridge_key_installed_in_the_documented_order_keeps_the_link(env):
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1")
    mport = free_port()
    broker, bridge = pair(env, pki, mport, echo=False)
    old_pin = pin_of(pki / "bridge" / "tls.crt")
    assert plain(metrics(mport), "cloudtaser_broker_pins_configured") == 1
    out = certs("renew", "--ca", pki / "ca", pki / "bridge", "--new-key")
    next_pin = pin_of(pki / "bridge" / "next.crt")
    assert next_pin != old_pin and f"next     {next_pin}" in out
    # Step 1: the broker's pin file (which the tool extended) is reloaded.
    broker.signal(signal.SIGHUP)
    wait_for(lambda: plain(metrics(mport), "cloudtaser_broker_pins_configured") == 2, 10,
             "the broker to admit both bridge keys")
    # Step 2: the bridge gets the next certificate and key.
    g = pki / "bridge"
    os.replace(g / "next.crt", g / "tls.crt")
    os.replace(g / "next.key", g / "tls.key")
    bridge.signal(signal.SIGHUP)
    bridge.wait_log(r"reload: new certificate material in service")
    assert bridge.count(r"link to the broker lost") == 0, bridge.text()
    assert labelled(metrics(mport), PEER, pin=old_pin) is not None  # the link kept
    # A new handshake (the broker restarted on the same port) uses the next key.
    port = broker.bridge_port
    broker.kill()
    b = pki / "broker"
    mport2 = free_port()
    env.broker(files=(b / "tls.crt", b / "tls.key", b / "ca.crt"), bridge_port=port,
               extra=["--bridge-pin-file", b / "bridge.pin", "--metrics-listen",
                      f"127.0.0.1:{mport2}"])
    wait_for(lambda: labelled(metrics(mport2), PEER, pin=next_pin) is not None, 20,
             "the bridge to link again with its next key")


def stage_new_key(pki, which):
    """`cloudtaser-certs renew --new-key` on a copy of `which`'s directory, so
    the peer's pin file in `pki` is not extended: the wrong order, as an
    operator who skipped step 1 would have it. Returns (next.crt, next.key)."""
    stage = pki.parent / f"stage-{which}"
    shutil.copytree(pki / which, stage / which)
    certs("renew", "--ca", pki / "ca", stage / which, "--new-key")
    return stage / which / "next.crt", stage / which / "next.key"


def install(crt, key, leaf_dir):
    os.replace(crt, leaf_dir / "tls.crt")
    os.replace(key, leaf_dir / "tls.key")


def test_a_new_bridge_key_installed_before_its_pin_is_published_keeps_the_old_key(env):
    """The wrong order: the broker told the bridge (PINS) that it pins only the
    old key, so the bridge keeps it in service, says why, and the link and new
    handshakes go on. Publishing the pin and reloading again then puts the next
    key into service without losing the link (docs/protocol.md §5b)."""
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1")
    mport = free_port()
    status = env.tmp / "bridge.prom"
    broker, bridge = pair(env, pki, mport, echo=False, bridge_extra=["--status-file", status])
    g = pki / "bridge"
    old_pin = pin_of(g / "tls.crt")
    bridge_pins = "cloudtaser_bridge_peer_pins"
    wait_for(lambda: labelled(read(status), bridge_pins, key="current") == 1, 10,
             "the broker's PINS in the status file")
    assert labelled(read(status), bridge_pins, key="other") == 0
    crt, key = stage_new_key(pki, "bridge")
    next_pin = pin_of(crt)
    install(crt, key, g)
    bridge.signal(signal.SIGHUP)
    bridge.wait_log(r"reload refused, keeping the material in service: new key "
                    + re.escape(next_pin) + r" is not pinned by the broker on conn=\d+ .*publish "
                    + re.escape(next_pin) + r" in the broker's pin file first")
    assert bridge.count(r"reload: new certificate material in service") == 0, bridge.text()
    assert bridge.count(r"link to the broker lost") == 0, bridge.text()
    assert labelled(metrics(mport), PEER, pin=old_pin) is not None  # the link kept
    # A new handshake (the broker restarted on the same port) still uses the old key.
    port = broker.bridge_port
    broker.kill()
    b = pki / "broker"
    mport2 = free_port()

    def restart():
        return env.broker(files=(b / "tls.crt", b / "tls.key", b / "ca.crt"), bridge_port=port,
                          extra=["--bridge-pin-file", b / "bridge.pin", "--metrics-listen",
                                 f"127.0.0.1:{mport2}"])
    broker = restart()
    wait_for(lambda: labelled(metrics(mport2), PEER, pin=old_pin) is not None, 20,
             "the bridge to link again with its old key")
    assert (labelled(metrics(mport2), "cloudtaser_broker_handshake_failures_total",
                     reason="pin") or 0) == 0
    # Step 1 after all: the broker publishes the next pin (its file watch or
    # SIGHUP) and tells the bridge; the bridge's retry now succeeds.
    with open(b / "bridge.pin", "a") as f:
        f.write(next_pin + "\n")
    broker.signal(signal.SIGHUP)
    bridge.wait_log(r"the broker pins 2 key\(s\), ours among them", timeout=15)
    wait_for(lambda: labelled(read(status), bridge_pins, key="other") == 1, 10,
             "the next key published at the broker, in the status file")
    bridge.signal(signal.SIGHUP)
    bridge.wait_log(r"reload: new certificate material in service")
    assert labelled(metrics(mport2), PEER, pin=old_pin) is not None  # the same link
    broker.kill()
    broker = restart()
    wait_for(lambda: labelled(metrics(mport2), PEER, pin=next_pin) is not None, 20,
             "the bridge to link again with its next key")


def test_a_new_broker_key_the_bridge_does_not_pin_is_refused_until_the_bridge_pins_it(env):
    """The broker side of §5b: the linked bridge said (PINS) which broker keys
    it accepts; a reload to another key is refused with the reason, the old
    certificate stays in /metrics and on new handshakes; once the bridge's pin
    file holds the next pin, the broker's retry succeeds with the link up."""
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1", "--days", "20")
    mport = free_port()
    broker, bridge = pair(env, pki, mport)
    b = pki / "broker"
    old_pin = pin_of(b / "tls.crt")
    old_after = not_after_of(b / "tls.crt")
    crt, key = stage_new_key(pki, "broker")
    next_pin = pin_of(crt)
    install(crt, key, b)
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"reload refused, keeping the material in service: new key "
                    + re.escape(next_pin) + r" is not pinned by the bridge on conn=\d+ .*publish "
                    + re.escape(next_pin) + r" in the bridge's pin file first")
    assert broker.count(r"reload: new certificate material in service") == 0, broker.text()
    assert labelled(metrics(mport), LEAF, certificate="leaf", pin=old_pin) == old_after
    assert labelled(metrics(mport), LEAF, certificate="leaf", pin=next_pin) is None
    # What the bridge told (PINS): our key in service, and no next key of ours.
    assert labelled(metrics(mport), PINS, key="current") == 1
    assert labelled(metrics(mport), PINS, key="other") == 0
    # A new bridge that pins only the old key still gets through.
    g = pki / "bridge"
    only_old = env.tmp / "only-old.pin"
    only_old.write_text(old_pin + "\n")
    up = env.echo()
    second = env.bridge(broker.bridge_port, up.addr,
                        files=(g / "tls.crt", g / "tls.key", g / "ca.crt"),
                        extra=["--broker-pin-file", only_old])
    wait_for(lambda: plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 2, 10,
             "a second bridge linked with the old broker key")
    # That bridge goes (it would, rightly, refuse the next key again); the
    # first one publishes the next pin, reloads and tells the broker.
    second.kill()
    wait_for(lambda: plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 1, 20,
             "the second bridge gone")
    with open(g / "broker.pin", "a") as f:
        f.write(next_pin + "\n")
    bridge.signal(signal.SIGHUP)
    broker.wait_log(r"the bridge pins 2 key\(s\)", timeout=15)
    wait_for(lambda: labelled(metrics(mport), PINS, key="other") == 1, 10,
             "the next key published at the bridge, in /metrics")
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"reload: new certificate material in service")
    wait_for(lambda: labelled(metrics(mport), LEAF, certificate="leaf", pin=next_pin) is not None,
             10, "the next key in /metrics")
    assert bridge.count(r"link to the broker lost") == 0, bridge.text()
    assert plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 1
    # A new handshake with the bridge's files (both pins) meets the next key.
    env.bridge(broker.bridge_port, up.addr, files=(g / "tls.crt", g / "tls.key", g / "ca.crt"),
               extra=["--broker-pin-file", g / "broker.pin"])
    wait_for(lambda: plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 2, 10,
             "a new bridge linked with the next broker key")


V3_BROKER = os.environ.get("CT_V3_BROKER")


@pytest.mark.skipif(not V3_BROKER, reason="set CT_V3_BROKER to a broker built before protocol "
                    "version 4 (with its -forward beside it)")
def test_a_new_bridge_key_against_a_broker_too_old_to_tell_its_pins_is_not_checked_and_says_so(env):
    # docs/protocol.md §5b: a version 3 broker sends no PINS, so the bridge
    # cannot know whether it pins the new key: the reload goes ahead (as
    # before version 4) and the bridge says, once for that link, that it could
    # not check.
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1")
    b = pki / "broker"
    broker = Daemon([V3_BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen",
                     "127.0.0.1:0", "--cert", b / "tls.crt", "--key", b / "tls.key",
                     "--ca-cert", b / "ca.crt", "--bridge-pin-file", b / "bridge.pin"],
                    env._log("old-broker"))
    env.daemons.append(broker)
    m = broker.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                        r"127\.0\.0\.1:(\d+)")
    up = env.kv()
    g = pki / "bridge"
    bridge = env.bridge(int(m.group(1)), up.addr, files=(g / "tls.crt", g / "tls.key", g / "ca.crt"),
                        extra=["--broker-pin-file", g / "broker.pin"])
    bridge.wait_log(r"connected to the broker: .*\(protocol 3\)")
    crt, key = stage_new_key(pki, "bridge")
    next_pin = pin_of(crt)
    install(crt, key, g)
    bridge.signal(signal.SIGHUP)
    bridge.wait_log(r"new key " + re.escape(next_pin) + r": the broker speaks protocol 3, too old "
                    r"to say what it pins; not checked")
    bridge.wait_log(r"reload: new certificate material in service")
    assert bridge.count(r"reload refused") == 0, bridge.text()
    assert bridge.count(r"not checked") == 1


V3_BRIDGE = os.environ.get("CT_V3_BRIDGE")


@pytest.mark.skipif(not V3_BRIDGE, reason="set CT_V3_BRIDGE to a vault-bridge built before "
                    "protocol version 4 (with its -forward beside it)")
def test_a_new_broker_key_against_a_bridge_too_old_to_tell_its_pins_is_not_checked_and_says_so(env):
    # The broker side of the fallback: a version 3 bridge sends no PINS; the
    # broker's reload goes ahead and names the link it could not check.
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1")
    mport = free_port()
    b = pki / "broker"
    broker = env.broker(files=(b / "tls.crt", b / "tls.key", b / "ca.crt"),
                        extra=["--bridge-pin-file", b / "bridge.pin",
                               "--metrics-listen", f"127.0.0.1:{mport}"])
    up = env.kv()
    g = pki / "bridge"
    bridge = Daemon([V3_BRIDGE, "--broker-address", f"127.0.0.1:{broker.bridge_port}",
                     "--vault-addr", up.addr, "--client-cert", g / "tls.crt", "--client-key",
                     g / "tls.key", "--ca-cert", g / "ca.crt", "--allow-plaintext-streams",
                     "--broker-pin-file", g / "broker.pin"], env._log("old-bridge"))
    env.daemons.append(bridge)
    broker.wait_log(r"conn=\d+ bridge connected: .*\(protocol 3\)")
    crt, key = stage_new_key(pki, "broker")
    next_pin = pin_of(crt)
    install(crt, key, b)
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"conn=\d+ .*new key " + re.escape(next_pin) + r": the bridge speaks protocol "
                    r"3, too old to say what it pins; not checked")
    broker.wait_log(r"reload: new certificate material in service")
    assert broker.count(r"reload refused") == 0, broker.text()
    wait_for(lambda: labelled(metrics(mport), LEAF, certificate="leaf", pin=next_pin) is not None,
             10, "the next key in /metrics")
    assert labelled(metrics(mport), PINS) is None  # an old bridge says nothing


def kubelet_secret(root: Path, files: dict):
    """A Secret volume as the kubelet writes it: the files in a timestamped
    directory, `..data` pointing to it, each name a symlink through `..data`."""
    root.mkdir(parents=True, exist_ok=True)
    ts = root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    ts.mkdir()
    for name, src in files.items():
        shutil.copy(src, ts / name)
        os.chmod(ts / name, 0o600 if name.endswith(".key") else 0o644)
    # The swap: a new ..data_tmp symlink renamed over ..data (atomic).
    tmp = root / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(ts.name, tmp)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.replace(tmp, root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    if old:
        shutil.rmtree(root / old)


def test_the_broker_serves_a_renewed_secret_after_the_kubelets_symlink_swap_without_restart(env):
    pki = env.tmp / "pki"
    certs("--out", pki, "--external-host", "127.0.0.1", "--days", "20")
    b = pki / "broker"
    vol = env.tmp / "secret"

    def secret():
        kubelet_secret(vol, {"tls.crt": b / "tls.crt", "tls.key": b / "tls.key",
                             "ca.crt": b / "ca.crt", "bridge.pin": b / "bridge.pin"})
    secret()
    mport = free_port()
    broker, bridge = pair(env, pki, mport,
                          broker_files=(vol / "tls.crt", vol / "tls.key", vol / "ca.crt"))
    pin = pin_of(b / "tls.crt")
    before = labelled(metrics(mport), LEAF, certificate="leaf", pin=pin)
    assert before == not_after_of(b / "tls.crt")
    pid = broker.proc.pid
    # cert-manager renews (rotationPolicy Never: the same key); the kubelet swaps.
    certs("renew", "--ca", pki / "ca", b, "--days", "90")
    after = not_after_of(b / "tls.crt")
    assert after > before
    secret()
    broker.wait_log(r"file changed: reloading", timeout=15)
    wait_for(lambda: labelled(metrics(mport), LEAF, certificate="leaf", pin=pin) == after, 15,
             "the renewed not-after in /metrics")
    assert broker.proc.pid == pid and broker.proc.poll() is None
    assert bridge.count(r"link to the broker lost") == 0, bridge.text()
    assert plain(metrics(mport), "cloudtaser_broker_bridges_connected") == 1
    # A new link is served the renewed certificate.
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.bridge_port}",
                        "-cert", str(pki / "bridge" / "tls.crt"),
                        "-key", str(pki / "bridge" / "tls.key"),
                        "-CAfile", str(b / "ca.crt"), "-tls1_3"],
                       input=b"", capture_output=True, timeout=20)
    served = r.stdout.split(b"-----BEGIN CERTIFICATE-----", 1)[1].split(b"-----END")[0]
    assert served.replace(b"\n", b"") in (b / "tls.crt").read_bytes().replace(b"\n", b"")
