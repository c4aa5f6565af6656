"""Certificate rotation on SIGHUP without losing a stream (FI-20, T-16)."""
import hashlib
import shutil
import signal
import socket
import subprocess
import threading

from harness import wait_for


def served_cert_sha256(env, port):
    """SHA-256 of the certificate a fresh handshake on the bridge port presents."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-cert", str(env.bridge_crt), "-key", str(env.bridge_key),
                        "-CAfile", str(env.pki.ca_crt), "-tls1_3", "-showcerts"],
                       input=b"", capture_output=True, timeout=20)
    pem = r.stdout.split(b"-----BEGIN CERTIFICATE-----", 1)[1].split(b"-----END CERTIFICATE-----")[0]
    der = subprocess.run(["openssl", "x509", "-outform", "DER"],
                         input=b"-----BEGIN CERTIFICATE-----" + pem + b"-----END CERTIFICATE-----\n",
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def file_cert_sha256(path):
    der = subprocess.run(["openssl", "x509", "-in", str(path), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def test_ten_pumping_streams_survive_five_rotations_and_new_handshakes_use_the_new_cert(env):
    echo = env.echo()
    live_crt, live_key = env.tmp / "live.crt", env.tmp / "live.key"
    shutil.copy(env.broker_crt, live_crt)
    shutil.copy(env.broker_key, live_key)
    broker = env.broker(files=(live_crt, live_key, env.pki.ca_crt))
    bridge = env.bridge(broker.bridge_port, echo.addr)
    broker.wait_log(r"conn=\d+ bridge connected")
    stop = threading.Event()
    results = []

    def pump(i):
        s = socket.create_connection(("127.0.0.1", broker.service_port), timeout=30)
        block = hashlib.sha256(str(i).encode()).digest() * 512  # 16 KiB
        sent, got = hashlib.sha256(), hashlib.sha256()
        n_sent = n_got = 0
        try:
            while not stop.is_set() or n_got < n_sent:
                if not stop.is_set():
                    s.sendall(block)
                    sent.update(block)
                    n_sent += len(block)
                while n_got < n_sent:
                    b = s.recv(1 << 16)
                    if not b:
                        raise ConnectionError("stream closed early")
                    got.update(b)
                    n_got += len(b)
            results.append((n_sent, sent.hexdigest() == got.hexdigest()))
        except OSError as e:
            results.append((n_sent, repr(e)))
        finally:
            s.close()

    threads = [threading.Thread(target=pump, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for n in range(5):
        crt, key = env.pki.issue(f"broker-r{n}", "serverAuth")
        shutil.copy(crt, live_crt)
        shutil.copy(key, live_key)
        broker.signal(signal.SIGHUP)
        wait_for(lambda: broker.count(r"reload: new certificate material in service") == n + 1, 10,
                 f"rotation {n + 1} to be in service")
    stop.set()
    for t in threads:
        t.join(60)
    assert len(results) == 10
    for n_sent, ok in results:
        assert ok is True and n_sent > 0, results
    assert broker.count(r"bridge disconnected") == 0  # the live link was never dropped
    assert served_cert_sha256(env, broker.bridge_port) == file_cert_sha256(live_crt)
    assert bridge.count(r"link to the broker lost") == 0


def test_a_broken_new_key_keeps_the_old_material_in_service(env):
    live_crt, live_key = env.tmp / "live.crt", env.tmp / "live.key"
    shutil.copy(env.broker_crt, live_crt)
    shutil.copy(env.broker_key, live_key)
    broker = env.broker(files=(live_crt, live_key, env.pki.ca_crt))
    other_crt, _ = env.pki.issue("broker-next", "serverAuth")
    shutil.copy(other_crt, live_crt)  # new certificate, old key: a mismatched pair
    broker.signal(signal.SIGHUP)
    broker.wait_log(r"reload refused, keeping the material in service: .*does not match")
    live_key.write_text("not a key\n")
    broker.signal(signal.SIGHUP)
    wait_for(lambda: broker.count(r"reload refused") == 2, 10, "the second refusal")
    # New handshakes still get the original certificate, and a bridge connects.
    assert served_cert_sha256(env, broker.bridge_port) == file_cert_sha256(env.broker_crt)
    up = env.kv()
    env.bridge(broker.bridge_port, up.addr)
    broker.wait_log(r"conn=\d+ bridge connected")
