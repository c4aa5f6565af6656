"""A child process refuses a control message outside its phase (the order
rules of broker/procs.h and bridge/procs.h, enforced by IpcChannel): one
line on stderr and exit 1, while it answered PING before that. The test plays
the parent on the child's fd 3."""
import os
import select
import socket
import struct
import subprocess
import time

import pytest

from harness import BRIDGE, BRIDGE_FWD, BROKER, BROKER_FWD

PING, DRAIN, STATS, PONG = 10, 7, 37, 38


def version_of(exe):
    out = subprocess.run([str(exe), "--version"], capture_output=True, timeout=10)
    return out.stdout.decode().split()[-1]


def start_child(exe, process, daemon_exe):
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def on_fd_3():  # runs before the fds outside pass_fds are closed
        os.dup2(child.fileno(), 3)

    p = subprocess.Popen([str(exe), f"--child={process}",
                          f"--daemon-version={version_of(daemon_exe)}"],
                         stderr=subprocess.PIPE, pass_fds=sorted({3, child.fileno()}),
                         preexec_fn=on_fd_3)
    child.close()
    return p, parent


def datagram(msg_type, body=b""):
    return struct.pack(">HHI", msg_type, 0, len(body)) + body


def recv_within(sock, seconds):
    ready, _, _ = select.select([sock], [], [], seconds)
    assert ready, "no answer within %s s" % seconds
    return sock.recv(65536)


@pytest.mark.parametrize("exe,process,daemon_exe,name", [
    (BROKER_FWD, "forward", BROKER, "cloudtaser-broker"),
    (BRIDGE_FWD, "forward", BRIDGE, "vault-bridge"),
    (BROKER, "tls", BROKER, "cloudtaser-broker"),
    (BRIDGE, "tls", BRIDGE, "vault-bridge"),
])
def test_a_child_ends_with_one_line_on_a_drain_before_its_settings(exe, process, daemon_exe, name):
    p, ctl = start_child(exe, process, daemon_exe)
    try:
        # PING is allowed any time: the child's loop answers it.
        ctl.send(datagram(PING, struct.pack(">Q", 7)))
        # The broker's TLS process sends its STATS from its first loop turn.
        for _ in range(10):
            answer = recv_within(ctl, 10)
            if struct.unpack(">H", answer[:2])[0] != STATS:
                break
        assert struct.unpack(">H", answer[:2])[0] == PONG, answer
        assert answer[8:16] == struct.pack(">Q", 7), answer
        ctl.send(datagram(DRAIN))
        deadline = time.monotonic() + 10
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.returncode == 1, p.returncode
        err = p.stderr.read().decode()
        assert err.count("\n") == 1, err
        assert "bad control message from the parent: DRAIN before SETTINGS; exiting" in err, err
        assert name in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        ctl.close()
