#!/usr/bin/env bash
# make check-image, second half: umoci (an independent OCI implementation)
# unpacks the image tar into a runtime bundle; the bundle's runtime config
# must say uid 65532 and the entrypoint, and its rootfs must run like the
# static binary does in an empty read-only root (daemon-in-empty-root.sh).
#   check-image-runs.sh IMAGE.tar VERSION NAME
set -euo pipefail
image="$1" version="$2" name="$3"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout"
tar -xf "$image" -C "$work/layout"
umoci stat --image "$work/layout:$version" >/dev/null
echo "ok   umoci reads the layout and the tag $version"
umoci unpack --image "$work/layout:$version" "$work/bundle" >/dev/null
user="$(jq -c '.process.user | [.uid, .gid]' "$work/bundle/config.json")"
args="$(jq -c '.process.args' "$work/bundle/config.json")"
[ "$user" = "[65532,65532]" ] || { echo "FAIL runtime user is $user"; exit 1; }
echo "ok   runtime config user $user"
[ "$args" = "[\"/$name\"]" ] || { echo "FAIL runtime args are $args"; exit 1; }
echo "ok   runtime config args $args"
bash "$here/daemon-in-empty-root.sh" "$name" "$version" --rootfs "$work/bundle/rootfs"
