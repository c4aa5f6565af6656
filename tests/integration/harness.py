"""Real processes on loopback for the integration tests.

Each test gets its own throwaway CA (Pki), starts the real daemons (Daemon)
and in-process upstream servers (KvUpstream, EchoUpstream), and every wait is
bounded: a helper that polls gives up after a deadline and fails the test.
"""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import kv_v2  # noqa: E402  (tests/kv_v2.py, shared with tests/upstream_standin.py)
BUILD = Path(os.environ.get("CT_BUILD", ROOT / "build"))
# make asan runs these tests on build/asan: ASan+UBSan, the sandbox in log mode.
SANITIZER_BUILD = "asan" in os.environ.get("CT_BUILD", "")
BROKER = BUILD / "cloudtaser-broker"
BRIDGE = BUILD / "vault-bridge"
# Each daemon's forwarding process runs its own executable, found beside it.
BROKER_FWD = BUILD / "cloudtaser-broker-forward"
BRIDGE_FWD = BUILD / "vault-bridge-forward"


def wait_for(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def peak_rss_kib(daemon, seconds):
    """Highest resident memory of the daemon's processes over `seconds`,
    sampled every 100 ms (bounded: seconds * 10 samples)."""
    peak = 0
    for _ in range(int(seconds * 10)):
        peak = max(peak, daemon.rss_kib())
        time.sleep(0.1)
    return peak


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



class RawListener:
    """A listener on `port` (0: any free one) that hands each connection to
    `behaviour` in a thread of its own, then closes it. Closed: nothing listens
    there any more (within 50 ms); also a context manager."""

    def __init__(self, port, behaviour):
        self.lst = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR
        self.lst.settimeout(0.05)
        self.port = self.lst.getsockname()[1]
        self.behaviour = behaviour
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"http://127.0.0.1:{self.port}"

    def _serve(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.lst.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            self.behaviour(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        self.lst.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def abort(c):
    """Close with an RST (SO_LINGER 0), as a crashed process's socket ends."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


class ResettingListener(RawListener):
    """Ends every connection it accepts with an RST after answer(c), which does
    nothing here (a balancer with no backend behind it) and which subclasses
    override (an OpenBao that crashed mid-answer; answer may raise OSError).
    Records when each reset was sent."""

    def __init__(self):
        self.reset_at = []
        super().__init__(0, self._answer_then_reset)

    def answer(self, c):
        pass

    def _answer_then_reset(self, c):
        try:
            self.answer(c)
        except OSError:
            pass
        abort(c)
        self.reset_at.append(time.monotonic())


# ---------------------------------------------------------------- certificates
class Pki:
    """A fresh CA per test, and certificates issued by it (ECDSA P-256)."""

    def __init__(self, directory: Path, name="ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca_key = self.dir / f"{name}.key"
        self.ca_crt = self.dir / f"{name}.crt"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-days", "60", "-subj", f"/CN=test {name}",
                  "-keyout", self.ca_key, "-out", self.ca_crt)

    def _run(self, *args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    # 45 days: beyond the daemons' 30-day expiry warning, so that only the
    # tests of it see one.
    def issue(self, cn, eku, sans=("DNS:localhost", "IP:127.0.0.1"), days=45):
        key = self.dir / f"{cn}.key"
        csr = self.dir / f"{cn}.csr"
        crt = self.dir / f"{cn}.crt"
        ext = self.dir / f"{cn}.ext"
        # eku=None: a certificate without the extension (which OpenSSL's own
        # purpose check lets pass for any role).
        ext.write_text(f"subjectAltName={','.join(sans)}\n" +
                       (f"extendedKeyUsage={eku}\n" if eku else ""))
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-subj", f"/CN={cn}", "-keyout", key, "-out", csr)
        self._run("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-days", str(days), "-extfile", ext, "-out", crt)
        return crt, key


def not_after_of(cert: Path) -> int:
    """A certificate's notAfter in unix seconds."""
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-enddate"],
                         check=True, capture_output=True, text=True).stdout.strip()
    import calendar
    return calendar.timegm(time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))


def pin_of(cert: Path) -> str:
    """curl's sha256//BASE64 pin of a certificate's SubjectPublicKeyInfo."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    import base64
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


# ---------------------------------------------------------------- daemons
class Daemon:
    """One daemon (parent + children) in its own process group."""

    def __init__(self, argv, log_path: Path):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self):
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)

        def found():
            m = rx.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited {self.proc.returncode} before "
                                     f"logging /{pattern}/:\n{self.text()}")
            return None
        return wait_for(found, timeout, f"/{pattern}/ in {self.log_path.name}")

    def count(self, pattern):
        return len(re.findall(pattern, self.text()))

    def children(self):
        """pid by role ('tls', 'forward') of the live children of the parent."""
        out = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and len(cmd) > 1 and cmd[1].startswith(b"--child="):
                out[cmd[1][8:].decode()] = int(d.name)
        return out

    def rss_kib(self):
        """Resident memory of the parent and its children, in KiB."""
        total = 0
        for pid in [self.proc.pid, *self.children().values()]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.log.close()

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv[0]} did not exit within {timeout}s:\n{self.text()}")


class Broker(Daemon):
    def __init__(self, pki_files, log_path, bridge_port=0, service_port=0, extra=()):
        crt, key, ca = pki_files
        super().__init__([BROKER, "--bridge-listen", f"127.0.0.1:{bridge_port}",
                          "--service-listen", f"127.0.0.1:{service_port}",
                          "--cert", crt, "--key", key, "--ca-cert", ca, *extra], log_path)
        m = self.wait_log(r"listening for bridges on 127\.0\.0\.1:(\d+) and wrappers on "
                          r"127\.0\.0\.1:(\d+)")
        self.bridge_port, self.service_port = int(m.group(1)), int(m.group(2))
        self.wait_log(r"\[parent\] info: ready")


class Bridge(Daemon):
    """The bridge. Stream-mechanics tests carry plaintext wrappers
    (--allow-plaintext-streams); `service=(crt, key)` makes it terminate the
    wrappers' TLS instead, as deployed."""

    def __init__(self, pki_files, log_path, broker_port, vault_addr, extra=(), service=None):
        crt, key, ca = pki_files
        mode = (["--service-cert", service[0], "--service-key", service[1]] if service
                else ["--allow-plaintext-streams"])
        super().__init__([BRIDGE, "--broker-address", f"127.0.0.1:{broker_port}",
                          "--vault-addr", vault_addr, "--client-cert", crt,
                          "--client-key", key, "--ca-cert", ca, *mode, *extra], log_path)


# ---------------------------------------------------------------- upstreams
BYTES_CHUNK = bytes(range(256)) * 256  # the body of /bytes/N repeats this


def labelled(text, name, **labels):
    """The value of the sample of `name` whose labels include `labels` (None if none)."""
    for m in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} (-?\d+)$", text, re.M):
        have = dict(re.findall(r'([a-z_]+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            return int(m.group(2))
    return None


def bytes_body_mismatches(data, offset):
    """How many bytes of `data`, found at body offset `offset`, differ from the KV
    stand-in's /bytes body (offset k holds k % 256)."""
    period, pattern, bad = len(BYTES_CHUNK), BYTES_CHUNK * 2, 0
    for i in range(0, len(data), period):
        part = data[i:i + period]
        start = (offset + i) % period
        want = pattern[start:start + len(part)]
        if part != want:
            bad += sum(1 for a, b in zip(part, want) if a != b)
    return bad


def bytes_body_sha256(n):
    """sha256 hex digest of the KV stand-in's /bytes/N body."""
    h, left = hashlib.sha256(), n
    while left:
        h.update(BYTES_CHUNK[: min(len(BYTES_CHUNK), left)])
        left -= min(len(BYTES_CHUNK), left)
    return h.hexdigest()


class _KvHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, and each answer written whole (kv_v2.whole_answer): with
    # Nagle on, a body written after its headers waits for the bridge's
    # delayed ACK, ~40 ms on every keep-alive request, which is not OpenBao's.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def setup(self):
        # A TLS stand-in's handshake, here in the handler's thread (never
        # in the accepting one, which a silent client would block).
        if isinstance(self.request, ssl.SSLSocket):
            self.server.outer.tls_handshakes += 1
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.server.outer.tls_failures += 1
                raise
        super().setup()

    def _send(self, code, obj):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.wfile.write(kv_v2.whole_answer(code, self.responses.get(code, ("",))[0], body,
                                            close=self.close_connection))

    def _authorised(self):
        up = self.server.outer
        if up.token is None or self.headers.get("X-Vault-Token") == up.token:
            return True
        self._send(403, {"errors": ["permission denied"]})
        return False

    def _slow(self):
        if self.server.outer.answer_delay:
            time.sleep(self.server.outer.answer_delay)

    def do_GET(self):
        up = self.server.outer
        if self.path == up.health_path:
            # OpenBao's health endpoint: the code says the node's state (200
            # active, 429 standby, 503 sealed, 501 uninitialised); a test
            # sets it to seal and unseal this "node".
            up.health_probes += 1
            # A probe's connection (Connection: close, one request) is the
            # bridge's own, not a stream's: `accepts` counts streams only.
            up.accepts -= 1
            self._send(up.health_code, {"initialized": up.health_code != 501,
                                        "sealed": up.health_code == 503,
                                        "standby": up.health_code in (429, 473)})
            return
        up.requests += 1
        self._slow()
        if self.path.startswith("/v1/secret/data/"):
            if not self._authorised():
                return
            # A secret written here (kv_v2.KvStore) reads back as written;
            # any other name has a made-up one, version 1.
            stored = up.store.read(self.path)
            if stored is not None:
                self._send(*stored)
                return
            name = self.path.rsplit("/", 1)[1]
            self._send(200, {"data": {"data": {"name": name, "password": "s3cr3t-" + name},
                                      "metadata": {"version": 1}}})
        elif self.path.startswith("/bytes/") or self.path.startswith("/bytes-close/"):
            # /bytes-close/N: no Content-Length, the body ends where the
            # connection does (close-delimited), so only the ending tells a
            # client whether it got all of it.
            n = int(self.path.rsplit("/", 1)[1])
            delimited = self.path.startswith("/bytes/")
            self.send_response(200)
            if delimited:
                self.send_header("Content-Length", str(n))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            chunk = BYTES_CHUNK
            sent = 0
            try:
                while sent < n:
                    part = chunk[: min(len(chunk), n - sent)]
                    self.wfile.write(part)
                    sent += len(part)
            except OSError:
                pass
        else:
            self._send(404, {"errors": []})

    def _write(self):
        """KV v2 write (POST or PUT): a new version, answered as OpenBao does."""
        up = self.server.outer
        up.requests += 1
        try:
            body = kv_v2.read_body(self.headers, self.rfile)
        except kv_v2.BodyError as e:
            self.close_connection = True
            self._send(e.code, {"errors": [str(e)]})
            return
        self._slow()
        name = kv_v2.KvStore.name_of(self.path)
        if name is None:
            self._send(404, {"errors": []})
        elif self._authorised():
            self._send(*up.store.write(name, body))

    do_POST = _write
    do_PUT = _write

    def do_DELETE(self):
        up = self.server.outer
        up.requests += 1
        name = kv_v2.KvStore.name_of(self.path)
        if name is None:
            self._send(404, {"errors": []})
        elif self._authorised():
            if not up.store.has(name):  # a made-up secret: its version 1 goes
                up.store.seed(name, {"name": name, "password": "s3cr3t-" + name})
            self._send(*up.store.delete(name))


class KvUpstream:
    """A stand-in for OpenBao's KV v2 engine (tests/kv_v2.py: reads, writes
    by POST or PUT, `Expect: 100-continue`, soft deletes), plus /bytes/N for
    bulk, and its health endpoint (`health_path`) answering `health_code`. With
    `tls=(crt, key)` it is an https:// listener (as OpenBao's usually is),
    `tls_max` caps its TLS version (e.g. ssl.TLSVersion.TLSv1_2)."""

    def __init__(self, port=0, health_code=200, health_path="/v1/sys/health", tls=None,
                 tls_max=None, token=None):
        self.token = token  # when set, secret requests without it get 403
        self.store = kv_v2.KvStore()  # what clients wrote (POST/PUT), read back by GET
        self.answer_delay = 0.0  # seconds before each answer but the health probe's
        self.accepts = 0  # connections taken for streams (health probes not counted)
        self.requests = 0  # requests other than health probes
        self.health_probes = 0
        self.health_code = health_code
        self.health_path = health_path
        self.tls_handshakes = 0  # begun (TLS stand-in only)
        self.tls_failures = 0    # of those, failed (a client that refused our certificate)
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(tls[0]), str(tls[1]))
            if tls_max:
                self.tls.maximum_version = tls_max
        outer = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # listen backlog: hundreds of streams connect at once

            def get_request(self):
                outer.accepts += 1
                sock, addr = super().get_request()
                if outer.tls:
                    sock = outer.tls.wrap_socket(sock, server_side=True,
                                                 do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request, client_address):
                # A bridge killed by a test resets its connections here (on
                # purpose: a death is an RST), a client refuses our TLS
                # certificate (counted); anything else is still printed.
                if not isinstance(sys.exc_info()[1],
                                  (ConnectionResetError, BrokenPipeError, ssl.SSLError)):
                    super().handle_error(request, client_address)
        self.server = Server(("127.0.0.1", port), _KvHandler)
        self.server.outer = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class EchoUpstream:
    """Echoes every byte; on the client's EOF it finishes writing, then closes.
    Records how each connection ended ('eof' or 'reset')."""

    def __init__(self):
        self.endings = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                try:
                    while True:
                        b = s.recv(1 << 20)
                        if not b:
                            outer.endings.append("eof")
                            break
                        s.sendall(b)
                    s.shutdown(socket.SHUT_WR)
                except ConnectionResetError:
                    outer.endings.append("reset")
                except OSError:
                    outer.endings.append("error")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 1024
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def addr(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- clients
def read_to_eof(sock, chunk=65536):
    """Everything the peer sends until it closes its side (socket or TLS)."""
    data = b""
    while True:
        b = sock.recv(chunk)
        if not b:
            return data
        data += b


def http_get(port, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def kv_ok(port, name="x", timeout=5):
    """One KV read through the tunnel answered with the stand-in's secret for `name`."""
    try:
        status, body = http_get(port, f"/v1/secret/data/{name}", timeout=timeout)
        return status == 200 and f"s3cr3t-{name}".encode() in body
    except OSError:
        return False
