"""Faults on the link itself, made by the WAN emulator (tests/wan/, docs/wan.md) that
sits between the bridge and the broker: a byte flipped inside a TLS record (T-15), the
link's TCP ending with a FIN but no close_notify (T-14), an RST (FI-61), and both
directions stalled for 30 s, then resumed (FI-62).

What a wrapper relies on, in every case: no corrupted byte ever reaches it (the
wrappers here read plaintext streams, so a corrupted byte would be seen as one), a
stream that cannot finish ends with a reset, never a clean end, and once the link is
back (the bridge reconnects by itself) reads work again.

The link runs at CT_LINK_RTT_MS of round trip when that is set (`make faults` runs
these at 0 and 40 ms), else at 0 ms through the emulator.

Measured (record_property): detect_s, from the fault to the daemon's log line saying
the link ended; recover_s, from the fault (or its end, for the stall) to the first
read served again; corrupted_bytes, body bytes a wrapper got that differ from what
the upstream sent; lost_bytes, bytes missing from a stream that ended as if it were
whole (a clean end short of its length). Both must be 0.
"""
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import bytes_body_mismatches, kv_ok, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "wan"))
from wan import Wan  # noqa: E402

# Bodies longer than any run: only a reset or a clean end can end them.
BIG = 1 << 40


def link_rtt_ms():
    return float(os.environ.get("CT_LINK_RTT_MS") or 0)


def wan_tunnel(env, broker_extra=()):
    """Broker and bridge (plaintext wrapper streams) with the emulator on the link;
    returns (broker, bridge, wan)."""
    up = env.kv()
    broker = env.broker(extra=broker_extra)
    if os.environ.get("CT_LINK_RTT_MS"):
        bridge = env.bridge(broker.bridge_port, up.addr)  # conftest puts the emulator in
        wan = env.wans[-1]
    else:
        wan = Wan("127.0.0.1", broker.bridge_port, rtt_ms=0, log_path=env._log("wanem"))
        env.wans.append(wan)
        bridge = env.bridge(wan.port, up.addr)
    broker.wait_log(r"conn=\d+ bridge connected", timeout=20)
    bridge.wait_log(r"connected to the broker", timeout=20)
    return broker, bridge, wan


class Reader:
    """One wrapper downloading a body of the KV stand-in's /bytes pattern as fast as it
    arrives, checking every body byte against the pattern as it comes. `ending`:
    'complete' (Content-Length reached), 'eof' (a clean FIN), 'reset', or 'error ...'."""

    def __init__(self, port, path, expect_len=None):
        self.expect_len = expect_len
        self.body = 0
        self.corrupted = 0
        self.ending = None
        self.ended_at = None
        self.head = b""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: kv\r\n\r\n".encode())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _check(self, data):
        self.corrupted += bytes_body_mismatches(data, self.body)
        self.body += len(data)

    def _run(self):
        try:
            while True:
                b = self.sock.recv(1 << 20)
                if not b:
                    self.ending = "eof"
                    break
                if b"\r\n\r\n" not in self.head:
                    self.head += b
                    if b"\r\n\r\n" not in self.head:
                        continue
                    b = self.head[self.head.index(b"\r\n\r\n") + 4:]
                    self.head = self.head[: self.head.index(b"\r\n\r\n") + 4]
                self._check(b)
                if self.expect_len is not None and self.body >= self.expect_len:
                    self.ending = "complete"
                    break
        except ConnectionResetError:
            self.ending = "reset"
        except OSError as e:
            self.ending = f"error {e!r}"
        self.ended_at = time.monotonic()
        self.sock.close()


def start_readers(port, per_kind=3):
    readers = [Reader(port, f"/bytes/{BIG}") for _ in range(per_kind)]
    readers += [Reader(port, f"/bytes-close/{BIG}") for _ in range(per_kind)]
    wait_for(lambda: all(r.body > (256 << 10) for r in readers), 60, "every download under way")
    return readers


def first_served_read(port, t_from, timeout):
    wait_for(lambda: kv_ok(port, "again", timeout=5), timeout, "a read served again",
             interval=0.05)
    return time.monotonic() - t_from


def check_readers(readers, record_property):
    corrupted = sum(r.corrupted for r in readers)
    endings = [r.ending for r in readers]
    # A clean end of a body that never ends is a silent loss: count what it lacked.
    lost = sum(BIG - r.body for r in readers if r.ending in ("eof", "complete"))
    record_property("corrupted_bytes", corrupted)
    record_property("lost_bytes", lost)
    assert corrupted == 0, [(r.ending, r.body, r.corrupted) for r in readers]
    assert endings == ["reset"] * len(readers), endings
    assert lost == 0


@pytest.mark.parametrize("direction", ["up", "down"],
                         ids=["bridge-to-broker", "broker-to-bridge"])
def test_T15_a_byte_flipped_in_a_tls_record_fails_the_link_and_no_corrupted_byte_reaches_a_wrapper(
        env, direction, record_property):
    broker, bridge, wan = wan_tunnel(env)
    readers = start_readers(broker.service_port)
    t0 = time.monotonic()
    wan.flip_next_record(direction)
    wait_for(lambda: wan.status()["flipped"] == 1, 10, "the flip")
    # The receiving side's TLS refuses the record (bad_record_mac): the link fails.
    receiver = broker if direction == "up" else bridge
    receiver.wait_log(r"TLS record error", timeout=20)
    detect = time.monotonic() - t0
    wait_for(lambda: all(r.ending for r in readers), 20, "every download to end")
    check_readers(readers, record_property)
    bridge.wait_log(r"link to the broker lost", timeout=20)
    recover = first_served_read(broker.service_port, t0, 30)
    record_property("detect_s", round(detect, 3))
    record_property("recover_s", round(recover, 3))
    print(f"T-15 {direction}: detect {detect:.3f} s, recover {recover:.3f} s")
    assert broker.count(r"conn=\d+ bridge connected") >= 2  # a new link, not the old one
    assert detect < 5 and recover < 15, (detect, recover)


def test_T14_a_fin_without_close_notify_on_the_link_resets_every_stream_never_a_clean_end(
        env, record_property):
    broker, bridge, wan = wan_tunnel(env)
    readers = start_readers(broker.service_port)
    t0 = time.monotonic()
    assert wan.fin() == 1
    bridge.wait_log(r"link to the broker lost", timeout=20)
    detect = time.monotonic() - t0
    wait_for(lambda: all(r.ending for r in readers), 20, "every download to end")
    check_readers(readers, record_property)
    # Both ends call it a transport failure (CANCEL, or TRUNCATED inside a frame),
    # never a clean close.
    for d in (broker, bridge):
        d.wait_log(r"link error (CANCEL|TRUNCATED)", timeout=10)
        assert "closed cleanly" not in d.text()
    recover = first_served_read(broker.service_port, t0, 30)
    record_property("detect_s", round(detect, 3))
    record_property("recover_s", round(recover, 3))
    why = bridge.wait_log(r"link to the broker lost: [^\n]*").group(0)
    print(f"T-14: detect {detect:.3f} s, recover {recover:.3f} s; bridge: {why}")
    assert detect < 5 and recover < 15, (detect, recover)


def test_FI61_an_rst_on_the_link_resets_every_stream_and_the_bridge_reconnects(
        env, record_property):
    broker, bridge, wan = wan_tunnel(env)
    readers = start_readers(broker.service_port)
    t0 = time.monotonic()
    assert wan.rst() == 1
    bridge.wait_log(r"link to the broker lost", timeout=20)
    detect = time.monotonic() - t0
    wait_for(lambda: all(r.ending for r in readers), 20, "every download to end")
    check_readers(readers, record_property)
    recover = first_served_read(broker.service_port, t0, 30)
    record_property("detect_s", round(detect, 3))
    record_property("recover_s", round(recover, 3))
    print(f"FI-61: detect {detect:.3f} s, recover {recover:.3f} s")
    assert detect < 2 and recover < 10, (detect, recover)


def test_FI62_a_link_stalled_30_s_ends_at_the_dead_peer_timeout_and_comes_back_after_resume(
        env, record_property):
    # --pending-timeout 20: a wrapper that arrives while no link is up is held that long.
    broker, bridge, wan = wan_tunnel(env, broker_extra=["--pending-timeout", "20"])
    port = broker.service_port
    assert kv_ok(port, "before")
    readers = start_readers(port, per_kind=2)  # in flight when the link stalls
    t0 = time.monotonic()
    wan.stall("both")
    # A wrapper that starts during the stall, while the link still looks up: its stream
    # is opened over the stalled link and must be reset with it, not left hanging.
    during = Reader(port, "/v1/secret/data/during")
    lost = bridge.wait_log(r"link to the broker lost: [^\n]*", timeout=30)
    detect = time.monotonic() - t0
    broker.wait_log(r"bridge disconnected|link error", timeout=15)
    wait_for(lambda: all(r.ending for r in readers) and during.ending, 15,
             "the streams of the stalled link to end")
    check_readers(readers, record_property)
    assert during.ending == "reset", during.ending
    # A wrapper that arrives after the link died is held until the bridge is back.
    held = {}
    th = threading.Thread(target=lambda: held.update(ok=kv_ok(port, "held", timeout=40)))
    th.start()
    stall_left = 30 - (time.monotonic() - t0)
    assert stall_left > 0, "the dead-peer timeout came later than the stall's end"
    time.sleep(stall_left)  # the stall is the fault: it lasts 30 s by definition
    t1 = time.monotonic()
    wan.resume()
    recover = first_served_read(port, t1, 40)
    th.join(45)
    record_property("detect_s", round(detect, 3))
    record_property("recover_s", round(recover, 3))
    print(f"FI-62: detect {detect:.3f} s ({lost.group(0)}), recover {recover:.3f} s after resume")
    assert "TIMEOUT" in lost.group(0), lost.group(0)
    assert 14 <= detect <= 22, detect  # 15 s dead-peer timeout, checked on 5 s pings
    assert held.get("ok") is True
    assert recover < 12, recover


def test_a_beacon_link_with_an_emulator_on_each_leg_carries_reads_and_recovers_from_an_rst(env):
    """The emulator fits between a beacon and each side as well: broker and bridge each
    reach the beacon through one (half the link's round trip each, 40 ms in all unless
    CT_LINK_RTT_MS says), a body crosses intact, and an RST on the bridge's leg resets
    the link, which pairs again and serves."""
    import hashlib
    from beacon_world import World, linked
    from harness import bytes_body_sha256, http_get
    world = World(env)
    rtt = link_rtt_ms() or 40
    up = env.kv()
    legs = {}
    for side in ("broker", "bridge"):
        legs[side] = Wan("127.0.0.1", world.beacon.port, rtt_ms=rtt / 2,
                         log_path=env._log(f"wanem-{side}"))
        env.wans.append(legs[side])

    def through(wan):
        return lambda key=None: ["--beacon-address", f"127.0.0.1:{wan.port}", "--beacon-ca",
                                 world.beacon.ca, "--pairing-key-file", key or world.key]
    world.beacon_flags = through(legs["broker"])
    broker = world.broker()
    world.beacon_flags = through(legs["bridge"])
    bridge = world.bridge(up.addr)
    linked(broker, bridge, timeout=30)
    n = 8 << 20
    status, body = http_get(broker.service_port, f"/bytes/{n}", timeout=60)
    assert status == 200 and hashlib.sha256(body).hexdigest() == bytes_body_sha256(n)
    assert legs["broker"].status()["bytes_up"] > 0 and legs["bridge"].status()["bytes_up"] > n
    assert legs["bridge"].rst() == 1
    bridge.wait_log(r"link to the broker lost", timeout=20)
    wait_for(lambda: kv_ok(broker.service_port, "again"), 40, "a read through the re-paired link")
