#!/bin/bash
# Build the vault-bridge or cloudtaser-beacon .deb or .rpm from the built
# binaries and the kit's files, without a Debian source package or an rpm
# source tree: both formats are assembled from one staged file list so they
# hold the same files.
#
# Usage: build-packages.sh deb|rpm BINARY FORWARD VERSION SELINUX_PP OUTDIR
#        build-packages.sh deb|rpm cloudtaser-beacon BINARY FORWARD VERSION SELINUX_PP OUTDIR
#   FORWARD: the forwarding process's executable (vault-bridge-forward,
#   cloudtaser-beacon-forward)
set -euo pipefail

FORMAT=$1
shift
PKG=vault-bridge
if [ "${1:-}" = cloudtaser-beacon ]; then
  PKG=cloudtaser-beacon
  shift
  BIN=$1 FWD=$2 VERSION=$3 SEPP=$4 OUT=$5
else
  BIN=$1 FWD=$2 VERSION=$3 SEPP=$4 OUT=$5
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TOP=$(cd "$(dirname "$0")/.." && pwd)
ARCH_DEB=$(dpkg --print-architecture)
ARCH_RPM=$(uname -m)
WORK=$OUT/$PKG-$FORMAT-stage
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
ROOT=$WORK/root

# Distribution-specific places.
if [ "$FORMAT" = deb ]; then
  UNITDIR=/lib/systemd/system ENVFILE=/etc/default/$PKG
else
  UNITDIR=/usr/lib/systemd/system ENVFILE=/etc/sysconfig/$PKG
fi
# The package's own Debian files: packaging/deb/ for the bridge,
# packaging/deb/beacon/ for the beacon (the copyright is shared).
DEBDIR=$TOP/packaging/deb
[ "$PKG" = vault-bridge ] || DEBDIR=$TOP/packaging/deb/beacon

inst() { # MODE SRC DEST
  install -D -m "$1" "$2" "$ROOT$3"
}

# The binaries, stripped of debug data (the unstripped ones stay in build/).
# The daemon looks for its forwarding executable in ../libexec/cloudtaser/
# of its own directory: /usr/libexec/cloudtaser beside /usr/bin.
LIBEXEC=/usr/libexec/cloudtaser
inst 0755 "$BIN" /usr/bin/$PKG
inst 0755 "$FWD" $LIBEXEC/$PKG-forward
for f in /usr/bin/$PKG $LIBEXEC/$PKG-forward; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT$f"
done
sed -e "s|@ENVFILE@|$ENVFILE|" -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/$PKG.service" >"$WORK/unit"
inst 0644 "$WORK/unit" "$UNITDIR/$PKG.service"
inst 0644 "$TOP/systemd/$PKG.env" "$ENVFILE"
install -d -m 0750 "$ROOT/etc/$PKG"
MANPAGES="$PKG.8"

if [ "$PKG" = vault-bridge ]; then
  sed "s/@VERSION@/$VERSION/" "$TOP/bridge/vault-egress-lock" >"$WORK/vault-egress-lock"
  inst 0755 "$WORK/vault-egress-lock" /usr/sbin/vault-egress-lock
  # One bridge per cluster on a host that serves several: vault-bridge@NAME,
  # configured in /etc/vault-bridge/NAME/ (no distribution-specific path).
  sed -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/vault-bridge@.service" >"$WORK/unit@"
  inst 0644 "$WORK/unit@" "$UNITDIR/vault-bridge@.service"
  # Beacon mode: drop-ins the operator installs (they replace ExecStart=).
  sed -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/vault-bridge-beacon-mode.conf" >"$WORK/beacon-mode.conf"
  sed -e "s|@BINDIR@|/usr/bin|" "$TOP/systemd/vault-bridge@-beacon-mode.conf" >"$WORK/beacon-mode@.conf"
  inst 0644 "$WORK/beacon-mode.conf" /usr/share/vault-bridge/beacon-mode.conf
  inst 0644 "$WORK/beacon-mode@.conf" /usr/share/vault-bridge/beacon-mode@.conf
  # Restores the confirmed egress lock at boot; enabled by postinst / %post.
  inst 0644 "$TOP/systemd/vault-egress-lock-restore.service" "$UNITDIR/vault-egress-lock-restore.service"
  MANPAGES="$MANPAGES vault-egress-lock.8"
fi
# The package's SELinux module (selinux/; loaded by postinst / %post where
# SELinux is enabled).
inst 0644 "$SEPP" "/usr/share/selinux/packages/$PKG/$(basename "$SEPP")"
for page in $MANPAGES; do
  gzip -9n <"$TOP/docs/man/$page" >"$WORK/$page.gz"
  inst 0644 "$WORK/$page.gz" "/usr/share/man/man8/$page.gz"
done

if [ "$FORMAT" = deb ]; then
  DEBVERSION=$VERSION-1
  DOC=/usr/share/doc/$PKG
  inst 0644 "$TOP/packaging/deb/copyright" "$DOC/copyright"
  sed "s/@DEBVERSION@/$DEBVERSION/" "$DEBDIR/changelog" | gzip -9n >"$WORK/changelog.Debian.gz"
  inst 0644 "$WORK/changelog.Debian.gz" "$DOC/changelog.Debian.gz"
  inst 0644 "$DEBDIR/lintian-overrides" "/usr/share/lintian/overrides/$PKG"

  # Shared-library dependencies, computed the Debian way.
  mkdir -p "$WORK/shlibs/debian"
  printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$WORK/shlibs/debian/control"
  # (It warns that the binary is not under debian/<package>; that is expected here.)
  SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$ROOT/usr/bin/$PKG" "$ROOT$LIBEXEC/$PKG-forward" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
  [ -n "$SHLIBS" ] || { echo "build-packages: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

  mkdir -p "$ROOT/DEBIAN"
  SIZE=$(du -k -s --exclude=DEBIAN "$ROOT" | cut -f1)
  sed -e "s/@DEBVERSION@/$DEBVERSION/" -e "s/@ARCH@/$ARCH_DEB/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@SHLIBS@/$SHLIBS/" "$DEBDIR/control.in" >"$ROOT/DEBIAN/control"
  install -m 0644 "$DEBDIR/conffiles" "$ROOT/DEBIAN/conffiles"
  for s in postinst prerm postrm; do install -m 0755 "$DEBDIR/$s" "$ROOT/DEBIAN/$s"; done
  (cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum >DEBIAN/md5sums)
  chmod 0644 "$ROOT/DEBIAN/md5sums"
  DEB=$OUT/${PKG}_${DEBVERSION}_$ARCH_DEB.deb
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
    "$TOP/packaging/rpm/$PKG.spec" >"$WORK/rpmbuild.log" 2>&1 ||
    { cat "$WORK/rpmbuild.log" >&2; exit 1; }
  RPM=$(find "$RPMTOP/RPMS" -name "$PKG-*.rpm" | head -n 1)
  cp "$RPM" "$OUT/"
  echo "$OUT/$(basename "$RPM")"
fi
