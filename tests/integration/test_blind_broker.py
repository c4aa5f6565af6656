"""The broker never sees plaintext (catalog L-11): with --service-cert the
wrappers' TLS ends in the bridge, so a canary secret fetched many times
through the tunnel appears in no byte any broker process reads or writes
(strace) and nowhere in its memory (gcore), while the client did get it."""
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from harness import SANITIZER_BUILD, read_to_eof, wait_for

SVC = "cloudtaser-broker.cloudtaser-system.svc"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("strace"),
                                reason="tracing another user's processes needs root and strace")


def fetch_over_tls(env, port, name, n):
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
    bodies = []
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=SVC) as s:
                s.sendall(f"GET /v1/secret/data/{name} HTTP/1.1\r\nHost: {SVC}\r\n"
                          "Connection: close\r\n\r\n".encode())
                bodies.append(read_to_eof(s))
    return bodies


def fetch_plain(port, name, n):
    bodies = []
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET /v1/secret/data/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      .encode())
            bodies.append(read_to_eof(s))
    return bodies


def trace(broker, out: Path):
    """strace of every broker process, every byte of every read and write."""
    pids = [broker.proc.pid, *broker.children().values()]
    args = ["strace", "-f", "-xx", "-s", "1048576", "-o", str(out),
            "-e", "trace=read,write,recvfrom,sendto,recvmsg,sendmsg,readv,writev"]
    for p in pids:
        args += ["-p", str(p)]
    log = out.with_suffix(".attach")
    st = subprocess.Popen(args, stderr=open(log, "wb"))
    # strace says "Process N attached" for each pid once it traces it.
    wait_for(lambda: all(f"Process {p} attached" in log.read_text(errors="replace") for p in pids),
             10, "strace to attach to every broker process")
    return st


def hexed(b: bytes) -> str:
    return "".join(f"\\x{c:02x}" for c in b)


def tunnel_with(env, service):
    up = env.kv()
    broker = env.broker()
    bridge = env.bridge(broker.bridge_port, up.addr, service=service)
    broker.wait_log(r"conn=\d+ bridge connected")
    bridge.wait_log(r"connected to the broker")
    return broker, bridge


def test_the_broker_neither_reads_nor_holds_a_canary_that_wrappers_fetch_over_tls(env):
    svc_crt, svc_key = env.pki.issue("service", "serverAuth", sans=(f"DNS:{SVC}",))
    broker, _ = tunnel_with(env, (svc_crt, svc_key))
    canary = "canary" + secrets.token_hex(16)
    st = trace(broker, env.tmp / "broker.strace")
    bodies = fetch_over_tls(env, broker.service_port, canary, 50)
    st.send_signal(signal.SIGINT)
    st.wait(20)
    # The client received it every time...
    assert all(b.startswith(b"HTTP/1.1 200") and f"s3cr3t-{canary}".encode() in b for b in bodies)
    # ...and the broker moved the bytes (the trace is not empty)...
    text = (env.tmp / "broker.strace").read_text(errors="replace")
    assert text.count("sendto(") + text.count("write(") > 100, "the trace caught no traffic"
    # ...without any of them being the canary, in either direction.
    assert hexed(canary.encode()) not in text
    assert canary not in text
    # Memory of every broker process after the transfer. (Not under ASan: its
    # terabytes of mapped shadow memory make a core file that fills the disk.)
    if SANITIZER_BUILD:
        return
    for pid in [broker.proc.pid, *broker.children().values()]:
        core = env.tmp / f"core.{pid}"
        r = subprocess.run(["gcore", "-o", str(env.tmp / "core"), str(pid)], capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr[-500:]
        data = core.read_bytes()
        assert len(data) > 100_000
        assert canary.encode() not in data, f"canary in the memory of broker pid {pid}"
        core.unlink()


def test_control_the_same_trace_does_see_a_canary_carried_in_plaintext(env):
    # Proves the detector works: without --service-cert (plaintext allowed),
    # the canary does show up in what the broker reads.
    broker, _ = tunnel_with(env, None)
    canary = "canary" + secrets.token_hex(16)
    st = trace(broker, env.tmp / "broker.strace")
    bodies = fetch_plain(broker.service_port, canary, 5)
    st.send_signal(signal.SIGINT)
    st.wait(20)
    assert all(f"s3cr3t-{canary}".encode() in b for b in bodies)
    assert hexed(canary.encode()) in (env.tmp / "broker.strace").read_text(errors="replace")


def test_wrappers_reach_openbao_through_https_passthrough_untouched(env):
    # --vault-addr https://: the bridge does not terminate; the wrapper's TLS
    # goes end to end to the upstream (here a TLS echo) and the broker relays ciphertext.
    crt, key = env.pki.issue("openbao", "serverAuth", sans=(f"DNS:{SVC}", "IP:127.0.0.1"))
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(crt), str(key))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    import threading

    def serve():
        conn, _ = lsock.accept()
        with sctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(s.recv(1024).upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    broker = env.broker()
    bridge = env.bridge(broker.bridge_port, f"https://127.0.0.1:{port}", service=None,
                        extra=[])
    broker.wait_log(r"conn=\d+ bridge connected")
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
    with socket.create_connection(("127.0.0.1", broker.service_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SVC) as s:
            s.sendall(b"end to end")
            assert s.recv(1024) == b"END TO END"
    t.join(5)
    lsock.close()
    assert bridge.count("crosses the broker in plaintext") == 0
