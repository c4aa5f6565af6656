#!/usr/bin/env bash
# Runs a check script the way a Kubernetes pod runs the broker, or a
# container runtime runs the bridge: in fresh mount, PID, network, IPC and UTS
# namespaces, with a root filesystem that is an empty read-only tmpfs holding
# only the image's files, /proc, the certificates mounted read-only as a
# Secret volume is (root:65532, 0440), and the files a runtime mounts (the
# bridge's /etc/hosts and /etc/resolv.conf) read-only.
#
#   empty-root.sh [--name NAME] (--binary FILE --forward FILE [--file SRC:DEST]... | --rootfs DIR)
#                 [--certs DIR [--certs-at PATH]] [--mount-ro SRC:DEST]... -- CHECK [ARGS]
#
# --binary and --forward become /NAME (default cloudtaser-broker) and, beside
# it where the daemon looks for it, /NAME-forward, as in the image; --file
# adds another of the image's files (0644). Every file in --certs is mounted
# at --certs-at (default /etc/cloudtaser/tls, the chart's mount point). Each
# --mount-ro bind-mounts a host file read-only at DEST, as docker and podman
# do with /etc/hosts and /etc/resolv.conf.
#
# CHECK runs inside the namespaces (as root, on the host's filesystem view)
# with:
#   SANDBOX_ROOT  the read-only root
#   SANDBOX_RUN   prefix that runs a command in that root as 65532:65532 with
#                 no_new_privs and an almost empty capability bounding set
#                 (chroot needs CAP_SYS_CHROOT/SETUID/SETGID to get there;
#                 the uid change then clears every capability)
# The network namespace has only its own loopback: nothing leaves it.
set -euo pipefail

if [ "${1:-}" != "--inside" ]; then
  [ "$(id -u)" = 0 ] || { echo "empty-root.sh: needs root (unshare, mount, chroot)" >&2; exit 1; }
  mnt="$(mktemp -d /tmp/cloudtaser-root.XXXXXX)"
  certs_mnt="$(mktemp -d /tmp/cloudtaser-certs.XXXXXX)"
  rc=0
  unshare --mount --pid --net --ipc --uts --fork --kill-child --mount-proc -- \
    bash "$0" --inside "$mnt" "$certs_mnt" "$@" || rc=$?
  rmdir "$mnt" "$certs_mnt" 2>/dev/null || true
  exit "$rc"
fi
shift
mnt="$1" certs_mnt="$2"
shift 2
name=cloudtaser-broker binary="" forward="" rootfs="" certs="" certs_at=/etc/cloudtaser/tls
files=() mounts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --certs-at) certs_at="$2"; shift 2 ;;
    --mount-ro) mounts+=("$2"); shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --forward) forward="$2"; shift 2 ;;
    --rootfs) rootfs="$2"; shift 2 ;;
    --certs) certs="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "empty-root.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "empty-root.sh: no check to run" >&2; exit 2; }

mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=256m,nosuid,nodev tmpfs "$mnt"
if [ -n "$rootfs" ]; then
  cp -a "$rootfs/." "$mnt/"
else
  install -o 0 -g 0 -m 0755 "$binary" "$mnt/$name"
  install -o 0 -g 0 -m 0755 "$forward" "$mnt/$name-forward"
  for spec in ${files[@]+"${files[@]}"}; do
    install -D -o 0 -g 0 -m 0644 "${spec%%:*}" "$mnt/${spec#*:}"
  done
fi
mkdir -p "$mnt/proc"
mount -t proc -o nosuid,nodev,noexec proc "$mnt/proc"
if [ -n "$certs" ]; then
  # Every file the Secret (or the host's certificate directory) holds: the
  # certificate, key and CA, and the peer's pin (cloudtaser-certs writes it),
  # without which the daemon refuses to start.
  mkdir -p "$mnt$certs_at"
  mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev,noexec tmpfs "$certs_mnt"
  for f in "$certs"/*; do
    if [ -f "$f" ]; then install -o 0 -g 65532 -m 0440 "$f" "$certs_mnt/$(basename "$f")"; fi
  done
  mount --bind "$certs_mnt" "$mnt$certs_at"
  mount -o remount,bind,ro,nosuid,nodev,noexec "$mnt$certs_at"
fi
for spec in ${mounts[@]+"${mounts[@]}"}; do
  src="${spec%%:*}" dest="$mnt${spec#*:}"
  mkdir -p "$(dirname "$dest")"
  [ -e "$dest" ] || : > "$dest"
  mount --bind "$src" "$dest"
  mount -o remount,bind,ro,nosuid,nodev,noexec "$dest"
done
mount -o remount,ro "$mnt"
ip link set lo up

export SANDBOX_ROOT="$mnt"
export SANDBOX_RUN="setpriv --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid chroot --userspec=65532:65532 --groups=65532 $mnt"
"$@"
