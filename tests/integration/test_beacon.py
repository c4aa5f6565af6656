"""Beacon relay mode end to end (docs/beacon.md): cloudtaser-broker and vault-bridge both
dial OUT to cloudtaser-beacon on loopback, the beacon pairs them, and the link inside is the
same pinned mutual TLS as in reverse-connect. The relay on its own is in
test_beacon_relay.py; this file proves the daemons' client side against the real beacon.
"""
import base64
import hashlib
import os
import signal
import subprocess
import time

from beacon_world import linked, pairing_key, world  # noqa: F401 (world: a fixture)
from harness import BROKER, ResettingListener, bytes_body_sha256, http_get, kv_ok, wait_for


def beacon_metric(broker, name, beacon):
    status, body = http_get(broker.metrics_port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(f'{name}{{beacon="{beacon}"}} '):
            return int(line.split()[-1])
    return None


def test_a_wrapper_reads_a_secret_through_the_beacon_and_a_large_body_arrives_intact(world, env):
    up = env.kv()
    broker = world.broker(extra=["--metrics-listen", "127.0.0.1:0"])
    broker.metrics_port = int(broker.wait_log(r"serving metrics on 127\.0\.0\.1:(\d+)").group(1))
    bridge = world.bridge(up.addr)
    linked(broker, bridge)
    # The pool at the beacon is full again after the pairing (4 by default), and counted.
    where = f"127.0.0.1:{world.beacon.port}"
    wait_for(lambda: beacon_metric(broker, "cloudtaser_broker_beacon_waiting", where) == 4, 10,
             "4 connections waiting at the beacon")
    assert beacon_metric(broker, "cloudtaser_broker_beacon_paired_total", where) >= 1
    assert kv_ok(broker.service_port, "through-the-beacon")
    n = 64 << 20
    status, body = http_get(broker.service_port, f"/bytes/{n}", timeout=60)
    assert status == 200 and len(body) == n
    assert hashlib.sha256(body).hexdigest() == bytes_body_sha256(n)
    world.beacon.wait_metric("cloudtaser_beacon_pairs_active", "", 1)
    # Neither daemon listens for the other: the broker bound no bridge port.
    assert "listening for bridges" not in broker.text()


def test_a_wrong_pairing_key_never_pairs(world, env):
    up = env.kv()
    broker = world.broker()
    other = pairing_key(env.tmp / "other.key")
    bridge = world.bridge(up.addr, key=other)
    bridge.wait_log(r"refused the connection: NO_PEER", 30)
    assert "bridge connected" not in broker.text()
    assert world.beacon.metric("cloudtaser_beacon_pairs_total") == 0


def test_the_right_id_without_the_pinned_certificate_is_refused_by_the_broker(world, env):
    # Another bridge key from the same CA, not pinned by the broker: the beacon pairs it
    # (it knows nothing of certificates inside), the broker's pin check refuses it, and
    # the real bridge is still served.
    crt, key = env.pki.issue("impostor", "clientAuth")
    up = env.kv()
    broker = world.broker()
    impostor = world.bridge(up.addr, files=(crt, key, env.pki.ca_crt))
    wait_for(lambda: broker.count(r"bridge handshake failed") >= 1, 20,
             "the broker refusing the impostor's handshake")
    assert "matches no configured pin" in broker.text()
    assert "linked to broker instance" not in impostor.text()
    bridge = world.bridge(up.addr)
    linked(broker, bridge)
    assert kv_ok(broker.service_port, "real")


def test_a_bridge_links_every_broker_replica_through_the_beacon(world, env):
    up = env.kv()
    brokers = [world.broker(extra=["--replicas", "2"]) for _ in range(2)]
    bridge = world.bridge(up.addr)
    wait_for(lambda: bridge.count(r"linked to broker instance") >= 2, 20,
             "links to both replicas")
    for b in brokers:
        b.wait_log(r"conn=\d+ bridge connected")
        assert kv_ok(b.service_port, "replica")


def test_a_beacon_that_requires_client_certificates_pairs_only_sides_that_have_one(world, env):
    # A beacon run with --client-ca (its own CA here): both daemons present --beacon-cert;
    # a bridge without one is refused in the outer handshake and never reaches the broker.
    world.beacon.kill()
    world.beacon = world.start_beacon(client_ca=True)
    crt, key = world.beacon.pki.issue("beacon-client", "clientAuth")
    cert = ["--beacon-cert", crt, "--beacon-key", key]
    up = env.kv()
    broker = world.broker(extra=cert)
    stranger = world.bridge(up.addr)
    wait_for(lambda: stranger.count(r"beacon 127\.0\.0\.1:\d+: ") >= 1, 20,
             "the bridge without a client certificate to fail at the beacon")
    assert "linked to broker instance" not in stranger.text()
    stranger.kill()
    bridge = world.bridge(up.addr, extra=cert)
    linked(broker, bridge)
    assert kv_ok(broker.service_port, "with-client-certs")


def test_flags_say_which_mode_and_what_is_missing(world, env, tmp_path):
    crt, k, ca = env.broker_files()
    base = [str(BROKER), "--service-listen", "127.0.0.1:0", "--cert", str(crt), "--key", str(k),
            "--ca-cert", str(ca), "--bridge-pin", env.bridge_pin]

    def run(*extra):
        r = subprocess.run([*base, *map(str, extra)], capture_output=True, timeout=10)
        return r.returncode, r.stderr.decode()
    rc, err = run("--bridge-listen", "127.0.0.1:0", "--beacon-address", "127.0.0.1:1")
    assert rc == 2 and "one of the two" in err, err
    rc, err = run()
    assert rc == 2 and "one of the two" in err, err
    rc, err = run("--beacon-address", "127.0.0.1:1", "--pairing-key-file", world.key)
    assert rc == 2 and "--beacon-ca" in err, err
    weak = tmp_path / "weak.key"
    weak.write_text(base64.b64encode(b"short").decode())
    weak.chmod(0o600)
    rc, err = run("--beacon-address", "127.0.0.1:1", "--beacon-ca", world.beacon.ca,
                  "--pairing-key-file", weak)
    assert rc == 2 and "pairing key too short" in err, err
    open_key = tmp_path / "open.key"
    open_key.write_text(world.key.read_text())
    open_key.chmod(0o644)
    rc, err = run("--beacon-address", "127.0.0.1:1", "--beacon-ca", world.beacon.ca,
                  "--pairing-key-file", open_key)
    assert rc == 2 and "open.key" in err, err
    rc, err = run("--bridge-listen", "127.0.0.1:0", "--pairing-key-file", world.key)
    assert rc == 2 and "goes with --beacon-address" in err, err
    rc, err = run("--beacon-address", "127.0.0.1:1", "--beacon-ca", world.beacon.ca,
                  "--pairing-key-file", world.key, "--beacon-cert", crt)
    assert rc == 2 and "--beacon-cert and --beacon-key go together" in err, err


def test_beacon_restarts_re_pair_within_2_s_every_time(world, env):
    # BEACON_RESTARTS tries (3 in make test; the closing note quotes 20): each kill -9 of the
    # whole beacon, then a new one on the same port with the same certificate, and the time
    # from its "ready" to the first secret read through it again.
    tries = int(os.environ.get("BEACON_RESTARTS", "3"))
    up = env.kv()
    broker = world.broker()
    bridge = world.bridge(up.addr)
    linked(broker, bridge)
    port, took = world.beacon.port, []
    for i in range(tries):
        world.beacon.kill()
        world.beacon = world.start_beacon(port, reuse=world.beacon)
        back = time.monotonic()
        wait_for(lambda: kv_ok(broker.service_port, f"again-{i}", timeout=2), 15,
                 "the tunnel to serve again through the restarted beacon")
        took.append(time.monotonic() - back)
    took.sort()
    print(f"re-paired after {tries} beacon restarts: p50 {took[len(took) // 2]:.2f} s, "
          f"max {took[-1]:.2f} s")
    assert took[-1] < 2, took


def test_a_killed_beacon_tls_process_is_restarted_and_the_pair_recovers(world, env):
    up = env.kv()
    broker = world.broker()
    bridge = world.bridge(up.addr)
    linked(broker, bridge)
    old = world.beacon.children()["tls"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: world.beacon.children().get("tls") not in (None, old), 15,
             "the beacon's parent to restart its TLS process")
    wait_for(lambda: kv_ok(broker.service_port, "after-kill", timeout=2), 15,
             "the tunnel to serve again after the beacon's TLS process was killed")
    # Both daemons saw the link end and made a new one; neither restarted anything of its own.
    assert broker.count(r"conn=\d+ bridge connected") >= 2


def test_two_beacons_share_nothing_and_a_pair_fails_over_when_its_beacon_dies(world, env):
    # docs/beacon.md §2: the broker waits at every beacon, the bridge tries them in its
    # rendezvous order. Two beacons that know nothing of each other (same certificate,
    # separate processes and ports): kill -9 the one carrying the pair, and the bridge pairs
    # through the other, where the broker is already waiting; the dead one, back on its port,
    # gets the broker's waiting connections again.
    a = world.beacon
    b = world.start_beacon(reuse=a)
    second = ["--beacon-address", f"127.0.0.1:{b.port}"]
    up = env.kv()
    broker = world.broker(extra=second)
    wait_for(lambda: (a.waiting("broker") or 0) >= 1 and (b.waiting("broker") or 0) >= 1, 15,
             "the broker to wait at both beacons")
    bridge = world.bridge(up.addr, extra=second)
    linked(broker, bridge)
    assert kv_ok(broker.service_port, "two-beacons")

    def pairs(beacon):
        return beacon.metric("cloudtaser_beacon_pairs_active") or 0

    wait_for(lambda: pairs(a) + pairs(b) == 1, 10, "the pair at exactly one beacon")
    used, other = (a, b) if pairs(a) == 1 else (b, a)
    port = used.port
    used.kill()
    gone = time.monotonic()
    wait_for(lambda: kv_ok(broker.service_port, "failover", timeout=2), 15,
             "the tunnel to serve again through the other beacon")
    took = time.monotonic() - gone
    other.wait_metric("cloudtaser_beacon_pairs_active", "", 1)
    print(f"failed over to the other beacon in {took:.2f} s")
    assert took < 5, took
    assert bridge.count(r"linked to broker instance") >= 2
    # The dead beacon comes back on its port: the broker waits there again, unasked.
    back = world.start_beacon(port, reuse=a)
    wait_for(lambda: (back.waiting("broker") or 0) >= 1, 15,
             "the broker's waiting connections at the restarted beacon")
    assert kv_ok(broker.service_port, "still")


def test_a_broker_whose_beacon_dials_are_answered_with_an_rst_keeps_dialling(world, env):
    # Each of the broker's waiting places at a beacon is one connection; a
    # place is refilled when its connection ends. A connection reset before
    # the TLS process took it (a balancer with no beacon behind it) ended
    # inside its TlsLink's constructor, before the broker held it: the place
    # was never refilled, and after four such resets the broker stopped
    # dialling the beacon for good.
    with ResettingListener() as rst:
        b = world.broker(extra=["--beacon-address", f"127.0.0.1:{rst.port}", "--log-level", "debug"])
        dials = r"\[parent\] debug: dialling 127\.0\.0\.1:" + str(rst.port)
        wait_for(lambda: b.count(dials) >= 4, 10, "the broker's first four beacon dials")
        first = b.count(dials)
        t0 = time.monotonic()
        # Four places, each redialled 250-500 ms after its reset: 40 more
        # dials take 3-5 s; a broker that lost its places stops the count.
        wait_for(lambda: b.count(dials) >= first + 40, 20,
                 "40 more dials to a beacon address that resets every connection")
        assert time.monotonic() - t0 < 15
        assert b.proc.poll() is None, b.text()[-2000:]
