import os
import sys
from pathlib import Path

import pytest

from harness import Bridge, Broker, EchoUpstream, KvUpstream, Pki, pin_of

PIN_FLAGS = ("--bridge-pin", "--bridge-pin-file", "--broker-pin", "--broker-pin-file",
             "--insecure-no-pin")


def _with_pin(extra, flag, pin):
    """`extra` plus `flag pin`, unless the test chose its own pins (or none)."""
    extra = list(extra)
    if any(a.split("=")[0] in PIN_FLAGS for a in map(str, extra)):
        return extra
    return [flag, pin, *extra]


def _with_log_level(extra):
    """`extra` plus `--log-level $CT_DAEMON_LOG_LEVEL` when that is set (`debug` for a
    rare failure's logs: which dial, which link, which deadline), unless the test chose."""
    level = os.environ.get("CT_DAEMON_LOG_LEVEL")
    extra = list(extra)
    if not level or any(str(a).startswith("--log-level") for a in extra):
        return extra
    return [*extra, "--log-level", level]


class Env:
    """A per-test world: its own CA and certificates, upstreams, daemons."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.pki = Pki(tmp_path / "pki")
        self.broker_crt, self.broker_key = self.pki.issue("broker", "serverAuth")
        self.bridge_crt, self.bridge_key = self.pki.issue("bridge", "clientAuth")
        self.broker_pin, self.bridge_pin = pin_of(self.broker_crt), pin_of(self.bridge_crt)
        self.daemons = []
        self.upstreams = []
        self.wans = []  # link emulators that bridge() put in front of a broker (CT_LINK_RTT_MS)
        self._n = 0

    def broker_files(self):
        return (self.broker_crt, self.broker_key, self.pki.ca_crt)

    def bridge_files(self):
        return (self.bridge_crt, self.bridge_key, self.pki.ca_crt)

    def _log(self, name):
        self._n += 1
        return self.tmp / f"{self._n:02d}-{name}.log"

    def kv(self, **kw):
        u = KvUpstream(**kw)
        self.upstreams.append(u)
        return u

    def echo(self):
        u = EchoUpstream()
        self.upstreams.append(u)
        return u

    def broker(self, files=None, extra=(), **kw):
        # Pinned by default, as deployed: the broker admits this test's bridge key.
        extra = _with_pin(extra, "--bridge-pin", self.bridge_pin)
        extra = _with_log_level(extra)
        b = Broker(files or self.broker_files(), self._log("broker"), extra=extra, **kw)
        self.daemons.append(b)
        return b

    def bridge(self, broker_port, vault_addr, files=None, extra=(), **kw):
        extra = _with_pin(extra, "--broker-pin", self.broker_pin)
        extra = _with_log_level(extra)
        # Only the KV stand-in answers OpenBao's health endpoint. Any other
        # upstream (an echo server, one that resets, a port nobody listens on)
        # would be unreachable, and the broker would send it no stream at all:
        # a test of how streams end there runs with polling off unless it says.
        if (not any(isinstance(u, KvUpstream) and u.addr == vault_addr for u in self.upstreams)
                and not any(str(a).startswith("--vault-health-interval") for a in extra)):
            extra = [*extra, "--vault-health-interval", "0"]
        # CT_LINK_RTT_MS=40: the link crosses a WAN emulator with that round trip
        # (tests/wan/, docs/wan.md); `self.wans[-1]` is the one of this bridge.
        if os.environ.get("CT_LINK_RTT_MS"):
            wan_dir = str(Path(__file__).resolve().parents[1] / "wan")
            if wan_dir not in sys.path:
                sys.path.insert(0, wan_dir)
            from wan import Wan
            wan = Wan("127.0.0.1", broker_port, rtt_ms=float(os.environ["CT_LINK_RTT_MS"]),
                      log_path=self._log("wanem"))
            self.wans.append(wan)
            broker_port = wan.port
        b = Bridge(files or self.bridge_files(), self._log("bridge"), broker_port, vault_addr,
                   extra=extra, **kw)
        self.daemons.append(b)
        return b

    def tunnel(self, upstream=None, broker_extra=(), bridge_extra=()):
        """Broker + bridge connected, in front of `upstream` (a KV stand-in by default)."""
        up = upstream or self.kv()
        broker = self.broker(extra=broker_extra)
        bridge = self.bridge(broker.bridge_port, up.addr, extra=bridge_extra)
        broker.wait_log(r"conn=\d+ bridge connected")
        bridge.wait_log(r"connected to the broker")
        return broker, bridge, up

    def close(self):
        for d in reversed(self.daemons):
            d.kill()
        for u in self.upstreams:
            u.close()
        for w in self.wans:
            w.close()


# Tests that measure the machine (a delay to the millisecond, a rate, memory
# and socket-queue peaks, a bound of one second) and so must not share it with
# other tests: `make integration` runs every other test several at a time
# (pytest-xdist) and these afterwards, one at a time.
SERIAL = (
    "test_wanem.py::test_the_one_way_delay_is_accurate_to_a_millisecond",
    "test_wanem.py::test_an_asymmetric_delay_is_applied_per_direction",
    "test_wanem.py::test_a_new_connection_pays_the_tcp_handshake_round_trip",
    "test_wanem.py::test_the_rate_cap_holds_within_5_percent",
    "test_wanem.py::test_bulk_throughput_without_a_cap",
    "test_wrapper_lifecycle.py::test_the_broker_stays_within_its_memory_budget",
    "test_wrapper_lifecycle.py::test_the_bridge_stays_within_its_memory_budget",
    "test_beacon_relay.py::test_a_thousand_unpaired_connections_from_one_source",
    "test_edge.py::test_probes_keep_answering_within_1s",
    "test_parent.py::test_the_bridge_serves_again_within_a_second",
    "test_resource_faults.py::test_FI58",
    "test_soak_smoke.py::",  # RSS within 5 %, failures only inside fault windows
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes long; run with CT_SLOW=1")
    config.addinivalue_line("markers", "serial: measures the machine; never run beside others")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(s in item.nodeid for s in SERIAL):
            item.add_marker(pytest.mark.serial)
    if os.environ.get("CT_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: set CT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()
