#!/bin/bash
# Build the SELinux modules the way the packages ship them (refpolicy headers
# from selinux-policy-dev; checkmodule, then semodule_package) and check
# what each compiled module grants: vault_bridge (vault-bridge's package)
# and cloudtaser_beacon (cloudtaser-beacon's).
# Usage: check-selinux.sh OUTDIR    (leaves OUTDIR/vault_bridge.pp and
#                                    OUTDIR/cloudtaser_beacon.pp)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$HERE/../..
OUT=${1:?usage: check-selinux.sh OUTDIR}
rm -rf "$OUT"
mkdir -p "$OUT"
for mod in vault_bridge cloudtaser_beacon; do
  echo " module $mod"
  cp "$TOP/selinux/$mod.te" "$TOP/selinux/$mod.fc" "$TOP/selinux/$mod.if" "$OUT/"
  # NAME: the policy store name the devel Makefile would read from
  # /etc/selinux/config, absent on a machine without SELinux.
  make -s -C "$OUT" -f /usr/share/selinux/devel/Makefile NAME=default "$mod.pp" >"$OUT/$mod.build.log" 2>&1 ||
    { cat "$OUT/$mod.build.log"; echo "  FAIL $mod does not compile"; exit 1; }
  if grep -qi 'warning\|error' "$OUT/$mod.build.log"; then
    cat "$OUT/$mod.build.log"; echo "  FAIL $mod compiles with warnings"; exit 1
  fi
  echo "  PASS compiled with checkmodule and packaged with semodule_package: $(stat -c %s "$OUT/$mod.pp") bytes"
  /usr/libexec/selinux/hll/pp "$OUT/$mod.pp" "$OUT/$mod.cil"
  "${PYTHON:-python3}" "$HERE/selinux_rules.py" "$mod" "$OUT/$mod.cil" "$OUT/$mod.fc"
done
echo "check-selinux: ok"
