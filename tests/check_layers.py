#!/usr/bin/env python3
"""make check-layers: the layering of shared/ (docs/architecture.md) holds.

  - a file in shared/<layer>/ includes only shared/ layers up to its own, and
    nothing from broker/, bridge/, beacon/, fuzz/ or tests/;
  - a unit test in tests/unit/<layer>/ includes only layers up to its own
    (tests/unit/broker/ tests the broker's code and may include anything);
  - <openssl/...> is included only under shared/tls/;
  - a forwarding process's sources never reach shared/tls/, even through
    other headers, and the built -forward executables neither need libssl or
    libcrypto nor define a symbol of shared/tls.

With --self-test it then plants one violation of each kind in a copy of the
tree (and gives a TLS executable as a forwarding one) and fails unless every
plant is reported. Exit status 0 when the tree is clean, 1 otherwise.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

LAYERS = ["base", "wire", "os", "ipc", "stream", "proc", "parent", "tls"]
FORWARD_EXES = ["cloudtaser-broker-forward", "vault-bridge-forward", "cloudtaser-beacon-forward"]
# Daemon files linked into a forwarding executable (besides forward_*.cc).
FORWARD_ALSO = ["broker/metrics.cc", "broker/metrics.h", "beacon/metrics.cc", "beacon/metrics.h"]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def sources(root):
    for top in ("shared", "broker", "bridge", "beacon", "fuzz", "tests"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if n.endswith((".cc", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, n), root)


def includes(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return [(kind, path) for kind, path in INCLUDE.findall(f.read())]


def layer_of(rel):
    parts = rel.split("/")
    if parts[0] == "shared" and len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    return None


def check_tree(root):
    problems = []
    graph = {}
    for rel in sources(root):
        incs = includes(root, rel)
        graph[rel] = [p for k, p in incs if k == '"']
        own = layer_of(rel)
        unit = None
        parts = rel.split("/")
        if parts[:2] == ["tests", "unit"] and len(parts) > 3 and parts[2] in LAYERS:
            unit = parts[2]
        for kind, path in incs:
            if kind == "<" and path.startswith("openssl/") and own != "tls":
                problems.append(f"{rel}: includes <{path}>: OpenSSL belongs in shared/tls only")
            if kind != '"':
                continue
            if rel.startswith("shared/") and own is None:
                problems.append(f"{rel}: a file of shared/ outside every layer folder")
            target = layer_of(path)
            if own is not None:
                if target is None:
                    problems.append(f"{rel}: includes \"{path}\", which is not in a layer of shared/")
                elif LAYERS.index(target) > LAYERS.index(own):
                    problems.append(f"{rel}: layer {own} includes \"{path}\" from layer {target}, "
                                    f"which comes after it")
            if unit is not None and path.startswith("shared/"):
                if target is None or LAYERS.index(target) > LAYERS.index(unit):
                    problems.append(f"{rel}: a unit test of layer {unit} includes \"{path}\"")
    # Forwarding processes: what their sources reach, header by header.
    starts = [r for r in graph if re.match(r"(broker|bridge|beacon)/forward_[^/]*\.(cc|h)$", r)]
    starts += [r for r in FORWARD_ALSO if r in graph]
    for start in starts:
        seen, todo, via = {start}, [start], {start: None}
        while todo:
            cur = todo.pop()
            for inc in graph.get(cur, []):
                if inc in graph and inc not in seen:
                    seen.add(inc)
                    via[inc] = cur
                    todo.append(inc)
        for reached in sorted(seen):
            if layer_of(reached) == "tls":
                chain, c = [], reached
                while c is not None:
                    chain.append(c)
                    c = via[c]
                problems.append(f"{start}: a forwarding process's source reaches shared/tls: "
                                + " <- ".join(chain))
    return problems


def defined_symbols(path):
    out = subprocess.run(["nm", "--defined-only", "-C", path], capture_output=True, text=True)
    syms = set()
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == "T":  # strong code only; inline (W) is shared by design
            syms.add(parts[2])
    return syms


def check_binaries(build, exes):
    problems = []
    tls_lib = os.path.join(build, "lib", "libct_tls.a")
    tls_syms = defined_symbols(tls_lib) if os.path.exists(tls_lib) else set()
    if not tls_syms:
        problems.append(f"{tls_lib}: missing or without symbols; build first")
    for exe in exes:
        path = os.path.join(build, exe) if not os.path.isabs(exe) else exe
        if not os.path.exists(path):
            problems.append(f"{path}: not built")
            continue
        dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
        for lib in re.findall(r"\(NEEDED\).*\[(.*)\]", dyn):
            if lib.startswith(("libssl", "libcrypto")):
                problems.append(f"{path}: a forwarding executable needs {lib}")
        both = sorted(tls_syms & defined_symbols(path))
        if both:
            problems.append(f"{path}: a forwarding executable holds code of shared/tls "
                            f"({len(both)} symbols, e.g. {both[0]})")
    return problems


def plant(root, rel, line):
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(line + "\n" + text)


def self_test(repo, build):
    """Each plant must be reported; returns the plants that were missed."""
    plants = [
        ("layer order", "shared/wire/frame.h", '#include "shared/os/loop.h"', "which comes after it"),
        ("openssl outside tls", "shared/stream/relay.h", "#include <openssl/ssl.h>", "OpenSSL belongs"),
        ("forward reaches tls", "shared/proc/child.h", '#include "shared/tls/conn.h"',
         "reaches shared/tls"),
        ("unit test above its layer", "tests/unit/wire/session_test.cc",
         '#include "shared/stream/link.h"', "a unit test of layer wire"),
    ]
    missed = []
    for name, rel, line, expect in plants:
        with tempfile.TemporaryDirectory() as tmp:
            for top in ("shared", "broker", "bridge", "beacon", "fuzz", "tests"):
                shutil.copytree(os.path.join(repo, top), os.path.join(tmp, top),
                                ignore=shutil.ignore_patterns("corpus", "__pycache__"))
            plant(tmp, rel, line)
            found = [p for p in check_tree(tmp) if expect in p]
            if not found:
                missed.append(name)
    # A TLS executable given as a forwarding one.
    if not any("needs libssl" in p or "holds code of shared/tls" in p
               for p in check_binaries(build, ["cloudtaser-broker"])):
        missed.append("tls executable as a forwarding one")
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    build = a.build if os.path.isabs(a.build) else os.path.join(a.root, a.build)
    problems = check_tree(a.root) + check_binaries(build, FORWARD_EXES)
    for p in problems:
        print(f"check-layers: {p}", file=sys.stderr)
    if problems:
        return 1
    if a.self_test:
        missed = self_test(a.root, build)
        for m in missed:
            print(f"check-layers: self-test: a planted violation was not reported: {m}",
                  file=sys.stderr)
        if missed:
            return 1
    print(f"check-layers: {len(LAYERS)} layers in order ({' < '.join(LAYERS)}); "
          f"OpenSSL only in shared/tls; {' and '.join(FORWARD_EXES)} without it"
          + ("; 5 planted violations reported" if a.self_test else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
