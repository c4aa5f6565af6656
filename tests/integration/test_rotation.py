"""Certificate rotation on SIGHUP without losing a stream (FI-20, T-16)."""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading

from harness import pin_of, wait_for


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
    # Each rotation brings a new key: the bridge pins them all beforehand (the
    # documented order), or the broker would refuse them (protocol.md §5b).
    rotations = [env.pki.issue(f"broker-r{n}", "serverAuth") for n in range(5)]
    pins = [env.broker_pin, *(pin_of(crt) for crt, _ in rotations)]
    bridge = env.bridge(broker.bridge_port, echo.addr,
                        extra=[a for p in pins for a in ("--broker-pin", p)])
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
    for n, (crt, key) in enumerate(rotations):
        shutil.copy(crt, live_crt)
        shutil.copy(key, live_key)
        broker.signal(signal.SIGHUP)
        wait_for(lambda: broker.count(r"reload: new certificate material in service") >= n + 1, 10,
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


def test_a_changed_certificate_file_is_picked_up_without_a_signal(env):
    live_crt, live_key = env.tmp / "live.crt", env.tmp / "live.key"
    shutil.copy(env.broker_crt, live_crt)
    shutil.copy(env.broker_key, live_key)
    broker = env.broker(files=(live_crt, live_key, env.pki.ca_crt))
    crt, key = env.pki.issue("broker-next", "serverAuth")
    # Swap both at once the way a Kubernetes secret update does (rename over).
    (env.tmp / "new.key").write_bytes(key.read_bytes())
    (env.tmp / "new.key").chmod(0o600)  # a key others can read is refused
    (env.tmp / "new.crt").write_bytes(crt.read_bytes())
    os.replace(env.tmp / "new.key", live_key)
    os.replace(env.tmp / "new.crt", live_crt)
    broker.wait_log(r"file changed: reloading", timeout=10)
    wait_for(lambda: served_cert_sha256(env, broker.bridge_port) == file_cert_sha256(crt), 10,
             "new handshakes to present the new certificate")


def test_removing_a_pin_from_the_pin_file_rejects_that_bridge_on_its_next_handshake(env):
    from harness import Pki, pin_of
    pins = env.tmp / "bridge-pins"
    other = Pki(env.tmp / "other", "other-ca")
    next_crt, _ = other.issue("next-bridge", "clientAuth")
    pins.write_text(f"# current and next bridge keys\n{pin_of(env.bridge_crt)}\n{pin_of(next_crt)}\n")
    broker, bridge, _ = env.tunnel(broker_extra=["--bridge-pin-file", str(pins)])
    pins.write_text(f"{pin_of(next_crt)}\n")  # the current key is retired
    broker.wait_log(r"reload: new certificate material in service", timeout=10)
    # The live link stays (pins apply to handshakes); a new handshake with the old key fails.
    os.kill(broker.children()["tls"], signal.SIGKILL)  # forces the bridge to reconnect
    broker.wait_log(r"matches no configured pin", timeout=20)
    assert broker.count(r"conn=\d+ bridge connected") == 1


def test_a_pin_file_with_a_bad_line_is_a_start_up_error_naming_the_line(env):
    pins = env.tmp / "pins"
    pins.write_text("sha256//" + "A" * 43 + "=\nnot-a-pin\n")
    r = subprocess.run([str(a) for a in [
        __import__("harness").BROKER, "--bridge-listen", "127.0.0.1:0", "--service-listen",
        "127.0.0.1:0", "--cert", env.broker_crt, "--key", env.broker_key, "--ca-cert",
        env.pki.ca_crt, "--bridge-pin-file", pins]], capture_output=True, timeout=20)
    assert r.returncode == 2
    assert r.stderr.decode().count("\n") == 1 and f"{pins}:2: not a pin" in r.stderr.decode()
