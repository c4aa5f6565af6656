#!/usr/bin/env bash
# make check-static: the static broker has no loader and runs as 65532 in an
# empty read-only root with only its certificates.
#   check-static.sh BINARY VERSION
set -euo pipefail
binary="$1" version="$2"
here="$(cd "$(dirname "$0")" && pwd)"
if ldd "$binary" >/dev/null 2>&1; then
  echo "FAIL $binary is dynamically linked:"; ldd "$binary"; exit 1
fi
echo "ok   ldd: $(ldd "$binary" 2>&1 | tr -d '\t')"
if readelf -lW "$binary" | grep -q 'INTERP'; then
  echo "FAIL $binary asks for a program interpreter"; exit 1
fi
echo "ok   no PT_INTERP program header"
pki="$(mktemp -d)"
trap 'rm -rf "$pki"' EXIT
"$here/../../deploy/cloudtaser-certs" --out "$pki" --external-host broker.test >/dev/null
bash "$here/empty-root.sh" --binary "$binary" --certs "$pki/broker" -- bash "$here/broker-in-empty-root.sh" "$version"
