#!/bin/bash
# Build the vault-bridge .deb or .rpm from the built binaries and the kit's
# files, without a Debian source package or an rpm source tree: both
# formats are assembled from one staged file list so they hold the same
# files.
#
# Usage: build-packages.sh deb|rpm BINARY FORWARD VERSION SELINUX_PP OUTDIR
#   FORWARD: vault-bridge-forward, the forwarding process's executable
set -euo pipefail

FORMAT=$1 BIN=$2 FWD=$3 VERSION=$4 SEPP=$5 OUT=$6
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TOP=$(cd "$(dirname "$0")/.." && pwd)
ARCH_DEB=$(dpkg --print-architecture)
ARCH_RPM=$(uname -m)
WORK=$OUT/$FORMAT-stage
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
ROOT=$WORK/root

# Distribution-specific places.
if [ "$FORMAT" = deb ]; then
  UNITDIR=/lib/systemd/system ENVFILE=/etc/default/vault-bridge
else
  UNITDIR=/usr/lib/systemd/system ENVFILE=/etc/sysconfig/vault-bridge
fi

inst() { # MODE SRC DEST
  install -D -m "$1" "$2" "$ROOT$3"
}

# The binaries, stripped of debug data (the unstripped ones stay in build/).
# The daemon looks for its forwarding executable in ../libexec/cloudtaser/
# of its own directory: /usr/libexec/cloudtaser beside /usr/bin.
LIBEXEC=/usr/libexec/cloudtaser
inst 0755 "$BIN" /usr/bin/vault-bridge
inst 0755 "$FWD" $LIBEXEC/vault-bridge-forward
for f in /usr/bin/vault-bridge $LIBEXEC/vault-bridge-forward; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT$f"
done
sed "s/@VERSION@/$VERSION/" "$TOP/bridge/vault-egress-lock" >"$WORK/vault-egress-lock"
inst 0755 "$WORK/vault-egress-lock" /usr/sbin/vault-egress-lock
sed -e "s|@ENVFILE@|$ENVFILE|" -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/vault-bridge.service" >"$WORK/unit"
inst 0644 "$WORK/unit" "$UNITDIR/vault-bridge.service"
# One bridge per cluster on a host that serves several: vault-bridge@NAME,
# configured in /etc/vault-bridge/NAME/ (no distribution-specific path).
sed -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/vault-bridge@.service" >"$WORK/unit@"
inst 0644 "$WORK/unit@" "$UNITDIR/vault-bridge@.service"
# Restores the confirmed egress lock at boot; enabled by postinst / %post.
inst 0644 "$TOP/systemd/vault-egress-lock-restore.service" "$UNITDIR/vault-egress-lock-restore.service"
inst 0644 "$TOP/systemd/vault-bridge.env" "$ENVFILE"
install -d -m 0750 "$ROOT/etc/vault-bridge"
inst 0644 "$SEPP" /usr/share/selinux/packages/vault-bridge/vault_bridge.pp
for page in vault-bridge.8 vault-egress-lock.8; do
  gzip -9n <"$TOP/docs/man/$page" >"$WORK/$page.gz"
  inst 0644 "$WORK/$page.gz" "/usr/share/man/man8/$page.gz"
done

if [ "$FORMAT" = deb ]; then
  DEBVERSION=$VERSION-1
  DOC=/usr/share/doc/vault-bridge
  inst 0644 "$TOP/packaging/deb/copyright" "$DOC/copyright"
  sed "s/@DEBVERSION@/$DEBVERSION/" "$TOP/packaging/deb/changelog" | gzip -9n >"$WORK/changelog.Debian.gz"
  inst 0644 "$WORK/changelog.Debian.gz" "$DOC/changelog.Debian.gz"
  inst 0644 "$TOP/packaging/deb/lintian-overrides" /usr/share/lintian/overrides/vault-bridge

  # Shared-library dependencies, computed the Debian way.
  mkdir -p "$WORK/shlibs/debian"
  printf 'Source: vault-bridge\n\nPackage: vault-bridge\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
  # (It warns that the binary is not under debian/<package>; that is expected here.)
  SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$ROOT/usr/bin/vault-bridge" "$ROOT$LIBEXEC/vault-bridge-forward" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
  [ -n "$SHLIBS" ] || { echo "build-packages: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

  mkdir -p "$ROOT/DEBIAN"
  SIZE=$(du -k -s --exclude=DEBIAN "$ROOT" | cut -f1)
  sed -e "s/@DEBVERSION@/$DEBVERSION/" -e "s/@ARCH@/$ARCH_DEB/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@SHLIBS@/$SHLIBS/" "$TOP/packaging/deb/control.in" >"$ROOT/DEBIAN/control"
  install -m 0644 "$TOP/packaging/deb/conffiles" "$ROOT/DEBIAN/conffiles"
  for s in postinst prerm postrm; do install -m 0755 "$TOP/packaging/deb/$s" "$ROOT/DEBIAN/$s"; done
  (cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum >DEBIAN/md5sums)
  chmod 0644 "$ROOT/DEBIAN/md5sums"
  DEB=$OUT/vault-bridge_${DEBVERSION}_$ARCH_DEB.deb
  dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
  echo "$DEB"
else
  RPMTOP=$WORK/rpmbuild
  mkdir -p "$RPMTOP"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
  rpmbuild -bb --quiet --target "$ARCH_RPM" \
    --define "_topdir $RPMTOP" \
    --define "_vb_version $VERSION" \
    --define "_vb_stage $ROOT" \
    --define "_build_id_links none" \
    "$TOP/packaging/rpm/vault-bridge.spec" >"$WORK/rpmbuild.log" 2>&1 ||
    { cat "$WORK/rpmbuild.log" >&2; exit 1; }
  RPM=$(find "$RPMTOP/RPMS" -name 'vault-bridge-*.rpm' | head -n 1)
  cp "$RPM" "$OUT/"
  echo "$OUT/$(basename "$RPM")"
fi
