"""One vault host serving two clusters (issue 12): two vault-bridge@NAME
instances, each run with exactly the command line systemd would build from
systemd/vault-bridge@.service and the instance's own
/etc/vault-bridge/NAME/vault-bridge.env, beside one OpenBao stand-in.

Three network namespaces this test creates, joined by veth pairs whose
addresses exist only inside them:

    [gke] broker 10.251.1.2:9443 --- 10.251.1.1 [vault host] 10.251.2.1 --- 10.251.2.2:9443 broker [eks]
          wrappers -> 127.0.0.1:8443            OpenBao stand-in 127.0.0.1:8200     wrappers -> 127.0.0.1:8443

Each cluster has its own CA and certificates (deploy/cloudtaser-certs) and
a canary secret of its own. The vault host's egress lock allows exactly the
two brokers (`vault-egress-lock apply --broker gke=... --broker eks=...`).

systemd is not PID 1 here, so the unit's process set-up is reproduced from
its own directives: User=/Group=vault-%i become a uid/gid of the instance's
own (no user is added to this host), TemporaryFileSystem=/etc/vault-bridge:ro
and BindReadOnlyPaths=/etc/vault-bridge/%i a private mount namespace with
that view, RuntimeDirectory= a directory the instance owns, UMask=. The
paths are the unit's, under a scratch root. What that proves about systemd
itself is only what the directives say; check-systemd runs systemd-analyze.
"""
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from harness import BRIDGE, BROKER, BUILD, ROOT, Daemon, wait_for

UNIT = ROOT / "systemd" / "vault-bridge@.service"
CERTS = ROOT / "deploy" / "cloudtaser-certs"
STANDIN = ROOT / "tests" / "upstream_standin.py"
LOCK = ROOT / "bridge" / "vault-egress-lock"
SVC = "cloudtaser-broker.cloudtaser-system.svc"
TOKEN = "s.two-clusters-" + uuid.uuid4().hex[:8]
# Each cluster: its broker's address (in its own namespace) and the vault
# host's side of the link, and the uid/gid standing in for user vault-NAME.
CLUSTERS = {"gke": ("10.251.1.2", "10.251.1.1", 61001),
            "eks": ("10.251.2.2", "10.251.2.1", 61002)}
BROKER_PORT = 9443

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "unshare", "setpriv", "nsenter", "nft")),
    reason="needs root, iproute2, util-linux and nft for namespaces and the egress lock")

# Builds the instance's process the way its unit does: its view of
# /etc/vault-bridge (an empty read-only tmpfs with only its own directory
# bound in), its umask, its user and group, no capabilities, then execs the
# bridge (so the Daemon's pid is the bridge's parent).
LAUNCH = r"""
set -eu
etc=$1 name=$2 uid=$3 gid=$4 umask_=$5 stash=$6
shift 6
mkdir -p "$stash"
mount --bind "$etc/$name" "$stash"
mount -t tmpfs -o mode=0755 tmpfs "$etc"
mkdir "$etc/$name"
mount --bind "$stash" "$etc/$name"
mount -o remount,bind,ro "$etc/$name"
umount "$stash"
mount -o remount,ro "$etc"
umask "$umask_"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all -- "$@"
"""

# A wrapper in a cluster: TLS to the in-cluster service name through the
# broker's port, trusting that cluster's CA only; prints the HTTP response.
WRAPPER = r"""
import socket, ssl, sys
port, cafile, token, name = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="%s") as s:
        s.sendall(("GET /v1/secret/data/%%s HTTP/1.1\r\nHost: %s\r\nX-Vault-Token: %%s\r\n"
                   "Connection: close\r\n\r\n" %% (name, token)).encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
sys.stdout.buffer.write(out)
""" % (SVC, SVC)


# ---------------------------------------------------------------- the unit
def unit_settings(text):
    """KEY -> [values] of the unit, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).strip())
    return out


def instance_unit(name, scratch):
    """The template's text for instance NAME, its paths under `scratch`."""
    text = UNIT.read_text()
    text = text.replace("@BINDIR@", str(BUILD)).replace("%i", name)
    text = text.replace("/etc/vault-bridge", f"{scratch}/etc/vault-bridge")
    return text.replace("/run/", f"{scratch}/run/")


def read_env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (no quoting used here)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def exec_start(settings):
    """argv of ExecStart= as systemd builds it: Environment=, then the
    EnvironmentFile= on top; "${VAR}" stays one argument, a word that is
    just "$VAR" splits on white space (and vanishes when empty)."""
    env = {}
    for line in settings.get("Environment", []):
        for assignment in shlex.split(line):
            k, v = assignment.split("=", 1)
            env[k] = v
    for f in settings.get("EnvironmentFile", []):
        env.update(read_env_file(Path(f.lstrip("-"))))
    argv = []
    for word in settings["ExecStart"][0].split():
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env.get(x.group(1), ""), word))
    return argv


# ---------------------------------------------------------------- the world
def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


class World:
    def __init__(self, scratch):
        self.scratch = scratch
        tag = uuid.uuid4().hex[:6]
        self.ns_vault = f"ct2c-{tag}-vault"
        self.ns = {name: f"ct2c-{tag}-{name}" for name in CLUSTERS}
        self.made = []
        self.daemons = []
        self.stash = {}

    def netns(self):
        run("ip", "netns", "add", self.ns_vault)
        self.made.append(self.ns_vault)
        run("ip", "-n", self.ns_vault, "link", "set", "lo", "up")
        for i, (name, (broker_ip, vault_ip, _)) in enumerate(CLUSTERS.items()):
            ns = self.ns[name]
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # Created inside the vault host's namespace, the peer moved straight
            # into the cluster's: no interface ever exists in the host's namespace.
            run("ip", "-n", self.ns_vault, "link", "add", f"v{i}", "type", "veth",
                "peer", "name", f"c{i}", "netns", ns)
            run("ip", "-n", self.ns_vault, "addr", "add", f"{vault_ip}/24", "dev", f"v{i}")
            run("ip", "-n", ns, "addr", "add", f"{broker_ip}/24", "dev", f"c{i}")
            run("ip", "-n", self.ns_vault, "link", "set", f"v{i}", "up")
            run("ip", "-n", ns, "link", "set", f"c{i}", "up")

    def daemon(self, argv, log):
        d = Daemon(argv, self.scratch / "logs" / log)
        self.daemons.append(d)
        return d

    def close(self):
        for d in reversed(self.daemons):
            d.kill()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def make_instance(w, name):
    """What docs/vault-host.md "Serving several clusters" has the operator do,
    under the scratch root: cloudtaser-certs for the cluster, its directory
    0750 root:vault-NAME with the files 0640, and vault-bridge.env."""
    broker_ip, _, uid = CLUSTERS[name]
    out = w.scratch / "certs" / name
    run(CERTS, "--out", out, "--external-host", broker_ip)
    d = w.scratch / "etc" / "vault-bridge" / name
    d.mkdir(parents=True)
    for src, dst in (("bridge/tls.crt", "tls.crt"), ("bridge/tls.key", "tls.key"),
                     ("bridge/ca.crt", "ca.crt"), ("bridge/broker.pin", "broker.pin"),
                     ("service/tls.crt", "service.crt"), ("service/tls.key", "service.key")):
        shutil.copyfile(out / src, d / dst)
        os.chown(d / dst, 0, uid)
        os.chmod(d / dst, 0o640)
    (d / "vault-bridge.env").write_text(f"BROKER_ADDRESS={broker_ip}:{BROKER_PORT}\n")
    os.chown(d, 0, uid)
    os.chmod(d, 0o750)
    os.chmod(d.parent, 0o750)  # as the package makes /etc/vault-bridge: root:vault 0750
    return out


def start_broker(w, name):
    broker_ip = CLUSTERS[name][0]
    certs = w.scratch / "certs" / name / "broker"
    # The broker reads the bridge's pin from bridge.pin beside its --cert.
    b = w.daemon(["ip", "netns", "exec", w.ns[name], BROKER,
                  "--bridge-listen", f"{broker_ip}:{BROKER_PORT}", "--service-listen", "127.0.0.1:8443",
                  "--cert", certs / "tls.crt", "--key", certs / "tls.key", "--ca-cert", certs / "ca.crt"],
                 f"broker-{name}.log")
    b.wait_log(r"\[parent\] info: ready")
    return b


def start_instance(w, name, settings, argv):
    """vault-bridge@NAME as its unit starts it, in the vault host's namespace."""
    _, _, uid = CLUSTERS[name]
    etc = w.scratch / "etc" / "vault-bridge"
    # RuntimeDirectory=vault-bridge-NAME, RuntimeDirectoryMode=0750, owned by the instance.
    rundir = w.scratch / "run" / settings["RuntimeDirectory"][0]
    rundir.mkdir(parents=True, exist_ok=True)
    os.chown(rundir, uid, uid)
    os.chmod(rundir, int(settings["RuntimeDirectoryMode"][0], 8))
    stash = w.scratch / f"stash-{name}"
    return w.daemon(["ip", "netns", "exec", w.ns_vault, "unshare", "--mount", "--propagation", "private",
                     "sh", "-c", LAUNCH, "launch", etc, name, uid, uid, settings["UMask"][0], stash, *argv],
                    f"vault-bridge@{name}.log")


def wrapper_get(w, name, ca, secret_name, token=TOKEN):
    """A wrapper in cluster NAME's namespace reads a secret; the response, or b"" on failure."""
    r = subprocess.run(["ip", "netns", "exec", w.ns[name], sys.executable, "-c", WRAPPER,
                        "8443", str(ca), token, secret_name], capture_output=True, timeout=20)
    return r.stdout if r.returncode == 0 else b""


def link_up(status_file):
    try:
        text = Path(status_file).read_text()
    except OSError:
        return None
    m = re.search(r"^cloudtaser_bridge_link_up (\d)$", text, re.M)
    return int(m.group(1)) if m else None


def in_view_as(bridge, uid, *cmd):
    """Runs cmd inside the bridge's mount namespace as its uid/gid; exit code."""
    return subprocess.run(["nsenter", "-t", str(bridge.proc.pid), "-m", "setpriv", f"--reuid={uid}",
                           f"--regid={uid}", "--clear-groups", *map(str, cmd)],
                          capture_output=True, timeout=10).returncode


# ---------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def world():
    """The two clusters, up and linked; the tests below run against it in
    file order (the last one kills an instance)."""
    # Not pytest's tmp_path: that sits under a 0700 directory the instances'
    # uids could not enter.
    scratch = Path(tempfile.mkdtemp(prefix="ct-two-clusters-", dir="/tmp"))
    os.chmod(scratch, 0o755)
    (scratch / "logs").mkdir()
    w = World(scratch)
    try:
        w.netns()
        w.canary = {name: f"canary-{name}-{secrets.token_hex(12)}" for name in CLUSTERS}
        # One OpenBao stand-in on the vault host's loopback, a canary per cluster.
        bao = w.daemon(["ip", "netns", "exec", w.ns_vault, sys.executable, STANDIN,
                        "--listen", "127.0.0.1:8200", "--token", TOKEN,
                        *[a for name in CLUSTERS for a in ("--secret", f"{name}-canary=value={w.canary[name]}")]],
                       "openbao-standin.log")
        bao.wait_log(r"OpenBao stand-in listening")
        w.certs = {name: make_instance(w, name) for name in CLUSTERS}
        w.ca = {name: w.certs[name] / "ca" / "ca.crt" for name in CLUSTERS}
        w.brokers = {name: start_broker(w, name) for name in CLUSTERS}
        # The egress lock allows exactly both brokers (the lock's state and
        # drop-ins under the scratch root; its rules in the vault host's namespace).
        subprocess.run(["ip", "netns", "exec", w.ns_vault, LOCK, "apply", "--backend", "nft",
                        "--confirm-timeout", "0",
                        *[a for name, (ip, _, _) in CLUSTERS.items()
                          for a in ("--broker", f"{name}={ip}:{BROKER_PORT}")]],
                       check=True, capture_output=True,
                       env=dict(os.environ, VAULT_EGRESS_LOCK_STATE_DIR=str(scratch / "lock-state"),
                                VAULT_EGRESS_LOCK_DROPIN_DIR=str(scratch / "systemd" / "vault-bridge.service.d"),
                                VAULT_EGRESS_LOCK_RESOLV_CONF="/dev/null"))
        # Each instance with exactly its unit's command line.
        w.settings = {name: unit_settings(instance_unit(name, scratch)) for name in CLUSTERS}
        w.argv = {name: exec_start(w.settings[name]) for name in CLUSTERS}
        w.bridges = {name: start_instance(w, name, w.settings[name], w.argv[name]) for name in CLUSTERS}
        for name in CLUSTERS:
            w.bridges[name].wait_log(r"connected to the broker", timeout=15)
            w.brokers[name].wait_log(r"conn=\d+ bridge connected", timeout=15)
        w.status = {name: w.argv[name][w.argv[name].index("--status-file") + 1] for name in CLUSTERS}
        yield w
    finally:
        w.close()
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_unit_gives_each_instance_its_own_user_directory_and_runtime_directory_only():
    s = unit_settings(UNIT.read_text())
    assert s["User"] == ["vault-%i"] and s["Group"] == ["vault-%i"]
    assert s["TemporaryFileSystem"] == ["/etc/vault-bridge:ro"]
    assert s["BindReadOnlyPaths"] == ["/etc/vault-bridge/%i"]
    assert s["EnvironmentFile"] == ["/etc/vault-bridge/%i/vault-bridge.env"]
    assert s["RuntimeDirectory"] == ["vault-bridge-%i"]
    for key, want in (("PrivateUsers", "yes"), ("ProtectProc", "invisible"), ("ProtectSystem", "strict"),
                      ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""), ("IPAddressDeny", "any")):
        assert s[key] == [want], key
    for key in ("DynamicUser", "SupplementaryGroups", "ReadWritePaths", "BindPaths", "LoadCredential"):
        assert key not in s, key


def test_each_instance_runs_its_units_command_line_with_its_own_files(world):
    w = world
    for name in CLUSTERS:
        etc = w.scratch / "etc" / "vault-bridge" / name
        assert w.argv[name] == [str(BRIDGE), "--broker-address", f"{CLUSTERS[name][0]}:{BROKER_PORT}",
                                "--vault-addr", "http://127.0.0.1:8200",
                                "--client-cert", f"{etc}/tls.crt", "--client-key", f"{etc}/tls.key",
                                "--ca-cert", f"{etc}/ca.crt",
                                "--status-file", f"{w.scratch}/run/vault-bridge-{name}/status.prom"]
        wait_for(lambda: link_up(w.status[name]) == 1, 10, f"link_up 1 in {name}'s status file")
        # Every process of the tree runs as the instance's uid.
        b = w.bridges[name]
        for pid in [b.proc.pid, *b.children().values()]:
            uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
            assert uids == [str(CLUSTERS[name][2])] * 4, (name, pid, uids)


def test_the_egress_lock_gives_each_instance_a_drop_in_with_its_own_broker(world):
    for name, (ip, _, _) in CLUSTERS.items():
        dropin = world.scratch / "systemd" / f"vault-bridge@{name}.service.d" / "egress-lock.conf"
        assert re.findall(r"^IPAddressAllow=.*$", dropin.read_text(), re.M) == [f"IPAddressAllow={ip}"]


def test_each_clusters_wrapper_reads_its_own_canary_through_its_own_broker(world):
    w = world
    for name in CLUSTERS:
        body = wait_for(lambda: wrapper_get(w, name, w.ca[name], f"{name}-canary"), 10,
                        f"{name}'s wrapper reading its canary")
        assert body.startswith(b"HTTP/1.1 200") and w.canary[name].encode() in body, body[:300]


def test_a_wrapper_trusting_one_clusters_ca_is_refused_by_the_other_clusters_instance(world):
    # The TLS a wrapper trusts (its cluster's CA) ends in its own instance only.
    w = world
    assert wrapper_get(w, "eks", w.ca["gke"], "gke-canary") == b""
    assert wrapper_get(w, "gke", w.ca["eks"], "eks-canary") == b""


def test_neither_instance_can_open_the_other_instances_key(world):
    # In its own view, as its own uid, an instance opens its own key, and the
    # other's directory is not there at all. In the host's view the other's
    # key is 0640 root:<the other's group>, which its uid is not in, and
    # opening it is refused.
    w = world
    etc = w.scratch / "etc" / "vault-bridge"
    for name, other in (("gke", "eks"), ("eks", "gke")):
        uid = CLUSTERS[name][2]
        assert in_view_as(w.bridges[name], uid, "cat", etc / name / "tls.key") == 0
        assert in_view_as(w.bridges[name], uid, "test", "-e", etc / other) != 0
        assert in_view_as(w.bridges[name], 0, "test", "-e", etc / other / "tls.key") != 0
        st = os.stat(etc / other / "tls.key")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, CLUSTERS[other][2], 0o640)
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            "cat", str(etc / other / "tls.key")], capture_output=True, timeout=10)
        assert r.returncode != 0 and b"Permission denied" in r.stderr


def test_kill_9_of_one_instances_whole_tree_leaves_the_other_serving(world):
    w = world
    eks = w.bridges["eks"]
    eks_pids = [eks.proc.pid, *eks.children().values()]
    assert len(eks_pids) == 3
    os.killpg(eks.proc.pid, signal.SIGKILL)
    eks.proc.wait(timeout=10)
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in eks_pids), 10, "eks's processes gone")
    w.brokers["eks"].wait_log(r"conn=1 bridge disconnected", timeout=15)
    for _ in range(5):
        body = wrapper_get(w, "gke", w.ca["gke"], "gke-canary")
        assert body.startswith(b"HTTP/1.1 200") and w.canary["gke"].encode() in body, body[:300]
    assert link_up(w.status["gke"]) == 1
    assert w.bridges["gke"].proc.poll() is None
    # ...while eks's wrappers are held by their broker (up to its pending
    # timeout) and then refused: nothing else answers for eks.
    assert w.canary["eks"].encode() not in wrapper_get(w, "eks", w.ca["eks"], "eks-canary")

    # Restart=always brings eks back; it serves its own canary again.
    w.bridges["eks"] = start_instance(w, "eks", w.settings["eks"], w.argv["eks"])
    w.bridges["eks"].wait_log(r"connected to the broker", timeout=15)
    body = wait_for(lambda: wrapper_get(w, "eks", w.ca["eks"], "eks-canary"), 15,
                    "eks's wrapper reading its canary after the restart")
    assert body.startswith(b"HTTP/1.1 200") and w.canary["eks"].encode() in body, body[:300]
