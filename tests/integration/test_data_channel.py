"""The data channel between a daemon's TLS and forwarding processes: its bytes travel through
shared-memory rings (a sealed memfd from the parent, shared/ipc/shm_ring.h), its wake-ups and EOF
through a socketpair. These tests look at the real processes: both children map the same
rings, a restart maps fresh ones and leaks none, and a process that sees an impossible ring
position (what a compromised sibling could write) ends itself and the tunnel recovers."""
import os
import signal
import struct

import pytest

from harness import kv_ok, wait_for

RING_NAME = "memfd:cloudtaser-data-channel"
# shared/ipc/shm_ring.cc: direction 0 (tls -> forward) at offset 0 of the header, head at +64.
HEAD0 = 64


def _write_head(mapping, value):
    fd = os.open(mapping, os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<Q", value), HEAD0)
    finally:
        os.close(fd)


def _read_head(mapping):
    fd = os.open(mapping, os.O_RDONLY)
    try:
        return struct.unpack("<Q", os.pread(fd, 8, HEAD0))[0]
    finally:
        os.close(fd)


def _rings(pid):
    """(address range, inode) of each data-channel ring mapping of a process."""
    out = []
    for line in open(f"/proc/{pid}/maps"):
        if RING_NAME in line:
            f = line.split()
            out.append((f[0], int(f[4])))
    return out


@pytest.mark.parametrize("daemon", ["broker", "bridge"])
def test_both_children_map_the_same_rings_and_a_restart_maps_fresh_ones_without_a_leak(env, daemon):
    broker, bridge, _ = env.tunnel()
    assert kv_ok(broker.service_port)
    d = broker if daemon == "broker" else bridge
    kids = d.children()
    tls, fwd = _rings(kids["tls"]), _rings(kids["forward"])
    assert len(tls) == 1 and len(fwd) == 1, (tls, fwd)
    assert tls[0][1] == fwd[0][1], "the two processes map different files"
    first = tls[0][1]
    for i in range(3):
        before = d.children()["forward"]
        os.kill(before, signal.SIGKILL)
        wait_for(lambda: d.children().get("forward") not in (None, before), 10,
                 "a new forwarding process")
        assert wait_for(lambda: kv_ok(broker.service_port, f"r{i}"), 20,
                        "a request after the restart")
    kids = d.children()
    tls, fwd = _rings(kids["tls"]), _rings(kids["forward"])
    # The surviving TLS process unmapped each replaced channel: one mapping, a new file.
    assert len(tls) == 1 and len(fwd) == 1, (tls, fwd)
    assert tls[0][1] == fwd[0][1] and tls[0][1] != first


def test_an_impossible_ring_position_ends_the_process_that_sees_it_and_the_tunnel_recovers(env):
    if os.geteuid() != 0:
        pytest.skip("writing another process's mapping through /proc/<pid>/map_files needs root")
    broker, bridge, _ = env.tunnel()
    assert kv_ok(broker.service_port)
    kids = broker.children()
    (rng, _inode), = _rings(kids["tls"])
    mapping = f"/proc/{kids['tls']}/map_files/{rng}"
    # What a compromised forwarding process could publish: a read position far beyond
    # anything the TLS process wrote (it would let the TLS process overwrite unread bytes).
    impossible = 1 << 40
    seen = r"data channel ring: the peer's read position is impossible"
    # The real forwarding process publishes its read position whenever it reads: a frame still
    # in the ring when the impossible one is written (the first request's close, late on a slow
    # build) overwrites it before the TLS process looks (make asan, 2026-12-03). It is written
    # again only when the ring shows it was overwritten; left in place and not seen, it fails.
    for attempt in range(5):
        _write_head(mapping, impossible)
        kv_ok(broker.service_port, f"trigger{attempt}")  # its next write checks the position
        try:
            broker.wait_log(seen, 3)
            break
        except AssertionError:
            assert _read_head(mapping) != impossible, (
                "the impossible read position stayed in the ring and the TLS process did not see it")
    else:
        pytest.fail("the forwarding process overwrote the impossible position 5 times in a row")
    broker.wait_log(r"the forwarding process broke the data channel; exiting")
    wait_for(lambda: broker.children().get("tls") not in (None, kids["tls"]), 10,
             "a new TLS process")
    bridge.wait_log(r"link to the broker lost")
    assert wait_for(lambda: kv_ok(broker.service_port, "after"), 20,
                    "a request through the recovered tunnel")
    # Nothing but the TLS process was restarted.
    assert broker.children()["forward"] == kids["forward"]
