"""Beacon mode worlds for the integration tests: one beacon (beacon_client.Beacon), one
pairing key, and brokers and bridges started in beacon mode against it."""
import base64
import os

import pytest

from beacon_client import Beacon
from harness import BRIDGE, BROKER, Daemon, wait_for


def pairing_key(path, seed=None):
    key = seed if seed is not None else os.urandom(32)
    path.write_text(base64.b64encode(key).decode() + "\n")
    path.chmod(0o600)
    return path


class World:
    """One beacon, one pairing key, brokers and bridges in beacon mode."""

    def __init__(self, env, beacon_port=0):
        self.env = env
        self.key = pairing_key(env.tmp / "pairing.key")
        self.beacon = self.start_beacon(beacon_port)

    def start_beacon(self, port=0, reuse=None, client_ca=False):
        b = Beacon(self.env.tmp, listen_port=port, reuse=reuse, client_ca=client_ca)
        self.env.daemons.append(b)
        return b

    def beacon_flags(self, key=None):
        return ["--beacon-address", f"127.0.0.1:{self.beacon.port}", "--beacon-ca",
                self.beacon.ca, "--pairing-key-file", key or self.key]

    def broker(self, extra=(), key=None):
        crt, k, ca = self.env.broker_files()
        d = Daemon([BROKER, "--service-listen", "127.0.0.1:0", "--cert", crt, "--key", k,
                    "--ca-cert", ca, "--bridge-pin", self.env.bridge_pin,
                    *self.beacon_flags(key), *extra], self.env._log("broker"))
        self.env.daemons.append(d)
        m = d.wait_log(r"beacon relay mode: waiting for bridges at .* listening for wrappers "
                       r"on 127\.0\.0\.1:(\d+)")
        d.service_port = int(m.group(1))
        d.wait_log(r"\[parent\] info: ready")
        return d

    def bridge(self, vault_addr, files=None, extra=(), key=None, service=None):
        """`service=(crt, key)`: wrappers' TLS ends in the bridge, as deployed; without it
        streams are carried unchanged (--allow-plaintext-streams)."""
        crt, k, ca = files or self.env.bridge_files()
        mode = (["--service-cert", service[0], "--service-key", service[1]] if service
                else ["--allow-plaintext-streams"])
        d = Daemon([BRIDGE, "--vault-addr", vault_addr, "--client-cert", crt,
                    "--client-key", k, "--ca-cert", ca, "--broker-pin", self.env.broker_pin,
                    *mode, *self.beacon_flags(key), *extra], self.env._log("bridge"))
        self.env.daemons.append(d)
        return d


@pytest.fixture
def world(env):
    return World(env)


def linked(broker, bridge, n=1, timeout=15):
    broker.wait_log(r"conn=\d+ bridge connected", timeout)
    wait_for(lambda: bridge.count(r"linked to broker instance") >= n, timeout,
             f"{n} link(s) through the beacon")
