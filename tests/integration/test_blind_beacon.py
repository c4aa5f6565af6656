"""The beacon is blind (docs/beacon.md): what it relays is the link's own mutual TLS, so a
canary secret fetched through it many times appears in no byte any beacon process reads or
writes (strace) and nowhere in their memory (gcore), while the client did get it. It holds
even with streams carried in plaintext inside the link (--allow-plaintext-streams), where the
broker does see the canary: the control that proves the detector works."""
import os
import secrets
import shutil
import signal
import subprocess

import pytest

from beacon_world import linked, world  # noqa: F401 (world: a fixture)
from harness import SANITIZER_BUILD
from test_blind_broker import SVC, fetch_over_tls, fetch_plain, hexed, trace

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("strace"),
                                reason="tracing another user's processes needs root and strace")


def no_canary_in_memory(daemon, canary, tmp):
    # Not under ASan: its terabytes of mapped shadow memory make a core file that fills the disk.
    if SANITIZER_BUILD:
        return
    for pid in [daemon.proc.pid, *daemon.children().values()]:
        r = subprocess.run(["gcore", "-o", str(tmp / "core"), str(pid)], capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr[-500:]
        core = tmp / f"core.{pid}"
        data = core.read_bytes()
        assert len(data) > 100_000
        assert canary.encode() not in data, f"canary in the memory of pid {pid}"
        core.unlink()


def test_the_beacon_neither_reads_nor_holds_a_canary_that_wrappers_fetch_over_tls(world, env):
    svc = env.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
    up = env.kv()
    broker = world.broker()
    bridge = world.bridge(up.addr, service=svc)
    linked(broker, bridge)
    canary = "canary" + secrets.token_hex(16)
    st = trace(world.beacon, env.tmp / "beacon.strace")
    bodies = fetch_over_tls(env, broker.service_port, canary, 50)
    st.send_signal(signal.SIGINT)
    st.wait(20)
    assert all(b.startswith(b"HTTP/1.1 200") and f"s3cr3t-{canary}".encode() in b for b in bodies)
    text = (env.tmp / "beacon.strace").read_text(errors="replace")
    assert text.count("write(") + text.count("sendto(") + text.count("writev(") > 50, \
        "the trace caught no traffic"
    assert hexed(canary.encode()) not in text and canary not in text
    no_canary_in_memory(world.beacon, canary, env.tmp)


def test_even_plaintext_streams_cross_the_beacon_encrypted(world, env):
    up = env.kv()
    broker = world.broker()
    bridge = world.bridge(up.addr)  # --allow-plaintext-streams: the broker reads them
    linked(broker, bridge)
    canary = "canary" + secrets.token_hex(16)
    beacon_trace = trace(world.beacon, env.tmp / "beacon.strace")
    broker_trace = trace(broker, env.tmp / "broker.strace")
    bodies = fetch_plain(broker.service_port, canary, 20)
    for st in (beacon_trace, broker_trace):
        st.send_signal(signal.SIGINT)
        st.wait(20)
    assert all(f"s3cr3t-{canary}".encode() in b for b in bodies)
    # The control: the broker, an end of the link, reads it...
    assert hexed(canary.encode()) in (env.tmp / "broker.strace").read_text(errors="replace")
    # ...the beacon in the middle never does.
    text = (env.tmp / "beacon.strace").read_text(errors="replace")
    assert text.count("write(") + text.count("sendto(") + text.count("writev(") > 20
    assert hexed(canary.encode()) not in text and canary not in text
    no_canary_in_memory(world.beacon, canary, env.tmp)
