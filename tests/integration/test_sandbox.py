"""The sandbox holds (catalog S-01..S-03): every child is confined, forbidden
calls kill it, and the forwarding process never holds the private key."""
import os
import re
import signal
import subprocess

import pytest

from harness import BRIDGE, BROKER, http_get

# Sanitizer builds (make asan) run the filter in log mode: nothing is killed,
# and ASan's shadow memory makes memory scans meaningless. Those checks run on
# the production build in make test.
ASAN = "asan" in os.environ.get("CT_BUILD", "")
production_only = pytest.mark.skipif(ASAN, reason="sanitizer build: sandbox in log mode")


def status_fields(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def test_every_child_runs_with_seccomp_no_new_privs_no_capabilities_and_not_as_root(env):
    broker, bridge, _ = env.tunnel()
    assert http_get(broker.service_port, "/v1/secret/data/s")[0] == 200
    for d in (broker, bridge):
        kids = d.children()
        assert set(kids) == {"tls", "forward"}
        for role, pid in kids.items():
            st = status_fields(pid)
            who = f"{d.argv[0]} {role}"
            assert st["Seccomp"] == "2", who
            assert int(st["Seccomp_filters"]) >= 1, who
            assert st["NoNewPrivs"] == "1", who
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(st[cap], 16) == 0, (who, cap, st[cap])
            if os.geteuid() == 0:
                uids = st["Uid"].split()
                assert all(u != "0" for u in uids), (who, st["Uid"])
                assert int(st["CapBnd"], 16) == 0, (who, st["CapBnd"])


FORBIDDEN = ["execve", "openat", "ptrace", "mprotect-exec", "mmap-exec", "fork", "x32", "int80"]
CASES = [(b, p, c) for b in ("broker", "bridge") for p in ("tls", "forward") for c in FORBIDDEN]
CASES += [(b, "tls", "socket") for b in ("broker", "bridge")]
CASES += [(b, "tls", "connect") for b in ("broker", "bridge")]
CASES += [("broker", "forward", "socket"), ("broker", "forward", "connect")]


@production_only
@pytest.mark.parametrize("binary,process,call", CASES)
def test_a_forbidden_call_kills_the_process_with_sigsys(binary, process, call):
    exe = BROKER if binary == "broker" else BRIDGE
    r = subprocess.run([str(exe), "--sandbox-probe", process, call], capture_output=True,
                       timeout=10)
    assert r.returncode == -signal.SIGSYS, (binary, process, call, r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("binary,process,call", [
    ("broker", "tls", "none"), ("broker", "forward", "none"),
    ("bridge", "tls", "none"), ("bridge", "forward", "none"),
    ("bridge", "forward", "socket"),  # it connects to OpenBao: socket() is its to make
])
def test_the_same_probe_survives_what_its_policy_allows(binary, process, call):
    exe = BROKER if binary == "broker" else BRIDGE
    r = subprocess.run([str(exe), "--sandbox-probe", process, call], capture_output=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def test_every_policy_gives_a_reason_for_every_syscall():
    for exe in (BROKER, BRIDGE):
        for process in ("tls", "forward"):
            out = subprocess.run([str(exe), "--sandbox-policy", process], capture_output=True,
                                 check=True, text=True).stdout
            rules = [l for l in out.splitlines() if l and not l.startswith("#")]
            assert len(rules) >= 20
            for l in rules:
                assert re.search(r"# \S", l), l
            assert not any(l.split()[0] in ("execve", "open", "openat", "ptrace", "fork", "clone")
                           for l in rules)


def _key_forms(key_path):
    """The private key as the parent reads it (PEM body lines) and as OpenSSL
    holds it (the 32-byte scalar, big- and little-endian)."""
    pem = open(key_path).read()
    lines = [l for l in pem.splitlines() if l and not l.startswith("-----")]
    text = subprocess.run(["openssl", "pkey", "-in", str(key_path), "-text", "-noout"],
                          capture_output=True, check=True, text=True).stdout
    m = re.search(r"priv:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
    scalar = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))[-32:]
    return [l.encode() for l in lines if len(l) >= 40], [scalar, scalar[::-1]]


def _memory(pid):
    data = bytearray()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                data += mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                pass
    return bytes(data)


@production_only
@pytest.mark.skipif(os.geteuid() != 0, reason="reading another user's memory needs root")
def test_the_forwarding_process_memory_holds_no_private_key_bytes(env):
    broker, bridge, _ = env.tunnel()
    for _ in range(5):
        assert http_get(broker.service_port, "/v1/secret/data/k")[0] == 200
    for d, key in ((broker, env.broker_key), (bridge, env.bridge_key)):
        pem_lines, scalars = _key_forms(key)
        kids = d.children()
        fwd = _memory(kids["forward"])
        for l in pem_lines:
            assert l not in fwd
        for s in scalars:
            assert s not in fwd
        # Control: the same search finds the key where it must be, in the TLS process.
        tls = _memory(kids["tls"])
        assert any(s in tls for s in scalars), "the memory scan cannot see the key at all"


def test_docs_sandbox_md_lists_exactly_the_policies_the_binaries_enforce():
    from harness import ROOT
    doc = (ROOT / "docs" / "sandbox.md").read_text()
    for exe, name in ((BROKER, "cloudtaser-broker"), (BRIDGE, "vault-bridge")):
        for process in ("tls", "forward"):
            out = subprocess.run([str(exe), "--sandbox-policy", process], capture_output=True,
                                 check=True, text=True).stdout
            assert f"### {name} {process}\n\n```\n{out}```" in doc, \
                f"docs/sandbox.md is stale for {name} {process}: regenerate its policy block"


def _landlock_net_abi():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) -> ABI version
    return libc.syscall(444, None, 0, 1)


@production_only
@pytest.mark.skipif(_landlock_net_abi() < 4, reason="this kernel's Landlock has no network rules")
def test_landlock_lets_the_bridge_forwarding_process_connect_to_the_vault_port_only():
    # The probe policy is built for a --vault-addr on port 8200.
    ok = subprocess.run([str(BRIDGE), "--sandbox-probe", "forward", "connect-port:8200"],
                        capture_output=True, timeout=10)
    denied = subprocess.run([str(BRIDGE), "--sandbox-probe", "forward", "connect-port:8201"],
                            capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    assert denied.returncode == 13, denied.stderr  # EACCES from Landlock
