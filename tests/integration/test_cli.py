"""Bad command lines and files: one clear line on stderr, exit 2."""
import subprocess

import pytest

from harness import BRIDGE, BROKER, pin_of


def run(argv):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=20)
    return r.returncode, r.stderr.decode()


@pytest.fixture
def files(env):
    return env


def broker_args(env, **over):
    a = {"--bridge-listen": "127.0.0.1:0", "--service-listen": "127.0.0.1:0",
         "--cert": env.broker_crt, "--key": env.broker_key, "--ca-cert": env.pki.ca_crt,
         "--bridge-pin": env.bridge_pin}
    a.update(over)
    out = [BROKER]
    for k, v in a.items():
        if v is not None:
            out += [k, v]
    return out


def bridge_args(env, **over):
    a = {"--broker-address": "127.0.0.1:1", "--vault-addr": "http://127.0.0.1:8200",
         "--client-cert": env.bridge_crt, "--client-key": env.bridge_key,
         "--ca-cert": env.pki.ca_crt, "--broker-pin": env.broker_pin}
    a.update(over)
    out = [BRIDGE, "--allow-plaintext-streams"]
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
    "cluster name with a space": ({"--cluster-name": "prod eu"}, "bad --cluster-name"),
    "empty cluster name": ({"--cluster-name": ""}, "--cluster-name needs a non-empty value"),
    "cluster name too long": ({"--cluster-name": "c" * 64}, "bad --cluster-name (1 to 63"),
    "cluster name not ASCII": ({"--cluster-name": "pr\u00f6d"}, "bad --cluster-name"),
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
                                    "--ca-cert", "--bridge-pin", "--pending-timeout",
                                    "--cluster-name"]),
                          (BRIDGE, ["--broker-address", "--vault-addr", "--client-cert",
                                    "--client-key", "--ca-cert", "--broker-pin",
                                    "--proxy-protocol"])):
        rc, _ = run([binary, "--version"])
        assert rc == 0
        r = subprocess.run([str(binary), "--help"], capture_output=True, timeout=10)
        assert r.returncode == 0
        for f in flags:
            assert f.encode() in r.stdout, f


def _seed_bridge(env, cert_dir):
    """The seed's exact flags, with its /etc/bridge/ files in `cert_dir`."""
    return [str(BRIDGE), "--broker-address", "127.0.0.1:1", "--vault-addr", "http://127.0.0.1:8200",
            "--client-cert", str(cert_dir / "tls.crt"), "--client-key", str(cert_dir / "tls.key"),
            "--ca-cert", str(cert_dir / "ca.crt")]


def _etc_bridge(env, with_service):
    import shutil
    d = env.tmp / "etc-bridge"
    d.mkdir()
    shutil.copy(env.bridge_crt, d / "tls.crt")
    shutil.copy(env.bridge_key, d / "tls.key")
    shutil.copy(env.pki.ca_crt, d / "ca.crt")
    (d / "broker.pin").write_text(f"# the broker's key (cloudtaser-certs writes this)\n"
                                  f"{pin_of(env.broker_crt)}\n")
    if with_service:
        crt, key = env.pki.issue("service", "serverAuth",
                                 sans=("DNS:cloudtaser-broker.cloudtaser-system.svc",))
        shutil.copy(crt, d / "service.crt")
        shutil.copy(key, d / "service.key")
    return d


def test_the_seed_bridge_command_line_starts_when_service_crt_sits_beside_tls_crt(env):
    # The seed's command names no service certificate; the bridge finds
    # service.crt/service.key beside --client-cert and terminates wrapper TLS.
    import signal
    import time
    p = subprocess.Popen(_seed_bridge(env, _etc_bridge(env, True)), stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        seen = b""
        while b"reconnecting in" not in seen and time.monotonic() < deadline:
            seen += p.stderr.read1(4096)
        assert b"ready" in seen and b"reconnecting in" in seen, seen
    finally:
        import os
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def test_without_a_service_certificate_the_bridge_refuses_to_carry_plaintext(env):
    rc, err = run(_seed_bridge(env, _etc_bridge(env, False)))
    assert rc == 2
    assert err.count("\n") == 1 and "would cross the broker in plaintext" in err, err


def _ipc_rows(binary, process):
    r = subprocess.run([str(binary), "--ipc-policy", process], capture_output=True, timeout=10)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    out = r.stdout.decode()
    return out, [line.split() for line in out.splitlines() if not line.startswith("#")]


def test_ipc_policy_prints_who_may_send_each_process_what_when_and_how_much():
    # The rows come from the daemons' process tables (broker/procs.h,
    # bridge/procs.h): sender, message, fd, size cap, phase, once.
    out, rows = _ipc_rows(BROKER, "tls")
    assert out.startswith("# cloudtaser-broker tls: "), out
    assert ["parent", "SETTINGS", "-", "4096", "before", "SETTINGS", "once"] == rows[0][:7], out
    assert ["parent", "LISTENER", "fd", "0", "after", "SETTINGS", "once"] in rows, out
    assert any(r[:2] == ["parent", "PEER_CHANNEL"] and "PEER_RING" in r for r in rows), out
    _, rows = _ipc_rows(BROKER, "parent")
    assert ["tls", "STATUS", "-", "1024", "after", "READY", "-"] in rows
    # The broker dials only in beacon mode, and names the beacon (one byte).
    assert ["tls", "DIAL_REQUEST", "-", "1", "after", "READY", "-"] in rows, rows
    assert not any(r[1] == "DRAINED" for r in rows), rows  # nothing sends it
    out, rows = _ipc_rows(BRIDGE, "parent")
    assert out.startswith("# vault-bridge parent: "), out
    assert ["tls", "DIAL_REQUEST", "-", "1", "after", "READY", "-"] in rows, out
    assert ["forward", "READY", "-", "0", "before", "READY", "once"] == \
        [r[:7] for r in rows if r[0] == "forward"][0], out
    _, rows = _ipc_rows(BRIDGE, "forward")
    assert ["parent", "PING", "-", "8", "any", "time", "-"] in rows
    assert not any(r[1] == "LISTENER" for r in rows), rows  # the bridge listens nowhere


def test_ipc_policy_refuses_an_unknown_process_with_one_line_and_exit_2():
    for binary, name in ((BROKER, "cloudtaser-broker"), (BRIDGE, "vault-bridge")):
        for argv in (["--ipc-policy", "monitor"], ["--ipc-policy"],
                     ["--ipc-policy", "tls", "forward"]):
            rc, err = run([binary] + argv)
            assert rc == 2, argv
            assert err.count("\n") == 1 and err.startswith(name + ": --ipc-policy"), err
