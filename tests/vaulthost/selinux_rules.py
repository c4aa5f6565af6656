#!/usr/bin/env python3
"""Check what a compiled module grants, from its CIL form (produced from
the .pp by /usr/libexec/selinux/hll/pp).

Usage: selinux_rules.py vault_bridge|cloudtaser_beacon CIL FC

vault_bridge promises: no listening or binding, network connections only to
the broker (http_port_t), OpenBao's port and DNS, no capabilities, no writes
to files or directories except the runtime directory.
cloudtaser_beacon promises the opposite shape: it binds and accepts on the
HTTPS and metrics ports only, connects nowhere (no name_connect, no UDP at
all), holds no capability but net_bind_service, and writes no file.
Both: the file contexts the packages rely on. Prints one line per property
and exits 1 if any fails.
"""
import re
import sys

CONNECT_OK = {"http_port_t", "vault_bridge_vault_port_t", "dns_port_t"}
# Writes on objects that are not files on disk: descriptors systemd hands
# over (init's pipes and memfds, the initrc console), from init_daemon_domain.
INHERITED_OK = {"init_t", "initrc_t", "init_tmpfs_t", "initrc_devpts_t", "self"}
WRITE_PERMS = {"write", "append", "create", "unlink", "rename", "link",
               "add_name", "remove_name", "setattr", "reparent", "rmdir"}
FILE_CLASSES = {"file", "dir", "lnk_file", "sock_file", "fifo_file",
                "chr_file", "blk_file"}
RULE = re.compile(r"^\(allow (\S+) (\S+) \((\S+) \(([^)]*)\)\)\)$")


def parse(cil_path, domain):
    # Rules inside an optional block that init_daemon_domain() adds for nscd
    # apply only where the nscd policy module is loaded; they are listed,
    # not counted against the module's own promises.
    text = open(cil_path).read()
    blocks, stack, depth = {}, [], 0
    rules = []
    for line in text.splitlines():
        st = line.strip()
        m = re.match(r"^\(optional (\S+)", st)
        if m:
            stack.append((m.group(1), depth))
            blocks.setdefault(m.group(1), [])
        m = RULE.match(st)
        if m and m.group(1) == domain:
            rules.append(([b for b, _ in stack], (m.group(2), m.group(3), set(m.group(4).split()))))
        for b, _ in stack:
            blocks[b].append(st)
        depth += st.count("(") - st.count(")")
        while stack and depth <= stack[-1][1]:
            stack.pop()
    nscd = {b for b, lines in blocks.items() if any("nscd_" in l for l in lines)}
    allows = [r for bs, r in rules if not set(bs) & nscd]
    skipped = [r for bs, r in rules if set(bs) & nscd]
    if skipped:
        print("  note: %d rule(s) from init_daemon_domain's optional nscd block not counted" % len(skipped))
    return text, allows


FAILS = 0


def check(ok, what, detail=""):
    global FAILS
    print("  %s %s%s" % ("PASS" if ok else "FAIL", what, (": " + detail) if detail and not ok else ""))
    FAILS += 0 if ok else 1


def check_labels(fc_path, labels):
    fc = open(fc_path).read()
    for path, typ in labels:
        ok = any(l.split()[0] == path and typ in l for l in fc.splitlines() if l.strip())
        check(ok, "labels %s %s" % (path, typ))


def writes_outside(allows, allowed_types):
    return [a for a in allows if a[1] in FILE_CLASSES - {"sock_file"} and a[2] & WRITE_PERMS
            and a[0] not in allowed_types and a[0] not in INHERITED_OK]


def bridge(cil_path, fc_path):
    text, allows = parse(cil_path, "vault_bridge_t")
    check(len(allows) > 20, "the module grants vault_bridge_t rules (%d parsed)" % len(allows))
    sockets = {"tcp_socket", "udp_socket", "rawip_socket", "sctp_socket", "unix_stream_socket"}
    bad = [a for a in allows if a[1] in sockets and a[2] & {"listen", "accept"}]
    check(not bad, "no listen/accept on any socket", str(bad))
    bad = [a for a in allows if a[2] & {"name_bind", "node_bind"}]
    check(not bad, "no name_bind/node_bind (it never binds a port)", str(bad))
    targets = {a[0] for a in allows if "name_connect" in a[2]}
    check(targets <= CONNECT_OK and {"http_port_t", "vault_bridge_vault_port_t"} <= targets,
          "name_connect only to the broker (http_port_t), OpenBao's port and DNS",
          str(sorted(targets)))
    bad = [a for a in allows if a[1] in ("capability", "capability2", "cap_userns")]
    check(not bad, "no capabilities", str(bad))
    # Writing a sock_file is connecting to a service: only systemd's notify
    # socket (init_runtime_t).
    socks = {a[0] for a in allows if a[1] == "sock_file" and "write" in a[2]}
    check(socks <= {"init_runtime_t"}, "connects to no local service but systemd's notify socket",
          str(sorted(socks)))
    bad = writes_outside(allows, {"vault_bridge_runtime_t"})
    check(not bad, "writes only in its runtime directory (plus inherited descriptors)", str(bad))
    reads = {a[0] for a in allows if a[1] == "file" and "read" in a[2]}
    check("vault_bridge_conf_t" in reads, "reads its configuration and certificates")
    bad = [a for a in allows if a[0] == "vault_bridge_conf_t" and a[2] & WRITE_PERMS]
    check(not bad, "cannot change its configuration or keys", str(bad))
    exe = [a for a in allows if a[0] == "vault_bridge_exec_t" and "execute_no_trans" in a[2]]
    check(bool(exe), "may exec itself and its forwarding executable in its own domain (execveat)")
    for rule in ("(neverallow vault_bridge_t self (tcp_socket (listen accept)))",
                 "(neverallow vault_bridge_t port_type (tcp_socket (name_bind)))"):
        check(rule in text, "keeps " + rule)

    check_labels(fc_path, (("/usr/bin/vault-bridge", "vault_bridge_exec_t"),
                      ("/usr/libexec/cloudtaser/vault-bridge-forward", "vault_bridge_exec_t"),
                      ("/etc/vault-bridge(/.*)?", "vault_bridge_conf_t"),
                      ("/etc/bridge(/.*)?", "vault_bridge_conf_t"),
                      ("/run/vault-bridge(/.*)?", "vault_bridge_runtime_t"),
                      ("/run/vault-bridge-[^/]+(/.*)?", "vault_bridge_runtime_t"),
                      ("/usr/lib/systemd/system/vault-bridge@\\.service", "vault_bridge_unit_t")))


def beacon(cil_path, fc_path):
    text, allows = parse(cil_path, "cloudtaser_beacon_t")
    check(len(allows) > 20, "the module grants cloudtaser_beacon_t rules (%d parsed)" % len(allows))
    targets = {a[0] for a in allows if "name_connect" in a[2]}
    check(not targets, "no name_connect at all: the beacon dials nowhere", str(sorted(targets)))
    udp = [a for a in allows if a[1] == "udp_socket"]
    check(not udp, "no UDP socket at all (no DNS: it resolves no name)", str(udp))
    binds = {a[0] for a in allows if a[1] == "tcp_socket" and "name_bind" in a[2]}
    check(binds == {"http_port_t", "websm_port_t"},
          "binds only the HTTPS port (http_port_t) and the metrics port (websm_port_t, 9090)",
          str(sorted(binds)))
    tcp = set().union(*[a[2] for a in allows if a[0] == "self" and a[1] == "tcp_socket"])
    check({"listen", "accept"} <= tcp and "connect" not in tcp,
          "listens and accepts; its TCP sockets may not even call connect()", str(sorted(tcp)))
    caps = set().union(set(), *[a[2] for a in allows if a[1] in ("capability", "capability2", "cap_userns")])
    check(caps == {"net_bind_service"}, "net_bind_service is its only capability", str(sorted(caps)))
    socks = {a[0] for a in allows if a[1] == "sock_file" and "write" in a[2]}
    check(socks <= {"init_runtime_t"}, "connects to no local service but systemd's notify socket",
          str(sorted(socks)))
    bad = writes_outside(allows, set())
    check(not bad, "writes no file or directory (only inherited descriptors)", str(bad))
    reads = {a[0] for a in allows if a[1] == "file" and "read" in a[2]}
    check("cloudtaser_beacon_conf_t" in reads, "reads its certificate and key")
    exe = [a for a in allows if a[0] == "cloudtaser_beacon_exec_t" and "execute_no_trans" in a[2]]
    check(bool(exe), "may exec itself and its forwarding executable in its own domain (execveat)")
    for rule in ("(neverallow cloudtaser_beacon_t port_type (tcp_socket (name_connect)))",):
        check(rule in text, "keeps " + rule)
    check_labels(fc_path, (("/usr/bin/cloudtaser-beacon", "cloudtaser_beacon_exec_t"),
                           ("/usr/libexec/cloudtaser/cloudtaser-beacon-forward", "cloudtaser_beacon_exec_t"),
                           ("/etc/cloudtaser-beacon(/.*)?", "cloudtaser_beacon_conf_t"),
                           ("/run/cloudtaser-beacon(/.*)?", "cloudtaser_beacon_runtime_t"),
                           ("/usr/lib/systemd/system/cloudtaser-beacon\\.service", "cloudtaser_beacon_unit_t")))


if __name__ == "__main__":
    {"vault_bridge": bridge, "cloudtaser_beacon": beacon}[sys.argv[1]](sys.argv[2], sys.argv[3])
    sys.exit(1 if FAILS else 0)
