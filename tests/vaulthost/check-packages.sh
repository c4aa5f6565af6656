#!/bin/bash
# The packages as an operator meets them:
#   - lintian: no error or warning (each override justified in
#     packaging/deb/lintian-overrides);
#   - the .deb installs for real (dpkg -i, maintainer scripts and all) into a
#     scratch root: a copy-on-write overlay of / in a private mount
#     namespace, thrown away afterwards, so the host is never touched;
#     files, owners, modes, the vault user, the conffile kept over a
#     reinstall, the packaged binary's --version, the daemon finding its
#     forwarding executable in /usr/libexec/cloudtaser (also through the
#     guide's /usr/local/bin symlink), which links no OpenSSL, remove and
#     purge;
#   - rpm -qlp lists the same files (distribution paths mapped), with the
#     same owners and modes, and the .rpm installs the same way.
#   - the cloudtaser-beacon packages, when given, the same way: lintian,
#     a real dpkg -i (user cloudtaser-beacon, /etc/cloudtaser-beacon
#     0750 root:cloudtaser-beacon, the conffile), the packaged beacon started
#     as that user with a key kept as the env file says, remove and purge;
#     rpm -qp lists the .deb's files and the .rpm installs and removes.
# Usage: check-packages.sh DEB RPM [BEACON_DEB BEACON_RPM]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DEB=$(realpath "$1")
RPM=$(realpath "$2")
BEACON_DEB=${3:+$(realpath "$3")}
BEACON_RPM=${4:+$(realpath "$4")}
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "  PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
WORK=$(mktemp -d /tmp/ctvh-pkg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- lintian
if lintian --fail-on error,warning --tag-display-limit 0 --display-info "$DEB" >"$WORK/lintian" 2>&1; then
  grep -v 'root privileges' "$WORK/lintian" | sed 's/^/    /' || true
  n=$(grep -c '^vault-bridge: ' "$HERE/../../packaging/deb/lintian-overrides" || true)
  pass "lintian: no errors or warnings ($n overrides, each with its reason in packaging/deb/lintian-overrides)"
else
  sed 's/^/    /' "$WORK/lintian"
  fail "lintian"
fi

# ---------------------------------------------------------------- scratch root
# Runs SCRIPT (with the package copied to /tmp/pkg, and directory EXTRA, if
# given, to /tmp/extra) as root inside a throw-away overlay of the host's
# root file system.
in_scratch_root() {
  local script=$1 pkg=$2 extra=${3:-} root=$WORK/scratch
  rm -rf "$root"
  mkdir -p "$root"/{upper,work,merged}
  mkdir -p "$root/upper/tmp"
  cp "$pkg" "$root/upper/tmp/pkg"
  cp "$script" "$root/upper/tmp/inside.sh"
  if [ -n "$extra" ]; then cp -a "$extra" "$root/upper/tmp/extra"; fi
  # shellcheck disable=SC2016 # expanded by the inner shell
  unshare --mount --propagation private /bin/bash -euc '
    r=$1
    mount -t overlay overlay -o "lowerdir=/,upperdir=$r/upper,workdir=$r/work" "$r/merged"
    mount -t proc proc "$r/merged/proc"
    mount --rbind /dev "$r/merged/dev"
    mount -t tmpfs tmpfs "$r/merged/run"
    chroot "$r/merged" /bin/bash /tmp/inside.sh
  ' scratch "$root"
}

cat >"$WORK/deb-inside.sh" <<'EOF'
set -uo pipefail
ok=0 bad=0
pass() { ok=$((ok + 1)); echo "  PASS $*"; }
fail() { bad=$((bad + 1)); echo "  FAIL $*"; }
had_vault=no; getent passwd vault >/dev/null && had_vault=yes
if dpkg -i /tmp/pkg >/tmp/dpkg.log 2>&1; then pass "dpkg -i installs the package (maintainer scripts ran)"
else fail "dpkg -i"; sed 's/^/    /' /tmp/dpkg.log; fi
want() { # PATH MODE OWNER:GROUP [TYPE]
  local got
  got=$(stat -c '%a %U:%G %F' "$1" 2>/dev/null || echo missing)
  if [ "$got" = "$2 $3 ${4:-regular file}" ]; then pass "$1 is $2 $3 ${4:-regular file}"
  else fail "$1: want $2 $3 ${4:-regular file}, got $got"; fi
}
want /usr/bin/vault-bridge 755 root:root
want /usr/libexec/cloudtaser/vault-bridge-forward 755 root:root
want /usr/sbin/vault-egress-lock 755 root:root
want /lib/systemd/system/vault-bridge.service 644 root:root
want /lib/systemd/system/vault-bridge@.service 644 root:root
want /lib/systemd/system/vault-egress-lock-restore.service 644 root:root
if [ "$(readlink /etc/systemd/system/sysinit.target.wants/vault-egress-lock-restore.service)" = \
  /lib/systemd/system/vault-egress-lock-restore.service ]; then
  pass "the egress lock's boot unit is enabled (sysinit.target.wants)"
else fail "vault-egress-lock-restore.service is not enabled after install"; fi
want /etc/default/vault-bridge 644 root:root
want /etc/vault-bridge 750 root:vault directory
want /usr/share/selinux/packages/vault-bridge/vault_bridge.pp 644 root:root
want /usr/share/vault-bridge/beacon-mode.conf 644 root:root
want /usr/share/vault-bridge/beacon-mode@.conf 644 root:root
want /usr/share/man/man8/vault-bridge.8.gz 644 root:root
want /usr/share/man/man8/vault-egress-lock.8.gz 644 root:root
want /usr/share/doc/vault-bridge/copyright 644 root:root
if [ "$(readlink /etc/bridge)" = vault-bridge ]; then pass "/etc/bridge -> vault-bridge (the guide's certificate path)"
else fail "/etc/bridge is not the symlink to vault-bridge"; fi
shell=$(getent passwd vault | cut -d: -f7)
if [ -n "$shell" ]; then
  pass "user vault exists (before install: $had_vault; shell $shell)"
  case $had_vault:$shell in no:/usr/sbin/nologin | yes:*) pass "a created vault user cannot log in" ;;
    *) fail "created vault user has shell $shell" ;; esac
else fail "no user vault after install"; fi
if dpkg-query -W -f='${Conffiles}\n' vault-bridge | grep -q '/etc/default/vault-bridge'; then
  pass "/etc/default/vault-bridge is a registered conffile"
else fail "/etc/default/vault-bridge is not a conffile"; fi
if out=$(/usr/bin/vault-bridge --version 2>&1) && [ -n "$out" ]; then pass "the packaged binary runs --version: $out"
else fail "packaged vault-bridge --version failed: $out"; fi
version=$(/usr/bin/vault-bridge --version | sed 's/.* //')
if out=$(/usr/libexec/cloudtaser/vault-bridge-forward --version 2>&1) &&
  [ "$out" = "vault-bridge-forward $version" ]; then
  pass "the packaged forwarding executable runs --version, the daemon's version: $out"
else fail "packaged vault-bridge-forward --version: $out (daemon: $version)"; fi
# The forward hooks exec the forwarding executable the daemon finds, so they
# show that the daemon finds it where the package put it.
finds_forward() { # DAEMON_PATH
  "$1" --sandbox-policy forward 2>&1 | grep -q '^# vault-bridge forward: seccomp allowlist'
}
if finds_forward /usr/bin/vault-bridge; then pass "/usr/bin/vault-bridge finds /usr/libexec/cloudtaser/vault-bridge-forward"
else fail "/usr/bin/vault-bridge does not find its forwarding executable: $(/usr/bin/vault-bridge --sandbox-policy forward 2>&1 | head -n 2)"; fi
mkdir -p /usr/local/bin && ln -sf /usr/bin/vault-bridge /usr/local/bin/vault-bridge
if finds_forward /usr/local/bin/vault-bridge; then pass "so does the guide's /usr/local/bin/vault-bridge symlink"
else fail "/usr/local/bin/vault-bridge (symlink) does not find its forwarding executable"; fi
rm -f /usr/local/bin/vault-bridge
needed=$(readelf -d /usr/libexec/cloudtaser/vault-bridge-forward | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if readelf -d /usr/bin/vault-bridge | grep -q 'NEEDED.*libssl' && [ -n "$needed" ] &&
  ! grep -qE 'libssl|libcrypto' <<<"$needed"; then
  pass "the packaged forwarding executable needs no libssl/libcrypto (needs: $needed)"
else fail "packaged vault-bridge-forward needs: $needed"; fi
if /usr/sbin/vault-egress-lock --version | grep -q '^vault-egress-lock [0-9]'; then
  pass "vault-egress-lock --version: $(/usr/sbin/vault-egress-lock --version)"
else fail "vault-egress-lock --version"; fi
if vout=$(systemd-analyze verify --man=no vault-bridge.service 2>&1) && [ -z "$vout" ]; then
  pass "systemd-analyze verify of the installed unit (real binary) is clean"
else fail "systemd-analyze verify of the installed unit: $vout"; fi
if vout=$(systemd-analyze verify --man=no vault-bridge@eks.service 2>&1) && [ -z "$vout" ]; then
  pass "systemd-analyze verify of an instance of the installed template, vault-bridge@eks, is clean"
else fail "systemd-analyze verify of vault-bridge@eks: $vout"; fi
if vout=$(systemd-analyze verify --man=no vault-egress-lock-restore.service 2>&1) && [ -z "$vout" ]; then
  pass "systemd-analyze verify of the installed boot unit (real helper) is clean"
else fail "systemd-analyze verify of the installed boot unit: $vout"; fi
# docs/vault-host.md, "Serving several clusters", step 1, run as written
# (beside a copy of deploy/cloudtaser-certs): the second cluster's
# certificates, user, directory and settings. Its files belong to
# root:vault-eks 0640, so user vault (the single unit) cannot read them; the
# instance is enabled and verifies. (Steps 2 and 3 need netfilter and a
# running systemd: the netns and integration tests cover them.)
if (cd /tmp/extra && bash -e ./walkthrough.sh) >/tmp/walk.log 2>&1; then
  pass "docs/vault-host.md 'Serving several clusters' step 1 runs as written"
else fail "the walkthrough's step 1 failed"; sed 's/^/    /' /tmp/walk.log; fi
want /etc/vault-bridge/eks 750 root:vault-eks directory
for f in tls.crt tls.key ca.crt broker.pin service.crt service.key; do
  want "/etc/vault-bridge/eks/$f" 640 root:vault-eks
done
if grep -qx 'BROKER_ADDRESS=broker.eks.example.com:443' /etc/vault-bridge/eks/vault-bridge.env; then
  pass "/etc/vault-bridge/eks/vault-bridge.env names eks's broker"
else fail "the instance's vault-bridge.env is wrong"; fi
# (The control: user vault does get into /etc/vault-bridge, where no tls.key is.)
control=$(setpriv --reuid=vault --regid=vault --init-groups cat /etc/vault-bridge/tls.key 2>&1 || true)
if ! setpriv --reuid=vault --regid=vault --init-groups cat /etc/vault-bridge/eks/tls.key >/dev/null 2>&1 &&
  grep -q 'No such file' <<<"$control"; then
  pass "user vault (the single unit) cannot read eks's key"
else fail "user vault can read /etc/vault-bridge/eks/tls.key (control: $control)"; fi
if systemctl enable vault-bridge@eks >/tmp/enable.log 2>&1 &&
  [ "$(readlink /etc/systemd/system/multi-user.target.wants/vault-bridge@eks.service)" = \
    /lib/systemd/system/vault-bridge@.service ]; then
  pass "systemctl enable vault-bridge@eks links the packaged template"
else fail "systemctl enable vault-bridge@eks"; sed 's/^/    /' /tmp/enable.log; fi
if vout=$(systemd-analyze verify --man=no vault-bridge@eks.service 2>&1) && [ -z "$vout" ]; then
  pass "systemd-analyze verify of the configured instance vault-bridge@eks is clean"
else fail "systemd-analyze verify of the configured vault-bridge@eks: $vout"; fi
# The operator's files: purge keeps them, so they go before the purge checks.
systemctl disable vault-bridge@eks >/dev/null 2>&1 || true
rm -rf /etc/vault-bridge/eks
userdel vault-eks >/dev/null 2>&1 || true

# Upgrades and reinstalls keep the operator's settings.
sed -i 's|^BROKER_ADDRESS=.*|BROKER_ADDRESS=broker.operator.example:443|' /etc/default/vault-bridge
dpkg -i /tmp/pkg >/tmp/dpkg2.log 2>&1 || { fail "reinstall"; sed 's/^/    /' /tmp/dpkg2.log; }
if grep -qx 'BROKER_ADDRESS=broker.operator.example:443' /etc/default/vault-bridge; then
  pass "reinstalling keeps the operator's /etc/default/vault-bridge"
else fail "reinstall overwrote /etc/default/vault-bridge"; fi
dpkg -r vault-bridge >/tmp/dpkg3.log 2>&1 || { fail "dpkg -r"; sed 's/^/    /' /tmp/dpkg3.log; }
if [ ! -e /usr/bin/vault-bridge ] && [ ! -e /usr/libexec/cloudtaser ] && [ -e /etc/default/vault-bridge ]; then
  pass "dpkg -r removes the binaries (and /usr/libexec/cloudtaser) and keeps the configuration"
else fail "dpkg -r left the wrong things"; fi
if [ ! -e /etc/systemd/system/sysinit.target.wants/vault-egress-lock-restore.service ]; then
  pass "dpkg -r disables the boot unit"
else fail "dpkg -r left the boot unit enabled"; fi
dpkg -P vault-bridge >/tmp/dpkg4.log 2>&1 || { fail "dpkg -P"; sed 's/^/    /' /tmp/dpkg4.log; }
if [ ! -e /etc/default/vault-bridge ] && [ ! -e /etc/vault-bridge ] && [ ! -L /etc/bridge ]; then
  pass "dpkg -P removes the configuration, /etc/vault-bridge and the /etc/bridge link"
else fail "dpkg -P left configuration behind"; fi
if [ ! -e /etc/systemd/system/vault-egress-lock-restore.service ] &&
  [ ! -L /etc/systemd/system/vault-egress-lock-restore.service ] &&
  [ ! -L /etc/systemd/system/sysinit.target.wants/vault-egress-lock-restore.service ]; then
  pass "dpkg -P leaves no mask or enablement link of the boot unit"
else fail "dpkg -P left a link of the boot unit behind"; fi
echo "  inside: $ok passed, $bad failed"
[ "$bad" = 0 ]
EOF

# Step 1 of "Adding a cluster" in docs/vault-host.md: the first fenced block
# after that heading, run beside deploy/cloudtaser-certs (copied: the checkout
# may be on a file system the overlay of / does not show).
TOP=$(cd "$HERE/../.." && pwd)
mkdir -p "$WORK/walk/deploy"
cp "$TOP/deploy/cloudtaser-certs" "$WORK/walk/deploy/"
{
  sed -n '/^\*\*Adding a cluster\*\*/,$p' "$TOP/docs/vault-host.md" |
    awk '/^ *```/ { if (on) exit; on = 1; next } on { sub(/^   /, ""); print }'
} >"$WORK/walk/walkthrough.sh"
if ! grep -q '^useradd ' "$WORK/walk/walkthrough.sh"; then
  fail "no walkthrough found in docs/vault-host.md"
fi

if in_scratch_root "$WORK/deb-inside.sh" "$DEB" "$WORK/walk" >"$WORK/deb.log" 2>&1; then
  cat "$WORK/deb.log"
  pass ".deb in a scratch root: every check above"
else
  cat "$WORK/deb.log"
  fail ".deb in a scratch root"
fi

# ---------------------------------------------------------------- rpm
# Files, plus the three directories the package owns; distribution paths mapped.
deb_files=$(dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}' | sed -e 's| \./| /|' -e 's|/$||' |
  grep -v -E ' /usr/share/(doc|lintian)/' |
  grep -E '^[^d]| /etc/vault-bridge$| /usr/share/selinux/packages/vault-bridge$| /usr/share/vault-bridge$| /usr/libexec/cloudtaser$' |
  sed -e 's| /lib/systemd/system/| /usr/lib/systemd/system/|' -e 's| /etc/default/| /etc/sysconfig/|' |
  LC_ALL=C sort -k3)
rpm_files=$(rpm -qlvp "$RPM" 2>/dev/null | awk '{print $1, $3 "/" $4, $9}' | LC_ALL=C sort -k3)
# The .deb records root/root for /etc/vault-bridge; postinst sets the group.
rpm_cmp=${rpm_files/drwxr-x--- root\/vault \/etc\/vault-bridge/drwxr-x--- root\/root \/etc\/vault-bridge}
if diff -u <(echo "$deb_files") <(echo "$rpm_cmp") >"$WORK/rpmdiff"; then
  pass "rpm -qlp lists the .deb's files with the same modes ($(wc -l <<<"$rpm_files") entries)"
else
  sed 's/^/    /' "$WORK/rpmdiff"
  fail "rpm and deb file lists differ"
fi
if grep -qx 'drwxr-x--- root/vault /etc/vault-bridge' <<<"$rpm_files"; then
  pass "rpm: /etc/vault-bridge is 0750 root:vault"
else fail "rpm: /etc/vault-bridge owner/mode wrong"; fi
if rpm -qcp "$RPM" 2>/dev/null | grep -qx /etc/sysconfig/vault-bridge; then
  pass "rpm: /etc/sysconfig/vault-bridge is %config(noreplace)"
else fail "rpm: env file is not a config file"; fi

cat >"$WORK/rpm-inside.sh" <<'EOF'
set -uo pipefail
ok=0 bad=0
pass() { ok=$((ok + 1)); echo "  PASS $*"; }
fail() { bad=$((bad + 1)); echo "  FAIL $*"; }
# A fresh rpm database; dependencies are Debian packages here, not rpms.
rpm --initdb
if rpm -i --nodeps /tmp/pkg >/tmp/rpm.log 2>&1; then pass "rpm -i installs the package (scriptlets ran)"
else fail "rpm -i"; sed 's/^/    /' /tmp/rpm.log; fi
if [ "$(stat -c '%a %U:%G' /etc/vault-bridge)" = "750 root:vault" ]; then pass "rpm: /etc/vault-bridge 750 root:vault"
else fail "rpm: /etc/vault-bridge is $(stat -c '%a %U:%G' /etc/vault-bridge)"; fi
if out=$(/usr/bin/vault-bridge --version 2>&1) && [ -n "$out" ]; then pass "rpm: the packaged binary runs --version"
else fail "rpm: vault-bridge --version: $out"; fi
if /usr/bin/vault-bridge --sandbox-policy forward 2>&1 | grep -q '^# vault-bridge forward: seccomp allowlist'; then
  pass "rpm: the daemon finds its forwarding executable in /usr/libexec/cloudtaser"
else fail "rpm: vault-bridge does not find its forwarding executable"; fi
if [ -L /etc/systemd/system/sysinit.target.wants/vault-egress-lock-restore.service ]; then
  pass "rpm: the egress lock's boot unit is enabled (sysinit.target.wants)"
else fail "rpm: vault-egress-lock-restore.service is not enabled after install"; fi
if rpm -V --nodeps vault-bridge >/tmp/rpmv.log 2>&1; then pass "rpm -V: installed files match the package"
else fail "rpm -V"; sed 's/^/    /' /tmp/rpmv.log; fi
rpm -e --nodeps vault-bridge >/tmp/rpme.log 2>&1 || { fail "rpm -e"; sed 's/^/    /' /tmp/rpme.log; }
if [ ! -e /usr/bin/vault-bridge ] && [ ! -e /usr/libexec/cloudtaser ]; then pass "rpm -e removes both binaries"
else fail "rpm -e left a binary"; fi
if [ ! -L /etc/systemd/system/sysinit.target.wants/vault-egress-lock-restore.service ]; then
  pass "rpm -e disables the boot unit"
else fail "rpm -e left the boot unit enabled"; fi
echo "  inside: $ok passed, $bad failed"
[ "$bad" = 0 ]
EOF
if in_scratch_root "$WORK/rpm-inside.sh" "$RPM" >"$WORK/rpm.log" 2>&1; then
  cat "$WORK/rpm.log"
  pass ".rpm in a scratch root: every check above"
else
  cat "$WORK/rpm.log"
  fail ".rpm in a scratch root"
fi

# ---------------------------------------------------------------- beacon
if [ -n "$BEACON_DEB" ] && [ -n "$BEACON_RPM" ]; then
if lintian --fail-on error,warning --tag-display-limit 0 --display-info "$BEACON_DEB" >"$WORK/lintian-b" 2>&1; then
  grep -v 'root privileges' "$WORK/lintian-b" | sed 's/^/    /' || true
  n=$(grep -c '^cloudtaser-beacon: ' "$HERE/../../packaging/deb/beacon/lintian-overrides" || true)
  pass "beacon: lintian: no errors or warnings ($n overrides, each with its reason in packaging/deb/beacon/lintian-overrides)"
else
  sed 's/^/    /' "$WORK/lintian-b"
  fail "beacon: lintian"
fi

# The beacon's certificate and key, from cloudtaser-certs as the docs say.
mkdir -p "$WORK/beacon-extra"
"$TOP/deploy/cloudtaser-certs" --out "$WORK/beacon-extra/pki" --external-host broker.test \
  --beacon-host 127.0.0.1 >/dev/null

cat >"$WORK/beacon-deb-inside.sh" <<'EOF'
set -uo pipefail
ok=0 bad=0
pass() { ok=$((ok + 1)); echo "  PASS $*"; }
fail() { bad=$((bad + 1)); echo "  FAIL $*"; }
if dpkg -i /tmp/pkg >/tmp/dpkg.log 2>&1; then pass "beacon: dpkg -i installs the package (maintainer scripts ran)"
else fail "beacon: dpkg -i"; sed 's/^/    /' /tmp/dpkg.log; fi
want() { # PATH MODE OWNER:GROUP [TYPE]
  local got
  got=$(stat -c '%a %U:%G %F' "$1" 2>/dev/null || echo missing)
  if [ "$got" = "$2 $3 ${4:-regular file}" ]; then pass "$1 is $2 $3 ${4:-regular file}"
  else fail "$1: want $2 $3 ${4:-regular file}, got $got"; fi
}
want /usr/bin/cloudtaser-beacon 755 root:root
want /usr/libexec/cloudtaser/cloudtaser-beacon-forward 755 root:root
want /lib/systemd/system/cloudtaser-beacon.service 644 root:root
want /etc/default/cloudtaser-beacon 644 root:root
want /etc/cloudtaser-beacon 750 root:cloudtaser-beacon directory
want /usr/share/selinux/packages/cloudtaser-beacon/cloudtaser_beacon.pp 644 root:root
want /usr/share/man/man8/cloudtaser-beacon.8.gz 644 root:root
want /usr/share/doc/cloudtaser-beacon/copyright 644 root:root
shell=$(getent passwd cloudtaser-beacon | cut -d: -f7)
if [ "$shell" = /usr/sbin/nologin ]; then pass "user cloudtaser-beacon exists and cannot log in"
else fail "user cloudtaser-beacon: shell '$shell'"; fi
if dpkg-query -W -f='${Conffiles}\n' cloudtaser-beacon | grep -q '/etc/default/cloudtaser-beacon'; then
  pass "/etc/default/cloudtaser-beacon is a registered conffile"
else fail "/etc/default/cloudtaser-beacon is not a conffile"; fi
version=$(/usr/bin/cloudtaser-beacon --version 2>&1 | sed 's/.* //')
if out=$(/usr/libexec/cloudtaser/cloudtaser-beacon-forward --version 2>&1) &&
  [ -n "$version" ] && [ "$out" = "cloudtaser-beacon-forward $version" ]; then
  pass "the packaged beacon and its forwarding executable run --version: $version"
else fail "packaged beacon --version: $version; forward: $out"; fi
if /usr/bin/cloudtaser-beacon --sandbox-policy forward 2>&1 | grep -q '^# cloudtaser-beacon forward: seccomp allowlist'; then
  pass "/usr/bin/cloudtaser-beacon finds /usr/libexec/cloudtaser/cloudtaser-beacon-forward"
else fail "/usr/bin/cloudtaser-beacon does not find its forwarding executable"; fi
needed=$(readelf -d /usr/libexec/cloudtaser/cloudtaser-beacon-forward | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if readelf -d /usr/bin/cloudtaser-beacon | grep -q 'NEEDED.*libssl' && [ -n "$needed" ] &&
  ! grep -qE 'libssl|libcrypto' <<<"$needed"; then
  pass "the packaged beacon forwarding executable needs no libssl/libcrypto (needs: $needed)"
else fail "packaged cloudtaser-beacon-forward needs: $needed"; fi
if vout=$(systemd-analyze verify --man=no cloudtaser-beacon.service 2>&1) && [ -z "$vout" ]; then
  pass "systemd-analyze verify of the installed beacon unit (real binary) is clean"
else fail "systemd-analyze verify of the installed beacon unit: $vout"; fi
# The operator's step: certificate and key into /etc/cloudtaser-beacon,
# root:cloudtaser-beacon 0640 (systemd/cloudtaser-beacon.env says so); the
# packaged beacon, as the packaged user, starts with them (port 0 here: the
# capability for 443 is check-systemd's).
install -o root -g cloudtaser-beacon -m 0640 /tmp/extra/pki/beacon/tls.crt /tmp/extra/pki/beacon/tls.key /etc/cloudtaser-beacon/
# shellcheck disable=SC1091 # the installed file
. /etc/default/cloudtaser-beacon
setpriv --reuid=cloudtaser-beacon --regid=cloudtaser-beacon --clear-groups --no-new-privs \
  /usr/bin/cloudtaser-beacon --listen 127.0.0.1:0 --cert "$CERT" --key "$KEY" 2>/tmp/beacon.log &
bpid=$!
for _ in $(seq 1 50); do grep -q 'parent\] info: ready' /tmp/beacon.log && break; sleep 0.1; done
if grep -q 'parent\] info: ready' /tmp/beacon.log; then
  pass "the packaged beacon starts as user cloudtaser-beacon with the env file's CERT and KEY"
else fail "the packaged beacon did not start"; tail -5 /tmp/beacon.log | sed 's/^/    /'; fi
kill -TERM "$bpid" 2>/dev/null; wait "$bpid" 2>/dev/null
rm -f /etc/cloudtaser-beacon/tls.crt /etc/cloudtaser-beacon/tls.key
sed -i 's|^LISTEN=.*|LISTEN=0.0.0.0:8443|' /etc/default/cloudtaser-beacon
dpkg -i /tmp/pkg >/tmp/dpkg2.log 2>&1 || { fail "beacon: reinstall"; sed 's/^/    /' /tmp/dpkg2.log; }
if grep -qx 'LISTEN=0.0.0.0:8443' /etc/default/cloudtaser-beacon; then
  pass "reinstalling keeps the operator's /etc/default/cloudtaser-beacon"
else fail "reinstall overwrote /etc/default/cloudtaser-beacon"; fi
dpkg -r cloudtaser-beacon >/tmp/dpkg3.log 2>&1 || { fail "beacon: dpkg -r"; sed 's/^/    /' /tmp/dpkg3.log; }
if [ ! -e /usr/bin/cloudtaser-beacon ] && [ ! -e /usr/libexec/cloudtaser ] && [ -e /etc/default/cloudtaser-beacon ]; then
  pass "beacon: dpkg -r removes the binaries (and /usr/libexec/cloudtaser) and keeps the configuration"
else fail "beacon: dpkg -r left the wrong things"; fi
dpkg -P cloudtaser-beacon >/tmp/dpkg4.log 2>&1 || { fail "beacon: dpkg -P"; sed 's/^/    /' /tmp/dpkg4.log; }
if [ ! -e /etc/default/cloudtaser-beacon ] && [ ! -e /etc/cloudtaser-beacon ]; then
  pass "beacon: dpkg -P removes the configuration and /etc/cloudtaser-beacon"
else fail "beacon: dpkg -P left configuration behind"; fi
echo "  inside: $ok passed, $bad failed"
[ "$bad" = 0 ]
EOF
if in_scratch_root "$WORK/beacon-deb-inside.sh" "$BEACON_DEB" "$WORK/beacon-extra" >"$WORK/beacon-deb.log" 2>&1; then
  cat "$WORK/beacon-deb.log"
  pass "beacon .deb in a scratch root: every check above"
else
  cat "$WORK/beacon-deb.log"
  fail "beacon .deb in a scratch root"
fi

# rpm -qp with a query format (rpm -qlv cuts group names at 8 characters).
deb_files=$(dpkg-deb -c "$BEACON_DEB" | awk '{print $1, $2, $6}' | sed -e 's| \./| /|' -e 's|/$||' |
  grep -v -E ' /usr/share/(doc|lintian)/' |
  grep -E '^[^d]| /etc/cloudtaser-beacon$| /usr/share/selinux/packages/cloudtaser-beacon$| /usr/libexec/cloudtaser$' |
  sed -e 's| /lib/systemd/system/| /usr/lib/systemd/system/|' -e 's| /etc/default/| /etc/sysconfig/|' |
  LC_ALL=C sort -k3)
rpm_files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]' "$BEACON_RPM" 2>/dev/null |
  LC_ALL=C sort -k3)
rpm_cmp=${rpm_files/drwxr-x--- root\/cloudtaser-beacon \/etc\/cloudtaser-beacon/drwxr-x--- root\/root \/etc\/cloudtaser-beacon}
if diff -u <(echo "$deb_files") <(echo "$rpm_cmp") >"$WORK/rpmdiff-b"; then
  pass "beacon: rpm -qp lists the .deb's files with the same modes ($(wc -l <<<"$rpm_files") entries)"
else
  sed 's/^/    /' "$WORK/rpmdiff-b"
  fail "beacon: rpm and deb file lists differ"
fi
if grep -qx 'drwxr-x--- root/cloudtaser-beacon /etc/cloudtaser-beacon' <<<"$rpm_files"; then
  pass "beacon rpm: /etc/cloudtaser-beacon is 0750 root:cloudtaser-beacon"
else fail "beacon rpm: /etc/cloudtaser-beacon owner/mode wrong"; fi
if rpm -qcp "$BEACON_RPM" 2>/dev/null | grep -qx /etc/sysconfig/cloudtaser-beacon; then
  pass "beacon rpm: /etc/sysconfig/cloudtaser-beacon is %config(noreplace)"
else fail "beacon rpm: env file is not a config file"; fi

cat >"$WORK/beacon-rpm-inside.sh" <<'EOF'
set -uo pipefail
ok=0 bad=0
pass() { ok=$((ok + 1)); echo "  PASS $*"; }
fail() { bad=$((bad + 1)); echo "  FAIL $*"; }
rpm --initdb
if rpm -i --nodeps /tmp/pkg >/tmp/rpm.log 2>&1; then pass "beacon: rpm -i installs the package (scriptlets ran)"
else fail "beacon: rpm -i"; sed 's/^/    /' /tmp/rpm.log; fi
if [ "$(stat -c '%a %U:%G' /etc/cloudtaser-beacon)" = "750 root:cloudtaser-beacon" ]; then
  pass "beacon rpm: /etc/cloudtaser-beacon 750 root:cloudtaser-beacon (user created by %pre)"
else fail "beacon rpm: /etc/cloudtaser-beacon is $(stat -c '%a %U:%G' /etc/cloudtaser-beacon)"; fi
if /usr/bin/cloudtaser-beacon --sandbox-policy forward 2>&1 | grep -q '^# cloudtaser-beacon forward: seccomp allowlist'; then
  pass "beacon rpm: the beacon finds its forwarding executable in /usr/libexec/cloudtaser"
else fail "beacon rpm: cloudtaser-beacon does not find its forwarding executable"; fi
if rpm -V --nodeps cloudtaser-beacon >/tmp/rpmv.log 2>&1; then pass "beacon rpm -V: installed files match the package"
else fail "beacon rpm -V"; sed 's/^/    /' /tmp/rpmv.log; fi
rpm -e --nodeps cloudtaser-beacon >/tmp/rpme.log 2>&1 || { fail "beacon: rpm -e"; sed 's/^/    /' /tmp/rpme.log; }
if [ ! -e /usr/bin/cloudtaser-beacon ] && [ ! -e /usr/libexec/cloudtaser ]; then pass "beacon rpm -e removes both binaries"
else fail "beacon rpm -e left a binary"; fi
echo "  inside: $ok passed, $bad failed"
[ "$bad" = 0 ]
EOF
if in_scratch_root "$WORK/beacon-rpm-inside.sh" "$BEACON_RPM" >"$WORK/beacon-rpm.log" 2>&1; then
  cat "$WORK/beacon-rpm.log"
  pass "beacon .rpm in a scratch root: every check above"
else
  cat "$WORK/beacon-rpm.log"
  fail "beacon .rpm in a scratch root"
fi
fi

echo "check-packages: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
