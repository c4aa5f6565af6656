"""Real OpenBao clients write and read a secret through the tunnel, as
deployed: the wrapper's TLS ends in the bridge (--service-cert), which talks
plaintext to OpenBao (the KV stand-in, token-checked) on loopback.

- node-vault (npm, pinned in tests/clients/package-lock.json; `npm ci` there,
  which .ci/run does): write, read back byte-exact, delete, a wrong token.
- Python's urllib: PUT, then GET, byte-exact.
"""
import hashlib
import json
import random
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from harness import ROOT

SVC = "cloudtaser-broker.cloudtaser-system.svc"
TOKEN = "real-client-t0ken"
CLIENTS = ROOT / "tests" / "clients"
NODE = shutil.which("node")
NODE_VAULT = CLIENTS / "node_modules" / "node-vault" / "package.json"


def _value(n_chars, seed):
    """A secret that exercises the encoding: quotes, backslashes, control
    characters, multi-byte UTF-8 (2, 3 and 4 bytes), deterministic."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019 \"\\\n\t/{}\u00e4\u00df\u20ac\u6f22\U0001d11e\U0001f511"
    return "".join(rng.choice(alphabet) for _ in range(n_chars))


def _sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def _tls_tunnel(env):
    """Broker + bridge terminating the wrappers' TLS with a certificate for the
    service name and 127.0.0.1, in front of a token-checking KV stand-in."""
    svc_crt, svc_key = env.pki.issue("service", "serverAuth",
                                     sans=(f"DNS:{SVC}", "IP:127.0.0.1"))
    up = env.kv(token=TOKEN)
    broker = env.broker()
    bridge = env.bridge(broker.bridge_port, up.addr, service=(svc_crt, svc_key),
                        extra=["--vault-health-interval", "1"])
    broker.wait_log(r"conn=\d+ bridge connected")
    bridge.wait_log(r"connected to the broker")
    broker.wait_log(r"bridge's OpenBao: unknown -> active")
    return broker, up


@pytest.mark.skipif(NODE is None or not NODE_VAULT.exists(),
                    reason="node-vault is not installed: needs node and `npm ci` in tests/clients "
                           "(.ci/run does both)")
def test_node_vault_writes_and_reads_a_secret_byte_exact_through_the_tunnel(env):
    broker, up = _tls_tunnel(env)
    value = _value(100_000, 18)
    vfile = env.tmp / "value.txt"
    vfile.write_text(value, encoding="utf-8")
    cfg = env.tmp / "node-vault.json"
    cfg.write_text(json.dumps({
        "endpoint": f"https://{SVC}:{broker.service_port}", "token": TOKEN,
        "name": "team/app", "value_file": str(vfile), "ca_file": str(env.pki.ca_crt),
        "resolve": "127.0.0.1"}))
    r = subprocess.run([NODE, str(CLIENTS / "node_vault_roundtrip.js"), str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"node-vault through the tunnel: {got}")
    assert got["exact"] is True
    assert got["read_sha256"] == _sha(value)
    assert got["read_length"] == len(value.encode())
    assert (got["written_version"], got["read_version"]) == (1, 1)
    assert got["after_delete"] == 404
    assert got["wrong_token"] == "403 permission denied"
    # The write crossed the tunnel into OpenBao intact, not into some cache.
    assert up.store.versions["team/app"][0]["data"] == {"value": value}
    assert up.store.writes == 1


def test_python_urllib_puts_then_gets_a_secret_byte_exact_through_the_tunnel(env):
    broker, up = _tls_tunnel(env)
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_crt))
    base = f"https://127.0.0.1:{broker.service_port}/v1/secret/data/urllib"
    value = _value(50_000, 6)
    hdrs = {"X-Vault-Token": TOKEN, "Content-Type": "application/json"}
    req = urllib.request.Request(base, method="PUT", headers=hdrs,
                                 data=json.dumps({"data": {"value": value}}).encode())
    with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
        assert r.status == 200
        assert json.load(r)["data"]["version"] == 1
    with urllib.request.urlopen(urllib.request.Request(base, headers=hdrs), context=ctx,
                                timeout=20) as r:
        assert r.status == 200
        got = json.load(r)["data"]["data"]["value"]
    assert _sha(got) == _sha(value) and got == value
    # A wrong token is OpenBao's 403, which urllib raises as an HTTPError.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(base, headers={"X-Vault-Token": "no"}),
                               context=ctx, timeout=20)
    assert e.value.code == 403 and json.load(e.value)["errors"] == ["permission denied"]
    assert up.store.writes == 1
