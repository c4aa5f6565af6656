"""Bad command lines and files: one clear line on stderr, exit 2."""
import subprocess

import pytest

from harness import BRIDGE, BROKER


def run(argv):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=20)
    return r.returncode, r.stderr.decode()


@pytest.fixture
def files(env):
    return env


def broker_args(env, **over):
    a = {"--bridge-listen": "127.0.0.1:0", "--service-listen": "127.0.0.1:0",
         "--cert": env.broker_crt, "--key": env.broker_key, "--ca-cert": env.pki.ca_crt}
    a.update(over)
    out = [BROKER]
    for k, v in a.items():
        if v is not None:
            out += [k, v]
    return out


def bridge_args(env, **over):
    a = {"--broker-address": "127.0.0.1:1", "--vault-addr": "http://127.0.0.1:8200",
         "--client-cert": env.bridge_crt, "--client-key": env.bridge_key,
         "--ca-cert": env.pki.ca_crt}
    a.update(over)
    out = [BRIDGE]
    for k, v in a.items():
        if v is not None:
            out += [k, v]
    return out


BROKER_CASES = {
    "unknown flag": ({"--frobnicate": "1"}, "unknown flag --frobnicate"),
    "missing cert": ({"--cert": None}, "missing required flag --cert"),
    "unreadable key": ({"--key": "/nonexistent/broker.key"}, "cannot read /nonexistent/broker.key"),
    "key of another cert": ({"--key": "BRIDGE_KEY"}, "private key does not match the certificate"),
    "CA file is a key": ({"--ca-cert": "BROKER_KEY"}, "CA file holds no PEM certificate"),
    "bad pin": ({"--bridge-pin": "sha256//notbase64!"}, "bad --bridge-pin"),
    "bad listen": ({"--service-listen": "nowhere"}, "bad --service-listen"),
    "name for listen": ({"--service-listen": "localhost:8443"}, "must be numeric"),
    "bad timeout": ({"--pending-timeout": "soon"}, "bad --pending-timeout"),
}


@pytest.mark.parametrize("case", sorted(BROKER_CASES))
def test_broker_rejects_a_bad_command_line_with_one_line_and_exit_2(env, case):
    over, expect = BROKER_CASES[case]
    over = {k: {"BRIDGE_KEY": env.bridge_key, "BROKER_KEY": env.broker_key}.get(v, v)
            for k, v in over.items()}
    rc, err = run(broker_args(env, **over))
    assert rc == 2
    assert err.count("\n") == 1, err
    assert err.startswith("cloudtaser-broker: ") and expect in err, err


BRIDGE_CASES = {
    "unknown flag": ({"--listen": "0.0.0.0:1"}, "unknown flag --listen"),
    "missing vault": ({"--vault-addr": None}, "missing required flag --vault-addr"),
    "bad scheme": ({"--vault-addr": "tcp://127.0.0.1:8200"}, "bad --vault-addr"),
    "path in vault": ({"--vault-addr": "http://127.0.0.1:8200/v1"}, "only scheme, host and port"),
    "bad broker": ({"--broker-address": "broker.example.com"}, "bad --broker-address"),
    "unreadable cert": ({"--client-cert": "/nonexistent.crt"}, "cannot read /nonexistent.crt"),
    "key of another cert": ({"--client-key": "BROKER_KEY"}, "private key does not match"),
    "short pin": ({"--broker-pin": "sha256//AAAA"}, "bad --broker-pin"),
    "bad level": ({"--log-level": "loud"}, "bad --log-level"),
}


@pytest.mark.parametrize("case", sorted(BRIDGE_CASES))
def test_bridge_rejects_a_bad_command_line_with_one_line_and_exit_2(env, case):
    over, expect = BRIDGE_CASES[case]
    over = {k: {"BROKER_KEY": env.broker_key}.get(v, v) for k, v in over.items()}
    rc, err = run(bridge_args(env, **over))
    assert rc == 2
    assert err.count("\n") == 1, err
    assert err.startswith("vault-bridge: ") and expect in err, err


def test_help_and_version_exit_0_and_document_every_flag():
    for binary, flags in ((BROKER, ["--bridge-listen", "--service-listen", "--cert", "--key",
                                    "--ca-cert", "--bridge-pin", "--pending-timeout"]),
                          (BRIDGE, ["--broker-address", "--vault-addr", "--client-cert",
                                    "--client-key", "--ca-cert", "--broker-pin"])):
        rc, _ = run([binary, "--version"])
        assert rc == 0
        r = subprocess.run([str(binary), "--help"], capture_output=True, timeout=10)
        assert r.returncode == 0
        for f in flags:
            assert f.encode() in r.stdout, f


def test_the_seed_bridge_command_line_is_accepted(env):
    # The seed's exact flags (paths swapped for this test's files): the bridge
    # starts, reports ready and keeps retrying the unreachable broker.
    import signal
    p = subprocess.Popen([str(BRIDGE), "--broker-address", "127.0.0.1:1",
                          "--vault-addr", "http://127.0.0.1:8200",
                          "--client-cert", str(env.bridge_crt),
                          "--client-key", str(env.bridge_key),
                          "--ca-cert", str(env.pki.ca_crt)],
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        import time
        deadline = time.monotonic() + 10
        seen = b""
        while b"reconnecting in" not in seen and time.monotonic() < deadline:
            seen += p.stderr.read1(4096)
        assert b"ready" in seen and b"reconnecting in" in seen, seen
    finally:
        import os
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
