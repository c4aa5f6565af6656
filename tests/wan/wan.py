"""Wan: the tests' handle on one wanem.py process (tests/wan/wanem.py).

    with Wan("127.0.0.1", broker.bridge_port, rtt_ms=40) as wan:
        bridge = env.bridge(wan.port, ...)
        wan.stall("both"); ...; wan.resume()

Every call is bounded: starting waits at most 10 s for the listening line, a
command at most 5 s for its answer.
"""
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WANEM = Path(__file__).resolve().parent / "wanem.py"


class Wan:
    def __init__(self, target_host, target_port, rtt_ms=40, jitter_ms=0, rate_mbit=None,
                 delay_up_ms=None, delay_down_ms=None, handshake_rtt=True, log_path=None,
                 queue_bytes=None, listen="127.0.0.1:0", realtime=False):
        self.rtt_ms = rtt_ms
        self._dir = tempfile.mkdtemp(prefix="wanem-")
        self.control = os.path.join(self._dir, "control.sock")
        argv = [sys.executable, str(WANEM), "--listen", listen,
                "--target", f"{target_host}:{target_port}", "--rtt-ms", str(rtt_ms),
                "--jitter-ms", str(jitter_ms), "--control", self.control,
                # It dies with us (PR_SET_PDEATHSIG follows the creating thread:
                # create a Wan from a thread that outlives it).
                "--parent-pid", str(os.getpid())]
        if rate_mbit:
            argv += ["--rate-mbit", str(rate_mbit)]
        if delay_up_ms is not None:
            argv += ["--delay-up-ms", str(delay_up_ms)]
        if delay_down_ms is not None:
            argv += ["--delay-down-ms", str(delay_down_ms)]
        if not handshake_rtt:
            argv += ["--no-handshake-rtt"]
        if realtime:
            argv += ["--rt-priority", "10"]
        if queue_bytes:
            argv += ["--queue-bytes", str(queue_bytes)]
        self.log_path = log_path or os.path.join(self._dir, "wanem.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        line = b""
        deadline = time.monotonic() + 10
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.close()
                raise AssertionError(f"wanem did not start: {line!r} "
                                     f"{Path(self.log_path).read_text(errors='replace')}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                b = os.read(self.proc.stdout.fileno(), 256)
                if not b:
                    continue
                line += b
        self.port = int(line.decode().strip().rsplit(":", 1)[1])
        self.addr = f"127.0.0.1:{self.port}"

    def cmd(self, line, timeout=5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        reply = buf.decode().strip()
        if not reply or reply.startswith("error"):
            raise RuntimeError(f"wanem {line!r}: {reply!r}")
        return reply

    def stall(self, direction="both"):
        return self.cmd(f"stall {direction}")

    def resume(self, direction="both"):
        return self.cmd(f"resume {direction}")

    def rst(self):
        return int(self.cmd("rst").split()[-1])

    def fin(self):
        return int(self.cmd("fin").split()[-1])

    def cut_after(self, n, direction="both"):
        return self.cmd(f"cut {int(n)} {direction}")

    def flip_next_record(self, direction="up"):
        return self.cmd(f"flip {direction}")

    def set_delay(self, ms, direction="both"):
        return self.cmd(f"delay {ms} {direction}")

    def set_rate(self, mbit, direction="both"):
        return self.cmd(f"rate {mbit if mbit else 'none'} {direction}")

    def status(self):
        return json.loads(self.cmd("status"))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
