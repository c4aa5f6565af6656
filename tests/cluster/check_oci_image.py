#!/usr/bin/env python3
"""Checks an OCI image tar that `make image` writes (cloudtaser-broker,
vault-bridge or cloudtaser-beacon), the way a registry or a runtime reads it: layout marker,
index, manifest, config, and every digest and size, then the layer's contents
against the static binaries, and the config against the final stage of the
daemon's Dockerfile (both must describe the same image). Standard library
only. Prints one line per check; exits 1 on the first failure.

    check_oci_image.py --name NAME --image TAR --binary FILE --forward FILE --version V
        [--expose PORT/tcp:WHAT]... [--file DEST=SRC]... [--dockerfile FILE] [--label K=V]...

--expose lists every port the image must expose (none: it must expose none);
--file a file the layer must hold beside the two executables, which the
Dockerfile's distroless base provides instead (so its final stage still
copies only the executables); --label a label both must carry."""
import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAIL {what}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok   {what}")


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def blob(files, desc, media_type):
    check(desc.get("mediaType") == media_type, f"descriptor media type is {media_type}")
    digest = desc.get("digest", "")
    check(bool(DIGEST_RE.match(digest)), f"descriptor digest {digest[:19]}... is sha256")
    path = "blobs/sha256/" + digest.split(":", 1)[1]
    check(path in files, f"blob {path[:26]}... is in the layout")
    data = files[path]
    check(sha256(data) == digest, f"blob content hashes to its digest {digest[:19]}...")
    check(desc.get("size") == len(data), f"descriptor size {desc.get('size')} matches the blob")
    return data


def dockerfile_final_stage(path):
    stages, cur = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            cur = {"from": rest, "user": None, "entrypoint": None, "copy": [], "expose": [], "labels": {}}
            stages.append(cur)
        elif cur is None:
            continue
        elif word == "USER":
            cur["user"] = rest.strip()
        elif word == "ENTRYPOINT":
            cur["entrypoint"] = json.loads(rest)
        elif word == "COPY":
            cur["copy"].append(rest)
        elif word == "EXPOSE":
            cur["expose"] += rest.split()
        elif word == "LABEL":
            for kv in re.findall(r'(\S+?)=("[^"]*"|\S+)', rest):
                cur["labels"][kv[0]] = kv[1].strip('"')
        elif word == "RUN":
            cur.setdefault("run", []).append(rest)
    return stages[-1] if stages else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="cloudtaser-broker, vault-bridge or cloudtaser-beacon")
    ap.add_argument("--image", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--forward", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--dockerfile")
    ap.add_argument("--expose", action="append", default=[], help="PORT/tcp:what it is for")
    ap.add_argument("--file", action="append", default=[], help="DEST=SRC")
    ap.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    a = ap.parse_args()
    entry = "/" + a.name
    ports = dict(p.split(":", 1) for p in a.expose)
    extra = dict(f.split("=", 1) for f in a.file)
    labels = dict(l.split("=", 1) for l in a.label)
    labels["org.opencontainers.image.title"] = a.name

    files = {}
    with tarfile.open(a.image, "r:") as t:
        for m in t.getmembers():
            check(not m.name.startswith("/") and ".." not in m.name.split("/"), f"tar member {m.name} is a relative path")
            if m.isfile():
                files[m.name] = t.extractfile(m).read()

    check(json.loads(files.get("oci-layout", b"{}")).get("imageLayoutVersion") == "1.0.0", "oci-layout declares imageLayoutVersion 1.0.0")
    index = json.loads(files["index.json"])
    check(index.get("schemaVersion") == 2, "index.json schemaVersion 2")
    check(index.get("mediaType") == OCI_INDEX, "index.json media type")
    check(len(index.get("manifests", [])) == 1, "index.json lists one manifest")
    mdesc = index["manifests"][0]
    check(mdesc.get("annotations", {}).get("org.opencontainers.image.ref.name") == a.version, f"manifest is tagged {a.version}")
    check(mdesc.get("platform", {}).get("os") == "linux", "platform os is linux")

    manifest = json.loads(blob(files, mdesc, OCI_MANIFEST))
    check(manifest.get("schemaVersion") == 2, "manifest schemaVersion 2")
    check(manifest.get("mediaType") == OCI_MANIFEST, "manifest declares its media type")
    config_bytes = blob(files, manifest["config"], OCI_CONFIG)
    config = json.loads(config_bytes)
    check(config.get("os") == "linux", "config os linux")
    check(config.get("architecture") == mdesc["platform"].get("architecture"), f"config architecture {config.get('architecture')} matches the index")
    cc = config.get("config", {})
    check(cc.get("User") == "65532:65532", "config runs as user 65532:65532 (non-root)")
    check(cc.get("Entrypoint") == [entry], f"config entrypoint is {entry}")
    check(not cc.get("Cmd"), "no default Cmd: the pod spec or the run line gives every flag")
    if ports:
        check(set(cc.get("ExposedPorts", {})) == set(ports),
              "exposes " + ", ".join(f"{p} ({w})" for p, w in sorted(ports.items())) + " and nothing else")
    else:
        check("ExposedPorts" not in cc, "exposes no port (it only dials out)")
    check(cc.get("Labels", {}).get("org.opencontainers.image.version") == a.version, "version label")
    for k, v in sorted(labels.items()):
        check(cc.get("Labels", {}).get(k) == v, f"label {k}={v}")

    layers = manifest.get("layers", [])
    check(len(layers) == 1, "one layer")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    check(config.get("rootfs", {}).get("type") == "layers" and len(diff_ids) == len(layers), "rootfs diff_ids list one entry per layer")
    layer_gz = blob(files, layers[0], OCI_LAYER_GZ)
    layer_tar = gzip.decompress(layer_gz)
    check(sha256(layer_tar) == diff_ids[0], "diff_id is the digest of the uncompressed layer")

    # The daemon and, beside it where it looks for it, its forwarding
    # executable (docs/privsep.md), the --file files and their directories:
    # nothing else.
    exes = {a.name: a.binary, a.name + "-forward": a.forward}
    want = dict(exes, **extra)
    dirs = {d + "/" for f in extra for d in ["/".join(f.split("/")[:i]) for i in range(1, f.count("/") + 1)]}
    with tarfile.open(fileobj=io.BytesIO(layer_tar), mode="r:") as lt:
        members = lt.getmembers()
        names = [m.name + ("/" if m.isdir() and not m.name.endswith("/") else "") for m in members]
        check(names == sorted(set(want) | dirs),
              f"the layer holds only {a.name}, its forwarding executable"
              + "".join(f", {f}" for f in sorted(extra)) + (" and their directories" if dirs else ""))
        for m in members:
            check(m.uid == 0 and m.gid == 0, f"{m.name} owned by root, so uid 65532 cannot replace it")
            if m.isdir():
                check(m.mode & 0o7777 == 0o755, f"{m.name} mode 0755")
                continue
            data = open(want[m.name], "rb").read()
            mode = 0o755 if m.name in exes else 0o644
            check(m.isfile() and m.mode & 0o7777 == mode, f"{m.name} mode {mode:04o}, no setuid")
            check(lt.extractfile(m).read() == data, f"layer {m.name} is byte-identical to {want[m.name]}")
            if m.name in exes:
                check(data[:4] == b"\x7fELF", f"{m.name} is ELF")

    # Docker's manifest.json (for docker load before Engine 25) points at the same blobs.
    dm = json.loads(files["manifest.json"])
    check(dm[0]["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1], "manifest.json config matches")
    check(dm[0]["Layers"] == ["blobs/sha256/" + layers[0]["digest"].split(":")[1]], "manifest.json layers match")

    if a.dockerfile:
        st = dockerfile_final_stage(a.dockerfile)
        check(st is not None, "Dockerfile has stages")
        check(st["from"].startswith("gcr.io/distroless/static"), f"Dockerfile final stage is distroless static ({st['from']})")
        check(":nonroot" in st["from"], "Dockerfile uses the nonroot distroless variant")
        check(st["user"] == cc["User"], "Dockerfile USER matches the image config")
        check(st["entrypoint"] == cc["Entrypoint"], "Dockerfile ENTRYPOINT matches the image config")
        check(sorted(c.split()[-1] for c in st["copy"]) == ["/" + n for n in sorted(exes)],
              f"Dockerfile copies only {a.name} and its forwarding executable into the final stage"
              + (" (" + ", ".join(sorted(extra)) + " come" + ("s" if len(extra) == 1 else "") + " from distroless)" if extra else ""))
        check("run" not in st, "Dockerfile final stage runs nothing (no shell there)")
        check(sorted(p if "/" in p else p + "/tcp" for p in st["expose"]) == sorted(cc.get("ExposedPorts", {})),
              "Dockerfile EXPOSE matches" + ("" if ports else " (none)"))
        for k, v in sorted(st["labels"].items()):
            check(cc.get("Labels", {}).get(k) == v, f"Dockerfile LABEL {k} matches the image config")
        check(set(labels) <= set(st["labels"]), "Dockerfile LABELs every label given here")

    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
