#!/bin/bash
# Build the SELinux module the way the packages ship it (refpolicy headers
# from selinux-policy-dev; checkmodule, then semodule_package) and check
# what the compiled module grants.
# Usage: check-selinux.sh OUTDIR    (leaves OUTDIR/vault_bridge.pp)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$HERE/../..
OUT=${1:?usage: check-selinux.sh OUTDIR}
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$TOP"/selinux/vault_bridge.te "$TOP"/selinux/vault_bridge.fc "$TOP"/selinux/vault_bridge.if "$OUT/"
# NAME: the policy store name the devel Makefile would read from
# /etc/selinux/config, absent on a machine without SELinux.
make -s -C "$OUT" -f /usr/share/selinux/devel/Makefile NAME=default vault_bridge.pp >"$OUT/build.log" 2>&1 ||
  { cat "$OUT/build.log"; echo "  FAIL module does not compile"; exit 1; }
if grep -qi 'warning\|error' "$OUT/build.log"; then
  cat "$OUT/build.log"; echo "  FAIL the module compiles with warnings"; exit 1
fi
echo "  PASS compiled with checkmodule and packaged with semodule_package: $(stat -c %s "$OUT/vault_bridge.pp") bytes"
/usr/libexec/selinux/hll/pp "$OUT/vault_bridge.pp" "$OUT/vault_bridge.cil"
"${PYTHON:-python3}" "$HERE/selinux_rules.py" "$OUT/vault_bridge.cil" "$OUT/vault_bridge.fc"
echo "check-selinux: ok"
