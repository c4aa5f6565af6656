#!/usr/bin/env bash
# Runs a daemon's image files in empty-root.sh with what its runtime gives it,
# then that daemon's checks inside (check-static.sh and check-image-runs.sh
# share this):
#   cloudtaser-broker  the Secret's files at /etc/cloudtaser/tls, as the chart
#                      mounts them; broker-in-empty-root.sh
#   vault-bridge       the host's certificate directory at /etc/bridge and
#                      /etc/hosts and /etc/resolv.conf, read-only, as
#                      `podman run --network host -v /etc/bridge:/etc/bridge:ro`
#                      gives them; bridge-in-empty-root.sh, against a real
#                      broker (BROKER_BIN, default build/cloudtaser-broker)
#   cloudtaser-beacon  its certificate and key at /etc/cloudtaser-beacon,
#                      read-only; beacon-in-empty-root.sh, pairing a real broker
#                      and bridge (BROKER_BIN, BRIDGE_BIN, default build/)
#
#   daemon-in-empty-root.sh NAME VERSION (--binary FILE --forward FILE | --rootfs DIR)
set -euo pipefail
name="$1" version="$2"
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
top="$here/../.."
pki="$(mktemp -d)"
trap 'rm -rf "$pki"' EXIT
# broker.test: the broker's external name, which only the bridge's /etc/hosts knows.
"$top/deploy/cloudtaser-certs" --out "$pki" --external-host broker.test >/dev/null
case "$name" in
  cloudtaser-broker)
    bash "$here/empty-root.sh" "$@" --certs "$pki/broker" -- \
      bash "$here/broker-in-empty-root.sh" "$version"
    ;;
  vault-bridge)
    # /etc/bridge as docs/vault-host.md fills it: the bridge's identity, the
    # broker's CA and pin, and the service certificate wrappers trust.
    mkdir "$pki/etc-bridge"
    cp "$pki/bridge/tls.crt" "$pki/bridge/tls.key" "$pki/bridge/ca.crt" "$pki/bridge/broker.pin" "$pki/etc-bridge/"
    cp "$pki/service/tls.crt" "$pki/etc-bridge/service.crt"
    cp "$pki/service/tls.key" "$pki/etc-bridge/service.key"
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.0.1 broker.test\n' > "$pki/hosts"
    # A name server that is not there: the name must come from /etc/hosts.
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$pki/resolv.conf"
    extra=()
    # The image's /etc/nsswitch.conf, when the executables come loose.
    [ "${1:-}" = --rootfs ] || extra=(--file "$top/deploy/image/nsswitch.conf:etc/nsswitch.conf")
    BROKER_BIN="$(realpath "${BROKER_BIN:-$top/build/cloudtaser-broker}")" PKI="$pki" \
      bash "$here/empty-root.sh" --name vault-bridge "$@" ${extra[@]+"${extra[@]}"} \
        --certs "$pki/etc-bridge" --certs-at /etc/bridge \
        --mount-ro "$pki/hosts:/etc/hosts" --mount-ro "$pki/resolv.conf:/etc/resolv.conf" -- \
        bash "$here/bridge-in-empty-root.sh" "$version"
    ;;
  cloudtaser-beacon)
    # The beacon's certificate (IP SAN 127.0.0.1, the address both sides
    # dial), the pairing key the broker and the bridge share; the beacon
    # gets only its own certificate and key, as docs/beacon.md says.
    "$top/deploy/cloudtaser-certs" --out "$pki/b" --external-host broker.test \
      --beacon-host 127.0.0.1 >/dev/null
    BROKER_BIN="$(realpath "${BROKER_BIN:-$top/build/cloudtaser-broker}")" \
    BRIDGE_BIN="$(realpath "${BRIDGE_BIN:-$top/build/vault-bridge}")" PKI="$pki/b" \
      bash "$here/empty-root.sh" --name cloudtaser-beacon "$@" \
        --certs "$pki/b/beacon" --certs-at /etc/cloudtaser-beacon -- \
        bash "$here/beacon-in-empty-root.sh" "$version"
    ;;
  *) echo "daemon-in-empty-root.sh: unknown daemon $name" >&2; exit 2 ;;
esac
