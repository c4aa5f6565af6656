#!/usr/bin/env bash
# Assembles one daemon's container image (cloudtaser-broker, vault-bridge or
# cloudtaser-beacon) as an OCI image layout in a tar file, from the static binaries, with tar,
# gzip and sha256sum only: no container engine runs on the build machines.
#
# The image matches the final stage of the daemon's Dockerfile
# (deploy/Dockerfile, deploy/Dockerfile.bridge, deploy/Dockerfile.beacon): one
# layer holding /NAME and,
# beside it where the daemon looks for it, its forwarding executable
# /NAME-forward (both root-owned, 0755), plus any --file; user 65532:65532,
# entrypoint /NAME, the --expose ports (none for the bridge, which only dials
# out). It is reproducible: the same binaries and version give the same bytes
# (timestamps come from SOURCE_DATE_EPOCH, default 0).
#
#   build-oci.sh --name cloudtaser-broker --binary build/cloudtaser-broker-static \
#                --forward build/cloudtaser-broker-forward-static --version 0.1.0 \
#                --expose 8443/tcp --expose 8444/tcp --expose 9090/tcp \
#                --out build/cloudtaser-broker-oci.tar
#   build-oci.sh --name vault-bridge --binary build/vault-bridge-static \
#                --forward build/vault-bridge-forward-static --version 0.1.0 \
#                --file deploy/image/nsswitch.conf:etc/nsswitch.conf \
#                --out build/vault-bridge-oci.tar
#
# Further options: --repository NAME (default ghcr.io/cloudtaser/NAME),
# --label KEY=VALUE (repeatable; the title and version labels are always set),
# --file SRC:DEST (a root-owned 0644 file at /DEST; its directories 0755).
#
# Load or push it with: skopeo copy oci-archive:OUT docker://REGISTRY/NAME:TAG,
# podman load -i OUT, or docker load -i OUT (the tar also has manifest.json).
set -euo pipefail

name="" binary="" forward="" version="" out="" repository=""
expose=() labels=() files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --forward) forward="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --repository) repository="$2"; shift 2 ;;
    --expose) expose+=("$2"); shift 2 ;;
    --label) labels+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    *) echo "build-oci.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$name" ] && [ -n "$binary" ] && [ -n "$forward" ] && [ -n "$version" ] && [ -n "$out" ] || {
  echo "usage: build-oci.sh --name NAME --binary FILE --forward FILE --version V --out FILE.tar" \
       "[--expose PORT/PROTO]... [--label KEY=VALUE]... [--file SRC:DEST]... [--repository NAME]" >&2
  exit 2
}
repository="${repository:-ghcr.io/cloudtaser/$name}"
# Everything below goes into JSON unescaped, so only plain characters may.
plain() { [[ "$2" =~ ^[A-Za-z0-9][A-Za-z0-9._:/@+=,\ -]*$ ]] || { echo "build-oci.sh: $1 '$2' has characters this script does not quote" >&2; exit 2; }; }
plain --name "$name"; plain --version "$version"; plain --repository "$repository"
for p in ${expose[@]+"${expose[@]}"}; do
  [[ "$p" =~ ^[0-9]{1,5}/(tcp|udp)$ ]] || { echo "build-oci.sh: --expose $p is not PORT/tcp or PORT/udp" >&2; exit 2; }
done
for l in ${labels[@]+"${labels[@]}"}; do
  [[ "$l" == *=* ]] || { echo "build-oci.sh: --label $l is not KEY=VALUE" >&2; exit 2; }
  plain --label "$l"
done
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
install -m 0755 "$binary" "$work/rootfs/$name"
install -m 0755 "$forward" "$work/rootfs/$name-forward"
members=("$name" "$name-forward")
for spec in ${files[@]+"${files[@]}"}; do
  src="${spec%%:*}" dest="${spec#*:}"
  [ -f "$src" ] && [[ "$dest" =~ ^[a-z0-9][a-z0-9._/-]*$ ]] && [[ "$dest" != */../* ]] ||
    { echo "build-oci.sh: --file $spec is not SRC:relative/dest" >&2; exit 2; }
  install -D -m 0644 "$src" "$work/rootfs/$dest"
  d="$dest"
  while [[ "$d" == */* ]]; do d="${d%/*}"; members+=("$d/"); done
  members+=("$dest")
done
# Parent directories before their files, each once (tar --sort=name orders
# the members it is given in that order, not the ones it finds).
mapfile -t members < <(printf '%s\n' "${members[@]}" | LC_ALL=C sort -u)
find "$work/rootfs" -type d -exec chmod 0755 {} +

tar_det=(--sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=ustar)
tar "${tar_det[@]}" --no-recursion -C "$work/rootfs" -cf "$work/layer.tar" "${members[@]}"
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

ports_json=""
for p in ${expose[@]+"${expose[@]}"}; do ports_json+="${ports_json:+,}\"$p\":{}"; done
exposed_json=""
[ -z "$ports_json" ] || exposed_json="\"ExposedPorts\":{$ports_json},"
labels_json="\"org.opencontainers.image.title\":\"$name\",\"org.opencontainers.image.version\":\"$version\""
for l in ${labels[@]+"${labels[@]}"}; do labels_json+=",\"${l%%=*}\":\"${l#*=}\""; done
what="$name and $name-forward"
for spec in ${files[@]+"${files[@]}"}; do what+=", /${spec#*:}"; done

cat > "$work/config.json" <<EOF
{"architecture":"$arch","os":"linux","created":"$created","config":{"User":"65532:65532","Entrypoint":["/$name"],"WorkingDir":"/","Env":["PATH=/"],${exposed_json}"Labels":{$labels_json}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"$created","created_by":"deploy/image/build-oci.sh: static $what $version"}]}
EOF
read -r config_digest config_size < <(blob "$work/config.json")

cat > "$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}],"annotations":{"org.opencontainers.image.created":"$created","org.opencontainers.image.version":"$version","org.opencontainers.image.title":"$name"}}
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
