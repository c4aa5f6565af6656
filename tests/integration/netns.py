"""Two hosts and a firewall between them, in network namespaces a test creates.

    [cluster] 10.253.1.2 (+ .3) --- 10.253.1.1 [router] 10.253.2.1 --- 10.253.2.2 [vault]
    brokers, wrappers on loopback     nft forward chain: the faults     vault-bridge, OpenBao

The router forwards between its two links; the tests break the path in its forward chain
(drop, or answer with a TCP reset, one direction or both), so neither host's own stack knows
about the fault: a real partition as the link's TCP sees it. No interface is ever made in this
machine's own namespace, and every namespace (and /etc/netns/<name>) is removed on close.

Python code reaches into a namespace from a thread of its own (setns(2) moves only the calling
thread): `World.call(host, fn)` runs fn there, and sockets fn makes stay in that namespace
whichever thread later uses them. The main thread never changes namespace.
"""
import ctypes
import os
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from harness import Daemon

CLUSTER_IP, CLUSTER_IP2 = "10.253.1.2", "10.253.1.3"
ROUTER_C, ROUTER_V = "10.253.1.1", "10.253.2.1"
VAULT_IP = "10.253.2.2"

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def have_tools():
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "nft"))


def enter(ns):
    """Moves the calling thread (never the main one) into network namespace `ns`."""
    assert threading.current_thread() is not threading.main_thread()
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({ns}): {os.strerror(e)}")
    finally:
        os.close(fd)


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True,
                          **kw)


class World:
    """The three namespaces; `fault(...)` sets the router's firewall, `heal()` clears it."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        tag = uuid.uuid4().hex[:6]
        self.ns = {h: f"ctn-{tag}-{h}" for h in ("cluster", "router", "vault")}
        self.made = []
        self.daemons = []
        self.etc = []

    def up(self):
        for ns in self.ns.values():
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        r = self.ns["router"]
        for name, peer, router_ip, ip in (("c", "cluster", ROUTER_C, CLUSTER_IP),
                                          ("v", "vault", ROUTER_V, VAULT_IP)):
            run("ip", "-n", r, "link", "add", f"r{name}", "type", "veth", "peer", "name",
                f"h{name}", "netns", self.ns[peer])
            run("ip", "-n", r, "addr", "add", f"{router_ip}/24", "dev", f"r{name}")
            run("ip", "-n", self.ns[peer], "addr", "add", f"{ip}/24", "dev", f"h{name}")
            run("ip", "-n", r, "link", "set", f"r{name}", "up")
            run("ip", "-n", self.ns[peer], "link", "set", f"h{name}", "up")
            run("ip", "-n", self.ns[peer], "route", "add", "default", "via", router_ip)
        run("ip", "-n", self.ns["cluster"], "addr", "add", f"{CLUSTER_IP2}/32", "dev", "hc")
        run("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.heal()

    # ------------------------------------------------------------ the firewall
    def _rules(self, body):
        # The counter sees every connection attempt from the vault host to the cluster (a
        # SYN without ACK), before any fault rule: the bridge's dials, counted at the router.
        syn = 'iifname "rv" oifname "rc" tcp flags & (syn | ack) == syn counter name "syns"'
        rules = (f"table inet fault\ndelete table inet fault\n"
                 f"table inet fault {{\n  counter syns {{ }}\n"
                 f"  chain forward {{ type filter hook forward priority 0; policy accept;\n"
                 f"    {syn}\n{body}  }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", self.ns["router"], "nft", "-f", "-"],
                       input=rules, text=True, check=True, capture_output=True)

    def fault(self, kind, direction="both"):
        """kind: 'drop' (silent) or 'reset' (TCP answered with RST, the rest dropped);
        direction: 'both', 'to_broker' (vault -> cluster only) or 'to_bridge'."""
        verdict = {"drop": "drop", "reset": "reject with tcp reset"}[kind]
        lines = []
        if direction in ("both", "to_broker"):
            lines.append(f"iifname \"rv\" oifname \"rc\" meta l4proto tcp {verdict}")
            lines.append("iifname \"rv\" oifname \"rc\" drop")
        if direction in ("both", "to_bridge"):
            lines.append(f"iifname \"rc\" oifname \"rv\" meta l4proto tcp {verdict}")
            lines.append("iifname \"rc\" oifname \"rv\" drop")
        self._rules("".join(f"    {x}\n" for x in lines))

    def heal(self):
        self._rules("")

    def syns_to_broker(self):
        """Connection attempts from the vault host to the cluster since the last fault()/heal()."""
        out = run("ip", "netns", "exec", self.ns["router"], "nft", "list", "counter", "inet",
                  "fault", "syns").stdout
        return int(re.search(r"packets (\d+)", out).group(1))

    def unacked(self, host, peer):
        """Segments sent and not yet acknowledged on `host`'s connection to peer (ip:port)."""
        out = run("ip", "netns", "exec", self.ns[host], "ss", "-tinH", "dst", peer).stdout
        m = re.search(r"\bunacked:(\d+)", out)
        return int(m.group(1)) if m else 0

    # ------------------------------------------------------------ names
    def hosts_file(self, host, text):
        """/etc/hosts as `ip netns exec` shows it to processes on `host`. Written in place
        (same inode), so that a process already running sees the change through the bind
        mount; resolv.conf names no server, so only this file answers."""
        d = Path("/etc/netns") / self.ns[host]
        if d not in self.etc:
            d.mkdir(parents=True, exist_ok=True)
            self.etc.append(d)
            (d / "resolv.conf").write_text("# no DNS server: /etc/hosts only\n")
        f = d / "hosts"
        mode = "r+" if f.exists() else "w"
        with open(f, mode) as fh:
            fh.seek(0)
            fh.write(text)
            fh.truncate()

    # ------------------------------------------------------------ processes
    def exec(self, host, *argv):
        return ["ip", "netns", "exec", self.ns[host], *map(str, argv)]

    def daemon(self, host, argv, name):
        n = len(self.daemons) + 1
        d = Daemon(self.exec(host, *argv), self.tmp / f"{n:02d}-{name}.log")
        self.daemons.append(d)
        return d

    def call(self, host, fn, *args, **kw):
        """fn(*args, **kw) in a thread inside `host`'s namespace; its result or exception."""
        out = {}

        def body():
            try:
                enter(self.ns[host])
                out["v"] = fn(*args, **kw)
            except BaseException as e:  # handed to the caller
                out["e"] = e
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join()
        if "e" in out:
            raise out["e"]
        return out["v"]

    def thread(self, host, fn, *args):
        """A started daemon thread running fn(*args) inside `host`'s namespace."""
        def body():
            enter(self.ns[host])
            fn(*args)
        t = threading.Thread(target=body, daemon=True)
        t.start()
        return t

    def close(self):
        for d in reversed(self.daemons):
            d.kill()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for d in self.etc:
            shutil.rmtree(d, ignore_errors=True)
