"""vault-bridge --status-file (node_exporter textfile collector) and the
bridge's promise of no listening port: issue 5, "the bridge opens no listening
TCP port at all; it reports its state in logs and, optionally, to a textfile
for node_exporter"."""
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness import BRIDGE, free_port, http_get, labelled, not_after_of, pin_of, wait_for


def sample(text, name):
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def read(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def check_format(text):
    """HELP and TYPE before each sample, and promtool's verdict when it is installed
    (make check-metrics installs it and checks this file too)."""
    families = []
    for line in text.splitlines():
        m = re.fullmatch(r"# (HELP|TYPE) ([a-z_]+) .+", line)
        if m:
            families.append((m.group(1), m.group(2)))
            continue
        m = re.fullmatch(r'([a-z_]+)(\{[a-z_]+="[^"\\\n]*"(,[a-z_]+="[^"\\\n]*")*\})? '
                         r'-?[0-9]+(\.[0-9]+)?', line)
        assert m, line
        assert families[-2:] == [("HELP", m.group(1)), ("TYPE", m.group(1))], line
    assert text.endswith("\n")
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def link_up(path):
    return sample(read(path), "cloudtaser_bridge_link_up")


def test_status_file_says_down_before_the_broker_exists_up_after_and_down_when_it_dies(env):
    up = env.kv()
    status = env.tmp / "textfile" / "vault-bridge.prom"
    status.parent.mkdir()
    bport = free_port()
    bridge = env.bridge(bport, up.addr, extra=["--status-file", status])
    # Written once at start, before any link: down.
    wait_for(lambda: link_up(status) == 0, 10, "the status file saying link down")
    text = read(status)
    check_format(text)
    assert sample(text, "cloudtaser_bridge_links_up") == 0
    assert sample(text, 'cloudtaser_bridge_build_info') == 1
    assert re.search(r'^cloudtaser_bridge_build_info\{version="[^"]+"\} 1$', text, re.M)
    started = sample(text, "cloudtaser_bridge_start_time_seconds")
    first_change = sample(text, "cloudtaser_bridge_last_change_timestamp_seconds")
    assert started and first_change >= started
    bridge.wait_log(r"reconnecting in \d+ ms")

    broker = env.broker(bridge_port=bport)
    broker.wait_log(r"conn=\d+ bridge connected", timeout=20)
    wait_for(lambda: link_up(status) == 1, 10, "the status file saying link up")
    text = read(status)
    check_format(text)
    assert sample(text, "cloudtaser_bridge_links_up") == 1
    assert sample(text, "cloudtaser_bridge_last_change_timestamp_seconds") > first_change
    assert sample(text, "cloudtaser_bridge_start_time_seconds") == started
    assert http_get(broker.service_port, "/v1/secret/data/st")[0] == 200
    assert b"s3cr3t" not in status.read_bytes()
    # The file is replaced by rename, never left half-written or with its .tmp.
    assert not Path(str(status) + ".tmp").exists()
    assert (status.stat().st_mode & 0o777) == 0o644

    broker.kill()
    bridge.wait_log(r"link to the broker lost")
    wait_for(lambda: link_up(status) == 0, 10, "the status file saying link down again")
    check_format(read(status))
    assert sample(read(status), "cloudtaser_bridge_links_up") == 0
    assert sorted(p.name for p in status.parent.iterdir()) == ["vault-bridge.prom"]
    bridge.signal(signal.SIGTERM)
    assert bridge.wait_exit(15) == 0


def test_a_stopped_bridge_leaves_link_down_in_the_status_file(env):
    status = env.tmp / "bridge.prom"
    broker, bridge, _ = env.tunnel(bridge_extra=["--status-file", status])
    wait_for(lambda: link_up(status) == 1, 10, "link up")
    bridge.signal(signal.SIGTERM)
    assert bridge.wait_exit(15) == 0
    assert link_up(status) == 0


@pytest.mark.parametrize("where", ["missing directory", "a directory", "read-only directory"])
def test_an_unwritable_status_file_is_a_start_up_error(env, where):
    if where == "missing directory":
        path = env.tmp / "no" / "such" / "dir" / "bridge.prom"
    elif where == "a directory":
        path = env.tmp / "isdir"
        path.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only directory")
        d = env.tmp / "ro"
        d.mkdir()
        d.chmod(0o555)
        path = d / "bridge.prom"
    r = subprocess.run([str(BRIDGE), "--broker-address", "127.0.0.1:1", "--vault-addr",
                        "http://127.0.0.1:8200", "--client-cert", str(env.bridge_crt),
                        "--client-key", str(env.bridge_key), "--ca-cert", str(env.pki.ca_crt),
                        "--allow-plaintext-streams", "--broker-pin", env.broker_pin,
                        "--status-file", str(path)],
                       capture_output=True, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("vault-bridge: bad --status-file"), err
    assert not Path(str(path) + ".tmp").exists()


# ---------------------------------------------------------------- no listening socket
def _pids(daemon):
    return [daemon.proc.pid, *daemon.children().values()]


def _socket_inodes(pid):
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            out.add(m.group(1))
    return out


def _inet_sockets(pid):
    """(proto, state, local address) of every TCP/UDP socket the process holds."""
    mine = _socket_inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if f[9] in mine:
                found.append((proto, f[3], f[1]))
    return found


def test_the_bridge_process_tree_has_no_listening_tcp_or_udp_socket(env):
    status = env.tmp / "bridge.prom"
    broker, bridge, _ = env.tunnel(bridge_extra=["--status-file", status])
    # An open stream, so that every process holds its sockets while we look.
    import socket
    hold = socket.create_connection(("127.0.0.1", broker.service_port), timeout=10)
    hold.sendall(b"GET /v1/secret/data/held HTTP/1.1\r\nHost: x\r\n\r\n")
    assert hold.recv(12).startswith(b"HTTP/1.")
    assert http_get(broker.service_port, "/v1/secret/data/ns")[0] == 200
    pids = _pids(bridge)
    assert len(pids) == 3, pids
    sockets = {pid: _inet_sockets(pid) for pid in pids}
    # The link and the OpenBao connection are there, and they are all TCP
    # ESTABLISHED (state 01): nothing listens (0A), nothing is UDP or raw.
    assert any(s for s in sockets.values()), sockets
    for pid, socks in sockets.items():
        for proto, state, local in socks:
            assert proto in ("tcp", "tcp6") and state == "01", (pid, proto, state, local)
    # The same seen by ss(8), when installed: no listening socket owned by these pids.
    ss = shutil.which("ss")
    if ss:
        out = subprocess.run([ss, "-H", "-lntup"], capture_output=True, timeout=20,
                             check=True).stdout.decode()
        for pid in pids:
            assert f"pid={pid}," not in out, out
        # ss does see the daemons' sockets (the check above can fail).
        est = subprocess.run([ss, "-H", "-ntp"], capture_output=True, timeout=20,
                             check=True).stdout.decode()
        assert any(f"pid={pid}," in est for pid in pids), est
    hold.close()


def test_status_file_is_documented_in_help_and_the_man_page():
    r = subprocess.run([str(BRIDGE), "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--status-file PATH" in r.stdout
    man = (Path(__file__).resolve().parents[2] / "docs/man/vault-bridge.8").read_text()
    assert r"\-\-status\-file" in man and "cloudtaser_bridge_link_up" in man


def test_log_lines_dropped_on_a_full_stderr_are_counted_in_the_status_file(env):
    import fcntl
    import socket
    status = env.tmp / "vault-bridge.prom"
    broker = env.broker()
    # Each stream costs the forwarding process a debug line ("to OpenBao").
    # (Not a closed port: a failed connect is logged once per 10 s at most.)
    up = env.echo()
    rfd, wfd = os.pipe()
    fcntl.fcntl(wfd, 1031, 4096)  # F_SETPIPE_SZ: one page, never read by anyone
    proc = subprocess.Popen(
        [str(BRIDGE), "--broker-address", f"127.0.0.1:{broker.bridge_port}", "--vault-addr",
         up.addr, "--client-cert", str(env.bridge_crt), "--client-key",
         str(env.bridge_key), "--ca-cert", str(env.pki.ca_crt), "--broker-pin", env.broker_pin,
         "--allow-plaintext-streams", "--status-file", str(status), "--log-level", "debug",
         # Not polled: an unreachable OpenBao would get no stream, and no log line.
         "--vault-health-interval", "0"],
        stdout=wfd, stderr=wfd, stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(wfd)
    try:
        wait_for(lambda: link_up(status) == 1, 20, "the bridge's link up")

        def dropped(process):
            m = re.search(r'^cloudtaser_bridge_log_lines_dropped_total\{process="%s"\} (\d+)$'
                          % process, read(status), re.M)
            return int(m.group(1)) if m else None
        assert dropped("forward") == 0, read(status)
        for i in range(100):  # a debug line each, in the forwarding process
            with socket.create_connection(("127.0.0.1", broker.service_port), timeout=10) as s:
                s.sendall(b"GET /v1/secret/data/x HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(10)
                try:
                    s.recv(4096)  # the echo
                except OSError:
                    pass
        # Answers to the heartbeat carry the count, once a second.
        wait_for(lambda: (dropped("forward") or 0) > 0, 10, "dropped lines in the status file")
        check_format(read(status))
        print(read(status))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        os.close(rfd)


def test_status_file_gives_each_certificates_not_after_the_own_pin_and_the_brokers_leaf(env):
    up = env.kv()
    status = env.tmp / "vault-bridge.prom"
    svc_crt, svc_key = env.pki.issue("service", "serverAuth", days=20,
                                     sans=("DNS:cloudtaser-broker.cloudtaser-system.svc",))
    broker = env.broker()
    env.bridge(broker.bridge_port, up.addr, extra=["--status-file", status],
               service=(svc_crt, svc_key))
    broker.wait_log(r"conn=\d+ bridge connected")
    peer = "cloudtaser_bridge_peer_certificate_not_after_timestamp_seconds"
    wait_for(lambda: labelled(read(status), peer, pin=env.broker_pin) is not None, 10,
             "the broker's leaf in the status file")
    text = read(status)
    check_format(text)
    own = "cloudtaser_bridge_certificate_not_after_timestamp_seconds"
    assert labelled(text, own, certificate="leaf", pin=env.bridge_pin) == \
        not_after_of(env.bridge_crt), text
    assert labelled(text, own, certificate="ca") == not_after_of(env.pki.ca_crt)
    assert labelled(text, own, certificate="service") == not_after_of(svc_crt)
    assert labelled(text, peer, pin=env.broker_pin) == not_after_of(env.broker_crt)
    assert sample(text, "cloudtaser_bridge_pins_configured") == 1
    broker.kill()
    wait_for(lambda: labelled(read(status), peer) is None, 10,
             "the broker's leaf to leave the status file")
    assert labelled(read(status), own, certificate="leaf") is not None


def test_the_bridge_warns_once_when_its_certificate_expires_within_a_week(env):
    crt, key = env.pki.issue("bridge-soon", "clientAuth", days=5)
    broker = env.broker(extra=["--bridge-pin", pin_of(crt)])
    up = env.kv()
    status = env.tmp / "vault-bridge.prom"
    bridge = env.bridge(broker.bridge_port, up.addr, files=(crt, key, env.pki.ca_crt),
                        extra=["--status-file", status])
    bridge.wait_log(r"warn: certificate leaf \(pin sha256//\S+\) expires in [45] day\(s\) \d+ "
                    r"hour\(s\) \(\S+Z\), within 7 day\(s\)")
    # A link coming up rewrites the status and checks again: still one warning.
    broker.wait_log(r"conn=\d+ bridge connected")
    wait_for(lambda: link_up(status) == 1, 10, "link up in the status file")
    assert bridge.count(r"warn: certificate leaf") == 1, bridge.text()
