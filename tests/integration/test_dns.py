"""FI-28: the broker's name does not resolve in time. The bridge's parent looks the name up on
every dial; a DNS server that takes queries and never answers must not freeze it: it still
restarts a dead child at once, gives up on the lookup at the dial deadline (and the TLS process
backs off and retries), and stops on SIGTERM. Everything runs in a network namespace of its own
whose resolv.conf points at a black hole on its loopback (`ip netns exec` mounts
/etc/netns/<name>/resolv.conf over /etc/resolv.conf)."""
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import BRIDGE, Daemon, wait_for

BLACKHOLE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    s.recvfrom(4096)
    print("query", flush=True)
"""


@pytest.fixture
def dark_dns_netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    ns = f"ct-dns-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / ns
    subprocess.run(["ip", "netns", "add", ns], check=True)
    hole = None
    try:
        etc.mkdir(parents=True)
        # One try of 30 s: without the fix, the parent sat in getaddrinfo() all that time.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        hole = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", BLACKHOLE],
                                stdout=subprocess.PIPE, text=True)
        assert hole.stdout.readline().strip() == "ready"
        yield ns, hole
    finally:
        if hole is not None:
            hole.kill()
            hole.wait(5)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def _next_query(hole, timeout):
    """Waits for the black hole to swallow one DNS query."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([hole.stdout], [], [], max(0.0, end - time.monotonic()))
        if r and hole.stdout.readline().strip() == "query":
            return True
    return False


def test_a_dns_server_that_never_answers_does_not_freeze_the_bridge_parent(env, dark_dns_netns):
    ns, hole = dark_dns_netns
    crt, key, ca = env.bridge_files()
    bridge = Daemon(["ip", "netns", "exec", ns, BRIDGE,
                     "--broker-address", "broker.cloudtaser.test:9443",
                     "--vault-addr", "http://127.0.0.1:8200", "--client-cert", crt,
                     "--client-key", key, "--ca-cert", ca, "--allow-plaintext-streams",
                     "--broker-pin", env.broker_pin],
                    env.tmp / "dns-bridge.log")
    env.daemons.append(bridge)
    assert _next_query(hole, 10), "the bridge never asked for the broker's address"

    # A child dies while the lookup hangs: the parent restarts it at once.
    before = wait_for(lambda: bridge.children().get("forward"), 5, "the forwarding process")
    os.kill(before, signal.SIGKILL)
    assert wait_for(lambda: bridge.children().get("forward") not in (None, before), 3,
                    "a new forwarding process while the lookup hangs")

    # The lookup is given up at the dial deadline (10 s), and the TLS process retries.
    bridge.wait_log(r"cannot resolve broker\.cloudtaser\.test: no answer within 10 s", timeout=15)
    assert _next_query(hole, 5), "no retry after the lookup was given up"

    # SIGTERM while the retry's lookup hangs: the bridge stops promptly and cleanly.
    t0 = time.monotonic()
    bridge.signal(signal.SIGTERM)
    assert bridge.wait_exit(5) == 0
    assert time.monotonic() - t0 < 5
