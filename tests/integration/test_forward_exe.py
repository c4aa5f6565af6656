"""The forwarding process runs its own executable, <daemon>-forward, which
links no OpenSSL (docs/privsep.md): what it maps, how the daemon finds it,
and what happens when it is missing or from another version."""
import os
import shutil
import signal
import socket
import subprocess

import pytest

from harness import (BRIDGE, BRIDGE_FWD, BROKER, BROKER_FWD, ROOT, SANITIZER_BUILD as ASAN, Daemon,
                     free_port, wait_for)

production_only = pytest.mark.skipif(ASAN, reason="sanitizer build: sandbox in log mode")
# The children are not dumpable: their maps and exe links are root's to read.
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="reading a sandboxed child's /proc entries needs root")
VERSION = (ROOT / "VERSION").read_text().strip()
DAEMONS = {"broker": ("cloudtaser-broker", BROKER, BROKER_FWD),
           "bridge": ("vault-bridge", BRIDGE, BRIDGE_FWD)}


def needed(path):
    """The DT_NEEDED entries of an ELF file."""
    out = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, check=True,
                         text=True).stdout
    return [l.split("[", 1)[1].rstrip("]") for l in out.splitlines() if "(NEEDED)" in l]


def mapped_libraries(pid):
    """Base names of the files mapped into a process."""
    names = set()
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            names.add(os.path.basename(parts[5].strip()))
    return names


def daemon_argv(env, which, exe, port=0):
    """A command line that passes every start-up check, for `exe`."""
    if which == "broker":
        return [exe, "--bridge-listen", "127.0.0.1:0", "--service-listen", f"127.0.0.1:{port}",
                "--cert", env.broker_crt, "--key", env.broker_key, "--ca-cert", env.pki.ca_crt,
                "--bridge-pin", env.bridge_pin]
    return [exe, "--broker-address", "127.0.0.1:1", "--vault-addr", "http://127.0.0.1:8200",
            "--client-cert", env.bridge_crt, "--client-key", env.bridge_key,
            "--ca-cert", env.pki.ca_crt, "--allow-plaintext-streams", "--broker-pin",
            env.broker_pin]


def run(argv, timeout=20):
    r = subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@needs_root
def test_the_forwarding_processes_run_their_own_executable_and_map_no_openssl_under_traffic(env):
    broker, bridge, _ = env.tunnel()
    # A large download read only in part: flow control holds the stream open
    # through both forwarding processes while their maps are read.
    s = socket.create_connection(("127.0.0.1", broker.service_port), timeout=10)
    try:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: kv\r\n\r\n" % (256 << 20))
        assert s.recv(65536).startswith(b"HTTP/1.1 200 "), "no response through the tunnel"
        for d, (_, daemon, fwd) in ((broker, DAEMONS["broker"]), (bridge, DAEMONS["bridge"])):
            kids = d.children()
            assert os.readlink(f"/proc/{kids['forward']}/exe") == str(fwd.resolve())
            assert os.readlink(f"/proc/{kids['tls']}/exe") == str(daemon.resolve())
            tls_libs, fwd_libs = mapped_libraries(kids["tls"]), mapped_libraries(kids["forward"])
            # Control: the same reading finds OpenSSL where it must be.
            assert any(n.startswith("libssl.so") for n in tls_libs), sorted(tls_libs)
            assert any(n.startswith("libcrypto.so") for n in tls_libs), sorted(tls_libs)
            assert not [n for n in fwd_libs if n.startswith(("libssl", "libcrypto"))], \
                sorted(fwd_libs)
        assert s.recv(65536), "the stream ended while the maps were read"
    finally:
        s.close()


def test_the_forward_executables_need_neither_libssl_nor_libcrypto():
    for _, daemon, fwd in DAEMONS.values():
        assert any(n.startswith("libssl.so") for n in needed(daemon)), needed(daemon)  # control
        libs = needed(fwd)
        assert libs and not [n for n in libs if n.startswith(("libssl", "libcrypto"))], libs


def test_the_forwarding_code_lives_only_in_the_forward_executables():
    for name, daemon, fwd in DAEMONS.values():
        ns = "broker" if name == "cloudtaser-broker" else "bridge"
        sym = f"ct::{ns}::forward_main()"

        def defines(path):
            out = subprocess.run(["nm", "-C", "--defined-only", str(path)], capture_output=True,
                                 check=True, text=True).stdout
            return any(l.split(" ", 2)[-1] == sym for l in out.splitlines())
        assert defines(fwd), f"{fwd} does not define {sym}"
        assert not defines(daemon), f"{daemon} still holds {sym}"


@pytest.mark.parametrize("which", sorted(DAEMONS))
@pytest.mark.parametrize("helper", ["missing", "not executable"])
def test_a_missing_or_unexecutable_forward_executable_is_one_line_naming_the_paths_and_exit_2(
        env, which, helper):
    name, daemon, fwd = DAEMONS[which]
    bindir = env.tmp / "bin"
    bindir.mkdir()
    shutil.copy(daemon, bindir / name)
    if helper == "not executable":
        shutil.copy(fwd, bindir / f"{name}-forward")
        os.chmod(bindir / f"{name}-forward", 0o644)
    port = free_port()
    rc, _, err = run(daemon_argv(env, which, bindir / name, port))
    assert rc == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"{name}: cannot find its forwarding executable {name}-forward; "
                          "tried "), err
    beside = f"{bindir}/{name}-forward (" + \
        ("Permission denied" if helper == "not executable" else "No such file or directory")
    assert beside in err, err
    assert f"{env.tmp}/libexec/cloudtaser/{name}-forward (No such file or directory)" in err, err
    if which == "broker":  # it stopped before binding: the port is still free
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_the_forward_hooks_of_a_daemon_run_its_forward_executable(env):
    for name, daemon, fwd in DAEMONS.values():
        direct = run([fwd, "--sandbox-policy", "forward"])
        assert direct[0] == 0 and direct[1].startswith(f"# {name} forward: seccomp allowlist")
        assert run([daemon, "--sandbox-policy", "forward"])[:2] == direct[:2]
        # Alone, the daemon has no forwarding sandbox of its own to print.
        alone = env.tmp / name
        shutil.copy(daemon, alone)
        rc, out, err = run([alone, "--sandbox-policy", "forward"])
        assert (rc, out) == (2, "") and "cannot find its forwarding executable" in err, err


@needs_root
def test_the_daemon_finds_its_forward_executable_in_libexec_through_a_symlink(env):
    # The packages' layout (/usr/bin and /usr/libexec/cloudtaser), started
    # through a symlink elsewhere (the guide's /usr/local/bin/vault-bridge).
    name, daemon, fwd = DAEMONS["broker"]
    usr = env.tmp / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "libexec" / "cloudtaser").mkdir(parents=True)
    (env.tmp / "local").mkdir()
    shutil.copy(daemon, usr / "bin" / name)
    shutil.copy(fwd, usr / "libexec" / "cloudtaser" / f"{name}-forward")
    os.symlink(usr / "bin" / name, env.tmp / "local" / name)
    d = Daemon(daemon_argv(env, "broker", env.tmp / "local" / name), env.tmp / "broker.log")
    env.daemons.append(d)
    d.wait_log(r"\[parent\] info: ready")
    pid = wait_for(lambda: d.children().get("forward"), 10, "the forwarding process")
    assert os.readlink(f"/proc/{pid}/exe") == f"{usr}/libexec/cloudtaser/{name}-forward"


def _other_version(src, dst):
    """A copy of a forward executable that says it is another version: the
    NUL-terminated CT_VERSION strings rewritten, same length."""
    other = "".join("9" if c.isdigit() else c for c in VERSION)
    if other == VERSION:
        other = VERSION.replace("9", "8")
    data = open(src, "rb").read()
    assert data.count(VERSION.encode() + b"\0") >= 1
    open(dst, "wb").write(data.replace(VERSION.encode() + b"\0", other.encode() + b"\0"))
    os.chmod(dst, 0o755)
    rc, out, _ = run([dst, "--version"])
    assert (rc, out.split()[-1]) == (0, other), out  # the copy really is "another version"
    return other


@pytest.mark.parametrize("which", sorted(DAEMONS))
def test_a_forward_executable_of_another_version_stops_the_daemon_with_exit_2(env, which):
    name, daemon, fwd = DAEMONS[which]
    shutil.copy(daemon, env.tmp / name)
    other = _other_version(fwd, env.tmp / f"{name}-forward")
    d = Daemon(daemon_argv(env, which, env.tmp / name), env.tmp / "daemon.log")
    env.daemons.append(d)
    assert d.wait_exit(15) == 2, d.text()
    log = d.text()
    assert (f"{name}[forward] error: refusing to run: this executable is version {other} "
            f"and its daemon is version {VERSION}") in log, log
    assert (f"{name}: the forward process refused to run: {env.tmp}/{name}-forward is not from "
            f"{name} {VERSION} (install the daemon and its helper from one package)"
            ) in log.splitlines(), log
    # Restarting the same file cannot help: the Supervisor does not try.
    assert "restarting forward process" not in log, log


@needs_root
def test_a_restarted_forwarding_process_execs_the_file_the_daemon_started_with(env):
    # A package upgrade replaces the helper by rename; a forwarding process
    # restarted afterwards must run the file the daemon opened at start (the
    # new one, of another version, would refuse and stop the daemon).
    name, daemon, fwd = DAEMONS["broker"]
    shutil.copy(daemon, env.tmp / name)
    shutil.copy(fwd, env.tmp / f"{name}-forward")
    d = Daemon(daemon_argv(env, "broker", env.tmp / name), env.tmp / "broker.log")
    env.daemons.append(d)
    d.wait_log(r"\[parent\] info: ready")
    first = wait_for(lambda: d.children().get("forward"), 10, "the forwarding process")
    _other_version(fwd, env.tmp / "upgrade")
    os.rename(env.tmp / "upgrade", env.tmp / f"{name}-forward")
    os.kill(first, signal.SIGKILL)

    def restarted():
        pid = d.children().get("forward")
        return pid if pid not in (None, first) else None
    second = wait_for(restarted, 10, "a restarted forwarding process")
    d.wait_log(r"started forward process pid=%d" % second)
    assert os.readlink(f"/proc/{second}/exe") == f"{env.tmp}/{name}-forward (deleted)"
    assert d.proc.poll() is None and "refusing to run" not in d.text(), d.text()


@pytest.mark.parametrize("which", sorted(DAEMONS))
def test_a_forward_executable_run_by_hand_says_it_is_an_internal_helper_and_exits_2(which):
    name, _, fwd = DAEMONS[which]
    for args in ([], ["--help"], ["--child=tls"], ["--sandbox-policy", "tls"], [name]):
        rc, out, err = run([fwd, *args])
        assert (rc, out) == (2, ""), (args, rc, out)
        assert err == (f"{name}-forward: an internal helper of {name} (its forwarding process), "
                       f"started by it; run {name} instead\n"), (args, err)
    assert run([fwd, "--version"])[:2] == (0, f"{name}-forward {VERSION}\n")
    # The child flag without its daemon's version: refused like another version.
    rc, _, err = run([fwd, "--child=forward"])
    assert rc == 78 and "its daemon gave no version" in err, (rc, err)


@production_only
@pytest.mark.parametrize("which", sorted(DAEMONS))
def test_a_forbidden_call_kills_the_forward_executable_itself(which):
    _, _, fwd = DAEMONS[which]
    r = subprocess.run([str(fwd), "--sandbox-probe", "forward", "execve"], capture_output=True,
                       timeout=10)
    assert r.returncode == -signal.SIGSYS, r.stderr
