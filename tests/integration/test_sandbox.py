"""The sandbox holds (catalog S-01..S-03): every child is confined, forbidden
calls kill it, and the forwarding process never holds the private key."""
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness import (BRIDGE, BROKER, BUILD, SANITIZER_BUILD as ASAN, Daemon, http_get, kv_ok,
                     wait_for)

# Sanitizer builds (make asan) run the filter in log mode: nothing is killed,
# and ASan's shadow memory makes memory scans meaningless. Those checks run on
# the production build in make test.
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
    allowed = {-signal.SIGSYS}
    if call == "int80" and not _kernel_runs_int80():
        # A kernel with IA32 emulation off (ia32_emulation=0, or built to
        # default it off) faults int 0x80 itself before seccomp sees it: the
        # call never runs either way, and the process dies of SIGSEGV.
        allowed.add(-signal.SIGSEGV)
    assert r.returncode in allowed, (binary, process, call, r.returncode, r.stderr)


def _kernel_runs_int80():
    """Whether int 0x80 reaches the system call table here: read from the
    kernel's ia32_emulation switch when it has one."""
    try:
        return Path("/sys/module/kernel/parameters/ia32_emulation").read_text().strip() in ("Y", "1")
    except OSError:
        pass
    # The switch is not exposed on every kernel: ask a child to try int 0x80
    # (getpid, 20 in the 32-bit table) with no sandbox; SIGSEGV means refused.
    code = ("import ctypes,mmap\n"
            "buf=mmap.mmap(-1,4096,prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)\n"
            "buf.write(bytes([0xb8,20,0,0,0,0xcd,0x80,0xc3]))\n"
            "f=ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))\n"
            "f()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10)
    return r.returncode == 0


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
    for exe, name in ((BROKER, "cloudtaser-broker"), (BRIDGE, "vault-bridge"),
                      (BUILD / "cloudtaser-beacon", "cloudtaser-beacon")):
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


# ------------------------------------------------ signals, fcntl, socket types

PROCESSES = [(b, p) for b in ("broker", "bridge") for p in ("tls", "forward")]


def probe(binary, process, call, env_extra=None):
    exe = BROKER if binary == "broker" else BRIDGE
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([str(exe), "--sandbox-probe", process, call], capture_output=True,
                          timeout=10, env=env)


class Victim:
    """A process of our own user for a confined child to aim signals at."""

    def __enter__(self):
        self.proc = subprocess.Popen(["sleep", "60"])
        return self.proc

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(timeout=10)


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call", ["kill", "tkill", "tgkill"])
def test_a_signal_to_another_process_of_the_same_user_kills_the_sender_not_the_target(
        binary, process, call):
    with Victim() as victim:
        r = probe(binary, process, f"{call}:{victim.pid}")
        assert r.returncode == -signal.SIGSYS, (call, r.returncode, r.stderr)
        assert victim.poll() is None, "the signal reached the other process"


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_a_child_may_signal_itself_with_sigabrt_only(binary, process):
    # tgkill to its own pid and tid is allowed for abort(); SIGSTOP is not.
    r = probe(binary, process, "tgkill-self-sigstop")
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call,says", [("abort", b"check failed"),
                                       ("chk-fail", b"buffer overflow detected")])
def test_a_failed_check_or_fortify_check_inside_the_sandbox_still_aborts_with_sigabrt(
        binary, process, call, says):
    # CT_CHECK and _FORTIFY_SOURCE both end in abort(): its message and its
    # tgkill(own pid, own tid, SIGABRT) must pass the filter, or a crash
    # would read as a sandbox violation (SIGSYS).
    r = probe(binary, process, call)
    assert r.returncode == -signal.SIGABRT, (r.returncode, r.stderr)
    assert says in r.stderr, r.stderr


@pytest.mark.parametrize("binary,process", PROCESSES)
def test_a_child_with_a_second_thread_refuses_to_enter_the_sandbox(binary, process):
    # Landlock and the own-tid signal rule would confine the calling thread only.
    r = probe(binary, process, "second-thread")
    assert r.returncode == 70, (r.returncode, r.stderr)
    assert b"more than one thread" in r.stderr and b"refusing to run unconfined" in r.stderr


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call", ["fcntl-setown", "fcntl-setsig", "fcntl-async", "fcntl-dupfd"])
def test_fcntl_cannot_aim_sigio_anywhere_or_dup_without_cloexec(binary, process, call):
    r = probe(binary, process, call)
    assert r.returncode == -signal.SIGSYS, (call, r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call", ["fcntl-nonblock", "fcntl-dupfd-cloexec"])
def test_the_fcntl_commands_the_code_uses_still_work(binary, process, call):
    r = probe(binary, process, call)
    assert r.returncode == 0, (call, r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call", ["socket-udp", "socket-mptcp", "socket-sctp", "socket-raw",
                                  "socket-unix"])
def test_no_child_can_create_a_udp_mptcp_sctp_raw_or_unix_socket(binary, process, call):
    r = probe(binary, process, call)
    assert r.returncode == -signal.SIGSYS, (call, r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
@pytest.mark.parametrize("call", ["setsockopt-ulp", "setsockopt-attach-filter"])
def test_setsockopt_cannot_reach_kernel_tls_or_socket_filters(binary, process, call):
    r = probe(binary, process, call)
    assert r.returncode == -signal.SIGSYS, (call, r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_setsockopt_for_the_tcp_options_the_code_sets_still_works(binary, process):
    r = probe(binary, process, "setsockopt-nodelay")
    assert r.returncode == 0, (r.returncode, r.stderr)


@production_only
@pytest.mark.parametrize("call", ["socket", "socket-tcp"])
def test_the_bridge_forwarding_process_can_still_create_its_tcp_sockets(call):
    # socket(AF_INET, SOCK_STREAM, 0) and (AF_INET6, SOCK_STREAM|NONBLOCK|CLOEXEC, IPPROTO_TCP)
    r = probe("bridge", "forward", call)
    assert r.returncode == 0, (call, r.returncode, r.stderr)


@production_only
def test_the_broker_out_of_fds_sheds_bridge_connections_and_survives_its_filter(
        env, tmp_path, monkeypatch):
    # The EMFILE path (net.h accept_peer) gives back a spare fd, accepts and
    # closes, and takes the spare again with F_DUPFD_CLOEXEC: all inside the
    # filter. The broker runs under a low fd limit (soft = hard, so raising the
    # soft one changes nothing). The service port pauses before the fd limit on
    # purpose (so /metrics keeps its fds); the bridge port's handshake pool is
    # larger than 48 fds, so silent sockets from several sources reach EMFILE in
    # the TLS process, which runs the same accept code as the forwarding process.
    import harness
    limited = tmp_path / "broker-with-48-fds"
    limited.write_text(f'#!/bin/sh\nexec prlimit --nofile=48:48 -- "{BROKER}" "$@"\n')
    limited.chmod(0o755)
    monkeypatch.setattr(harness, "BROKER", limited)
    broker, _, _ = env.tunnel()
    assert kv_ok(broker.service_port)
    tls = broker.children()["tls"]
    flood = []
    try:
        for i in range(64):
            s = socket.socket()
            s.bind((f"127.0.0.{2 + i % 16}", 0))
            s.settimeout(5)
            flood.append(s)
            try:
                s.connect(("127.0.0.1", broker.bridge_port))
            except ConnectionResetError:
                pass  # shed at EMFILE before connect() returned: an RST, by design
        broker.wait_log(r"\[tls\] warn: .*out of file descriptors", timeout=10)
    finally:
        for c in flood:
            c.close()
    wait_for(lambda: kv_ok(broker.service_port), 15, "a wrapper served after the flood")
    assert broker.children()["tls"] == tls, "the TLS process was restarted"
    assert broker.count(r"killed by signal") == 0, broker.text()


# ------------------------------------------------ Landlock

LANDLOCK_ABI = _landlock_net_abi()
needs_scopes = pytest.mark.skipif(LANDLOCK_ABI < 6, reason="this kernel's Landlock has no scopes")


@needs_scopes
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_landlock_alone_keeps_a_signal_from_leaving_the_sandbox(binary, process):
    # The landlock-* probes enter everything but seccomp: this is Landlock's own answer.
    with Victim() as victim:
        r = probe(binary, process, f"landlock-kill:{victim.pid}")
        assert r.returncode == 13, (r.returncode, r.stderr)  # EPERM
        assert victim.poll() is None
    # Control: on ABI 5 (no scopes) the same probe kills the victim.
    with Victim() as victim:
        r = probe(binary, process, f"landlock-kill:{victim.pid}",
                  {"CT_SANDBOX_PROBE_LANDLOCK_ABI": "5"})
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert victim.wait(timeout=10) == -signal.SIGKILL


@needs_scopes
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_landlock_alone_refuses_a_connect_to_an_abstract_unix_socket_made_outside(binary,
                                                                                   process):
    name = f"ct-probe-{uuid.uuid4().hex[:12]}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)
        listener.listen(4)
        r = probe(binary, process, f"landlock-abstract:{name}")
        assert r.returncode == 13, (r.returncode, r.stderr)  # EPERM
        # Control: without scopes (ABI 5) the connect goes through.
        r = probe(binary, process, f"landlock-abstract:{name}",
                  {"CT_SANDBOX_PROBE_LANDLOCK_ABI": "5"})
        assert r.returncode == 0, (r.returncode, r.stderr)


@pytest.mark.skipif(LANDLOCK_ABI < 1, reason="this kernel has no Landlock")
def test_every_child_logs_the_landlock_abi_in_force_once_at_start(env):
    broker, bridge, _ = env.tunnel()
    assert http_get(broker.service_port, "/v1/secret/data/s")[0] == 200
    for d in (broker, bridge):
        for role in ("tls", "forward"):
            rx = rf"\[{role}\] \w+: landlock ABI (\d+): fs rules, net rules (\w+), scopes (\w+)"
            found = re.findall(rx, d.text())
            assert len(found) == 1, (d.argv[0], role, found, d.text())
            abi, net, scopes = found[0]
            assert int(abi) == LANDLOCK_ABI
            assert net == ("yes" if LANDLOCK_ABI >= 4 else "no")
            assert scopes == ("yes" if LANDLOCK_ABI >= 6 else "no")


@pytest.mark.skipif(LANDLOCK_ABI < 6, reason="needs a kernel at ABI 6 to tell the two apart")
def test_a_daemon_ignores_the_probes_landlock_abi_override(env, monkeypatch):
    # Only --sandbox-probe reads it: a unit's environment cannot lower a child's sandbox.
    monkeypatch.setenv("CT_SANDBOX_PROBE_LANDLOCK_ABI", "2")
    broker, bridge, _ = env.tunnel()
    for d in (broker, bridge):
        for role in ("tls", "forward"):
            d.wait_log(rf"\[{role}\] info: landlock ABI {LANDLOCK_ABI}: fs rules, net rules "
                       r"yes, scopes yes")
        assert "landlock ABI 2" not in d.text()


@pytest.mark.skipif(LANDLOCK_ABI < 6, reason="needs a kernel at ABI 6 to show the lower ones")
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_on_an_older_landlock_abi_the_start_line_names_what_is_missing(binary, process):
    # Debian 12's 6.1 kernel: ABI 2. Net rules need 4, scopes 6.
    r = probe(binary, process, "none", {"CT_SANDBOX_PROBE_LANDLOCK_ABI": "2"})
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stderr.decode().splitlines() if "landlock ABI" in l]
    assert len(line) == 1, r.stderr
    assert " warn: landlock ABI 2: fs rules, net rules no (needs ABI 4" in line[0], line
    assert "scopes no (needs ABI 6" in line[0], line
    r = probe(binary, process, "none", {"CT_SANDBOX_PROBE_LANDLOCK_ABI": "5"})
    assert "landlock ABI 5: fs rules, net rules yes, scopes no (needs ABI 6" in r.stderr.decode()
    r = probe(binary, process, "none")
    assert f"info: landlock ABI {LANDLOCK_ABI}: fs rules, net rules yes, scopes yes" \
        in r.stderr.decode(), r.stderr


@production_only
@pytest.mark.parametrize("binary,process", PROCESSES)
def test_without_landlock_the_start_line_says_so_and_seccomp_still_refuses_files(binary,
                                                                                 process):
    no_landlock = {"CT_SANDBOX_PROBE_LANDLOCK_ABI": "0"}
    r = probe(binary, process, "none", no_landlock)
    assert r.returncode == 0, r.stderr
    assert b"warn: landlock unavailable (capped to 0 for this probe): fs rules no, net rules " \
        b"no, scopes no; seccomp alone confines this process" in r.stderr, r.stderr
    r = probe(binary, process, "openat", no_landlock)
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


# ---------------------------------------------------------------- S-08
STRACE_CALLS = ("setresgid,setgroups,setresuid,capset,prctl,landlock_restrict_self,seccomp,"
                "accept4,connect")


def _traced(env, which, trace, extra_strace=()):
    """The broker (which='broker') or a bridge to `env`'s last broker, under
    `strace -f`, its trace written to `trace`."""
    pre = ["strace", "-ff", "-q", "-o", str(trace), "-e", f"trace={STRACE_CALLS}", *extra_strace]
    if which == "broker":
        d = Daemon([*pre, BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen",
                    "127.0.0.1:0", "--cert", env.broker_crt, "--key", env.broker_key,
                    "--ca-cert", env.pki.ca_crt, "--bridge-pin", env.bridge_pin],
                   env._log("broker-strace"))
    else:
        broker, up = which
        d = Daemon([*pre, BRIDGE, "--broker-address", f"127.0.0.1:{broker.bridge_port}",
                    "--vault-addr", up.addr, "--client-cert", env.bridge_crt, "--client-key",
                    env.bridge_key, "--ca-cert", env.pki.ca_crt, "--broker-pin", env.broker_pin,
                    "--allow-plaintext-streams"], env._log("bridge-strace"))
    env.daemons.append(d)
    return d


def _calls_by_pid(trace):
    """pid -> [(syscall line, result)] in order, and pid -> exit status, from the
    per-process files strace -ff wrote (`trace`.PID)."""
    calls, exits = {}, {}
    for f in Path(trace).parent.glob(Path(trace).name + ".*"):
        pid = int(f.suffix[1:])
        calls[pid] = []
        for rest in f.read_text().splitlines():
            e = re.match(r"\+\+\+ exited with (\d+) \+\+\+", rest)
            if e:
                exits[pid] = int(e.group(1))
                continue
            r = re.search(r"\) += (-?\d+)", rest)
            if r:
                calls[pid].append((rest, int(r.group(1))))
    return calls, exits


def _first(calls, pattern, ok=True):
    for i, (line, rc) in enumerate(calls):
        if re.match(pattern, line) and (rc >= 0 if ok else True):
            return i
    return None


NET = r"(accept4|connect)\(\d+, \{sa_family=AF_INET6?"
SECCOMP_LOAD = r"seccomp\(SECCOMP_SET_MODE_FILTER, [^,]*, \{len="


def test_S08_each_child_drops_user_and_capabilities_then_no_new_privs_landlock_seccomp_before_the_network(env):
    # docs/sandbox.md: the order of sandbox entry. Each step needs the one
    # before (no_new_privs lets an unprivileged process load a filter; Landlock
    # before seccomp because the filter forbids its calls), and none of it may
    # come after the first byte from the network. strace -f watches each child
    # from fork to its first accept/connect on a TCP socket.
    up = env.kv()
    btrace, rtrace = env.tmp / "broker.trace", env.tmp / "bridge.trace"
    broker = _traced(env, "broker", btrace)
    m = broker.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                        r"127\.0\.0\.1:(\d+)")
    broker.bridge_port, broker.service_port = int(m.group(1)), int(m.group(2))
    bridge = _traced(env, (broker, up), rtrace)
    broker.wait_log(r"conn=\d+ bridge connected")
    assert http_get(broker.service_port, "/v1/secret/data/s")[0] == 200
    root = os.geteuid() == 0
    for name, trace in (("broker", btrace), ("bridge", rtrace)):
        calls, _ = _calls_by_pid(trace)
        children = {pid: c for pid, c in calls.items() if _first(c, SECCOMP_LOAD) is not None}
        assert len(children) == 2, f"{name}: {len(children)} processes loaded a filter"
        # The broker's TLS process accepts bridges, the bridge's forwarding
        # process connects to OpenBao: at least one child per daemon meets the net.
        assert any(_first(c, NET, ok=False) is not None for c in children.values()), name
        for pid, c in children.items():
            steps = {"user": _first(c, r"setresuid\(") if root else -4,
                     "capabilities": _first(c, r"capset\(.*effective=0, permitted=0") if root
                     else -3,
                     "no_new_privs": _first(c, r"prctl\(PR_SET_NO_NEW_PRIVS, 1"),
                     "landlock": _first(c, r"landlock_restrict_self\("),
                     "seccomp": _first(c, SECCOMP_LOAD)}
            assert None not in steps.values(), (name, pid, steps)
            order = sorted(steps, key=steps.get)
            assert order == list(steps), (name, pid, order)
            net = _first(c, NET, ok=False)
            if net is not None:
                assert net > steps["seccomp"], (name, pid, c[net][0])
            # Nothing of the user switch or the capability drop is undone later.
            assert _first(c[steps["seccomp"]:], r"(setres[ug]id|capset)\(") is None, (name, pid)


@pytest.mark.parametrize("call,says", [
    ("landlock_restrict_self", "landlock_restrict_self: Operation not permitted"),
    ("setresuid", "cannot switch user"),
])
def test_S08_a_sandbox_step_that_fails_ends_the_child_before_it_touches_the_network(env, call,
                                                                                      says):
    if call == "setresuid" and os.geteuid() != 0:
        pytest.skip("the user switch happens only when started as root")
    trace = env.tmp / "broker.trace"
    broker = _traced(env, "broker", trace, ("-e", f"inject={call}:error=EPERM"))
    # The child says why and exits 70; a child that cannot start is fatal to
    # the daemon at start-up, so the parent exits too rather than run without it.
    rc = broker.wait_exit(20)
    assert rc != 0
    assert re.search(rf"sandbox: cloudtaser-broker (tls|forward): {says}.*refusing to run "
                     rf"unconfined", broker.text()), broker.text()
    calls, exits = _calls_by_pid(trace)
    failed = [pid for pid, c in calls.items()
              if any(re.match(rf"{call}\(", line) and rc < 0 for line, rc in c)]
    assert failed, calls
    for pid in failed:
        assert exits.get(pid) == 70, (pid, exits.get(pid))
        c = calls[pid]
        assert _first(c, SECCOMP_LOAD) is None and _first(c, NET, ok=False) is None, \
            (pid, c[-3:])
    assert broker.count(r"\[parent\] info: ready") == 0
