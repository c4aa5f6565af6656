#!/usr/bin/env bash
# Assembles the cloudtaser-broker container image as an OCI image layout in a
# tar file, from the static binaries, with tar, gzip and sha256sum only: no
# container engine runs on the build machines.
#
# The image matches deploy/Dockerfile's final stage: one layer holding
# /cloudtaser-broker and, beside it where the broker looks for it, its
# forwarding executable /cloudtaser-broker-forward (both root-owned, 0755),
# user 65532:65532, that entrypoint.
# It is reproducible: the same binary and version give the same bytes
# (timestamps come from SOURCE_DATE_EPOCH, default 0).
#
#   build-oci.sh --binary build/cloudtaser-broker-static \
#                --forward build/cloudtaser-broker-forward-static --version 0.1.0 \
#                --out build/cloudtaser-broker-oci.tar [--repository NAME]
#
# Load or push it with: skopeo copy oci-archive:OUT docker://REGISTRY/NAME:TAG,
# podman load -i OUT, or docker load -i OUT (the tar also has manifest.json).
set -euo pipefail

binary="" forward="" version="" out=""
repository="ghcr.io/cloudtaser/cloudtaser-broker"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --forward) forward="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --repository) repository="$2"; shift 2 ;;
    *) echo "build-oci.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$binary" ] && [ -n "$forward" ] && [ -n "$version" ] && [ -n "$out" ] || { echo "usage: build-oci.sh --binary FILE --forward FILE --version V --out FILE.tar" >&2; exit 2; }
for f in "$binary" "$forward"; do
  [ -x "$f" ] || { echo "build-oci.sh: $f is not an executable" >&2; exit 2; }
  if ldd "$f" >/dev/null 2>&1; then
    echo "build-oci.sh: $f is dynamically linked; the image has no libc (use make static)" >&2
    exit 1
  fi
done

epoch="${SOURCE_DATE_EPOCH:-0}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/layout/blobs/sha256"
install -m 0755 "$binary" "$work/rootfs/cloudtaser-broker"
install -m 0755 "$forward" "$work/rootfs/cloudtaser-broker-forward"

tar_det=(--sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=ustar)
tar "${tar_det[@]}" -C "$work/rootfs" -cf "$work/layer.tar" cloudtaser-broker cloudtaser-broker-forward
diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
gzip -n -9 -c "$work/layer.tar" > "$work/layer.tar.gz"

# Stores a file as a blob; prints "<hex digest> <size>".
blob() {
  local d s
  d="$(sha256sum "$1" | cut -d' ' -f1)"
  s="$(stat -c %s "$1")"
  cp "$1" "$work/layout/blobs/sha256/$d"
  echo "$d $s"
}

read -r layer_digest layer_size < <(blob "$work/layer.tar.gz")

cat > "$work/config.json" <<EOF
{"architecture":"$arch","os":"linux","created":"$created","config":{"User":"65532:65532","Entrypoint":["/cloudtaser-broker"],"WorkingDir":"/","Env":["PATH=/"],"ExposedPorts":{"8443/tcp":{},"8444/tcp":{},"9090/tcp":{}},"Labels":{"org.opencontainers.image.title":"cloudtaser-broker","org.opencontainers.image.version":"$version"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"$created","created_by":"deploy/image/build-oci.sh: static cloudtaser-broker and cloudtaser-broker-forward $version"}]}
EOF
read -r config_digest config_size < <(blob "$work/config.json")

cat > "$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}],"annotations":{"org.opencontainers.image.created":"$created","org.opencontainers.image.version":"$version","org.opencontainers.image.title":"cloudtaser-broker"}}
EOF
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

cat > "$work/layout/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"platform":{"architecture":"$arch","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"$version","io.containerd.image.name":"$repository:$version"}}]}
EOF
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
# For docker load on engines older than 25, which read only manifest.json.
cat > "$work/layout/manifest.json" <<EOF
[{"Config":"blobs/sha256/$config_digest","RepoTags":["$repository:$version"],"Layers":["blobs/sha256/$layer_digest"]}]
EOF

mkdir -p "$(dirname "$out")"
tar "${tar_det[@]}" -C "$work/layout" -cf "$out.tmp" oci-layout index.json manifest.json blobs
mv "$out.tmp" "$out"
echo "$out: $repository:$version linux/$arch manifest sha256:$manifest_digest"
