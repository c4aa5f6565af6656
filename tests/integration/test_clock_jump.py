"""FI-60: the wall clock jumps +1 h and -1 h while the tunnel serves. The daemons time
everything with CLOCK_MONOTONIC (pings, the dead-peer and idle timeouts, handshake and pending
deadlines, backoff); CLOCK_REALTIME is read only for log timestamps, the certificate expiry
report and the status file. A jump must change nothing: no link drops, no timeout fires, held
streams go on, and the TLS handshakes made during the jump (the bridge dials every 2-4 s)
still find the certificates valid.

Opt-in (CT_CLOCK_JUMP=1; a plain `make faults` leaves it skipped, `CT_CLOCK_JUMP=1 make faults
FAULT_IDS=FI-60` runs it): there is no namespace for CLOCK_REALTIME, so
this changes the clock of the whole machine for about 20 s, and with it the timestamps make
compares: a file written during the +1 h phase looks an hour newer than it is (a source edited
in the next hour may not rebuild it). Run it on a machine that is not building anything else.
The clock is put back in a `finally` from the monotonic time elapsed (to within milliseconds).

The certificates are backdated by a day (as any real certificate is older than a minute): one
issued at this instant would, 1 h in the past, be not yet valid, which is X.509 and not a fault
of the daemons.
"""
import hashlib
import http.client
import os
import re
import subprocess
import time

import pytest

from harness import bytes_body_sha256, http_get, kv_ok, pin_of, wait_for

CAP_SYS_TIME = 25


def _can_set_clock():
    for line in open("/proc/self/status"):
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_TIME & 1)
    return False


pytestmark = pytest.mark.skipif(
    os.environ.get("CT_CLOCK_JUMP") != "1" or not _can_set_clock(),
    reason="opt-in: changes the whole machine's clock (set CT_CLOCK_JUMP=1; needs CAP_SYS_TIME)")

CA_CONF = """[ca]
default_ca = d
[d]
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
"""


def backdated_pki(d, days_back=1, days=30):
    """A CA, a broker and a bridge certificate valid from `days_back` days ago (openssl ca
    takes a start date; openssl x509 -req does not)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "new").mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(CA_CONF.format(dir=d))
    start = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - days_back * 86400))
    end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + days * 86400))

    def ossl(*a):
        subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)

    def issue(cn, ext, selfsign=False):
        key, csr, crt, extf = (d / f"{cn}.{x}" for x in ("key", "csr", "crt", "ext"))
        extf.write_text(ext)
        ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={cn}", "-keyout", key, "-out", csr)
        signer = ["-selfsign", "-keyfile", key] if selfsign else \
            ["-cert", d / "ca.crt", "-keyfile", d / "ca.key"]
        ossl("ca", "-batch", "-notext", "-config", conf, *signer, "-in", csr, "-out", crt,
             "-startdate", start, "-enddate", end, "-extfile", extf)
        return crt, key

    issue("ca", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
          selfsign=True)
    sans = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    broker = issue("broker", sans + "extendedKeyUsage=serverAuth\n")
    bridge = issue("bridge", sans + "extendedKeyUsage=clientAuth\n")
    return d / "ca.crt", broker, bridge


def test_FI60_a_wall_clock_jump_of_plus_and_minus_one_hour_changes_nothing(env, record_property):
    ca, (broker_crt, broker_key), (bridge_crt, bridge_key) = backdated_pki(env.tmp / "old-pki")
    up = env.kv()
    broker = env.broker(files=(broker_crt, broker_key, ca),
                        extra=["--bridge-pin", pin_of(bridge_crt)])
    bridge = env.bridge(broker.bridge_port, up.addr, files=(bridge_crt, bridge_key, ca),
                        extra=["--broker-pin", pin_of(broker_crt), "--log-level", "debug"])
    broker.wait_log(r"conn=\d+ bridge connected")
    bridge.wait_log(r"connected to the broker")
    port = broker.service_port
    assert kv_ok(port)
    kids = (broker.children(), bridge.children())
    # Held streams: keep-alive connections that read again in every phase.
    held = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]

    def read_held(tag):
        for i, c in enumerate(held):
            c.request("GET", f"/v1/secret/data/{tag}{i}")
            r = c.getresponse()
            assert r.status == 200 and f"s3cr3t-{tag}{i}".encode() in r.read(), tag

    read_held("before")
    start_b, start_k = len(bridge.text()), len(broker.text())
    real0, mono0 = time.time(), time.monotonic()

    def set_offset(off):
        time.clock_settime(time.CLOCK_REALTIME, real0 + (time.monotonic() - mono0) + off)

    handshake = re.compile(r"conn=\d+ (duplicate link closed|linked to broker instance)")
    n = 4 << 20
    try:
        for off in (3600, 0, -3600):
            set_offset(off)
            mark = len(bridge.text())
            t0 = time.monotonic()
            # A new TLS handshake checks both certificates at the jumped time (the bridge's
            # sync dial, every 2-4 s), and a PING round (5 s) passes under it.
            wait_for(lambda: handshake.search(bridge.text(), mark), 10,
                     f"a handshake at {off:+d} s")
            read_held(f"at{off}-")
            assert kv_ok(port, f"new{off}")
            status, body = http_get(port, f"/bytes/{n}", timeout=30)
            assert status == 200 and len(body) == n
            assert hashlib.sha256(body).hexdigest() == bytes_body_sha256(n)
            wait_for(lambda: time.monotonic() - t0 >= 6, 8, "a ping interval under the jump",
                     interval=0.1)
    finally:
        set_offset(0)
    drift = time.time() - (real0 + (time.monotonic() - mono0))
    assert abs(drift) < 1, f"the clock was put back {drift:+.3f} s off"
    read_held("after")
    blogs, klogs = bridge.text()[start_b:], broker.text()[start_k:]
    for bad in ("link to the broker lost", "TIMEOUT", "handshake failed", "not yet valid",
                "expired", "timed out", "idle"):
        assert bad not in blogs, (bad, blogs[-3000:])
    for bad in ("bridge disconnected", "TIMEOUT", "handshake failed", "pending timeout",
                "not yet valid", "expired", "idle"):
        assert bad not in klogs, (bad, klogs[-3000:])
    assert (broker.children(), bridge.children()) == kids
    record_property("lost_bytes", 0)
    record_property("corrupted_bytes", 0)
    for c in held:
        c.close()
