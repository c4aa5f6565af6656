#!/usr/bin/env bash
# Runs a check script the way a Kubernetes pod runs the broker: in fresh
# mount, PID, network, IPC and UTS namespaces, with a root filesystem that is
# an empty read-only tmpfs holding only the image's files, /proc, and the
# certificates mounted read-only as a Secret volume is (root:65532, 0440).
#
#   empty-root.sh (--binary FILE --forward FILE | --rootfs DIR) [--certs DIR] -- CHECK [ARGS]
#
# --binary and --forward become /cloudtaser-broker and, beside it where the
# broker looks for it, /cloudtaser-broker-forward, as in the image.
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
binary="" forward="" rootfs="" certs=""
while [ $# -gt 0 ]; do
  case "$1" in
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
  install -o 0 -g 0 -m 0755 "$binary" "$mnt/cloudtaser-broker"
  install -o 0 -g 0 -m 0755 "$forward" "$mnt/cloudtaser-broker-forward"
fi
mkdir -p "$mnt/proc" "$mnt/etc/cloudtaser/tls"
mount -t proc -o nosuid,nodev,noexec proc "$mnt/proc"
if [ -n "$certs" ]; then
  mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev,noexec tmpfs "$certs_mnt"
  for f in tls.crt tls.key ca.crt; do
    install -o 0 -g 65532 -m 0440 "$certs/$f" "$certs_mnt/$f"
  done
  # The bridge pin, as the Secret holds it (cloudtaser-certs writes it): the
  # broker refuses to start without a pin.
  if [ -e "$certs/bridge.pin" ]; then
    install -o 0 -g 65532 -m 0440 "$certs/bridge.pin" "$certs_mnt/bridge.pin"
  fi
  mount --bind "$certs_mnt" "$mnt/etc/cloudtaser/tls"
  mount -o remount,bind,ro,nosuid,nodev,noexec "$mnt/etc/cloudtaser/tls"
fi
mount -o remount,ro "$mnt"
ip link set lo up

export SANDBOX_ROOT="$mnt"
export SANDBOX_RUN="setpriv --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid chroot --userspec=65532:65532 --groups=65532 $mnt"
"$@"
