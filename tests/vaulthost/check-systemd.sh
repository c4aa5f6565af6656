#!/bin/bash
# The packaged units (vault-bridge's, and cloudtaser-beacon's below):
# `systemd-analyze verify` says nothing, the exposure
# score is at most 1.5, its ExecStart expands (with the shipped environment
# file) to exactly the guide's command line, nothing in it stops the exec of
# the forwarding executable, and the guide's own unit text, pasted as is,
# verifies too once /usr/local/bin/vault-bridge exists.
#
# Usage: check-systemd.sh [BRIDGE_BINARY [BEACON_BINARY]]
# Without a built bridge the verify steps use an empty executable in its
# place (verify only checks that the file exists and is executable) and say so.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$HERE/../..
SEED=${SEED:-$TOP/../shared/seed/reverse-connect-architecture.txt}
BIN=${1:-}
BEACON=${2:-}
MAX_EXPOSURE=1.5
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "  PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT

mkdir -p "$ROOT/usr/bin" "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/etc/default" "$ROOT/lib/systemd"
# The units the bridge's unit names (network-online.target, ...) come from the host.
cp -a /lib/systemd/system "$ROOT/lib/systemd/"
if [ -n "$BIN" ] && [ -x "$BIN" ]; then
  cp "$BIN" "$ROOT/usr/bin/vault-bridge"
else
  echo "  note: no bridge binary given; verifying against an empty executable"
  printf '#!/bin/sh\nexit 0\n' >"$ROOT/usr/bin/vault-bridge"
  chmod 0755 "$ROOT/usr/bin/vault-bridge"
fi
sed -e 's|@ENVFILE@|/etc/default/vault-bridge|' -e 's|@BINDIR@|/usr/bin|' \
  "$TOP/systemd/vault-bridge.service" >"$ROOT/etc/systemd/system/vault-bridge.service"
mkdir -p "$ROOT/usr/sbin"
install -m 0755 "$TOP/bridge/vault-egress-lock" "$ROOT/usr/sbin/vault-egress-lock"
cp "$TOP/systemd/vault-egress-lock-restore.service" "$ROOT/etc/systemd/system/"
cp "$TOP/systemd/vault-bridge.env" "$ROOT/etc/default/vault-bridge"

verify() {
  local what=$1 out
  out=$(systemd-analyze verify --man=no --root="$ROOT" "$2" 2>&1) || true
  if [ -z "$out" ]; then pass "$what: systemd-analyze verify is clean"
  else fail "$what: systemd-analyze verify said:"; printf '    %s\n' "$out"; fi
}
verify "packaged unit" vault-bridge.service
verify "egress lock boot unit" vault-egress-lock-restore.service

# The boot unit restores the lock before any interface is configured, and
# after the distribution's firewall loaders (which flush the ruleset).
boot="$ROOT/etc/systemd/system/vault-egress-lock-restore.service"
missing=""
for key in 'DefaultDependencies=no' 'Wants=network-pre.target' 'Before=network-pre.target shutdown.target' \
  'Type=oneshot' 'RemainAfterExit=yes' 'ExecStart=/usr/sbin/vault-egress-lock restore' \
  'WantedBy=sysinit.target' 'RequiresMountsFor=/var/lib/vault-egress-lock'; do
  grep -qx -- "$key" "$boot" || missing+=" $key"
done
after=$(sed -n 's/^After=//p' "$boot")
for u in nftables.service netfilter-persistent.service local-fs.target; do
  [[ " $after " == *" $u "* ]] || missing+=" After=$u"
done
if [ -z "$missing" ]; then
  pass "boot unit: oneshot before network-pre.target, after the firewall loaders, runs 'vault-egress-lock restore'"
else fail "boot unit lacks:$missing"; fi

exposure() { # UNIT: its score, and that it is at most MAX_EXPOSURE
  local u=$1 out s
  out=$(systemd-analyze security --offline=yes --no-pager --root="$ROOT" "$u" 2>&1) || true
  s=$(sed -nE "s/.*Overall exposure level for ${u//./\\.}: ([0-9.]+).*/\1/p" <<<"$out")
  if [ -z "$s" ]; then
    fail "no exposure score for $u from systemd-analyze security --offline=yes"
    echo "$out" | tail -5
    return
  fi
  echo "  exposure score of $u (systemd-analyze security --offline=yes): $s"
  grep '^✗' <<<"$out" | sed 's/^/    /' || true
  if awk -v s="$s" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    pass "$u exposure $s <= $MAX_EXPOSURE"
  else
    fail "$u exposure $s > $MAX_EXPOSURE"
  fi
}
exposure vault-bridge.service

# What systemd will run: EnvironmentFile assignments override Environment=,
# ${VAR} stays one argument, $VAR splits on white space. Reproduce that
# with the shipped file and compare with the guide's command line.
expand_execstart() {
  local unit=$1 envfile=$2
  (
    set -a
    while IFS= read -r line; do
      case $line in Environment=*) eval "${line#Environment=}" ;; esac
    done <"$unit"
    # shellcheck disable=SC1090
    . "$envfile"
    set +a
    cmd=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | sed -e 's/^ExecStart=//' -e 's/\\$//' | tr -s ' \n' '  ')
    eval "set -- $cmd"
    printf '%s\n' "$@"
  )
}
expand_execstart "$ROOT/etc/systemd/system/vault-bridge.service" "$ROOT/etc/default/vault-bridge" >"$ROOT/ours"
printf '%s\n' /usr/bin/vault-bridge --broker-address broker.prod.example.com:443 \
  --vault-addr http://127.0.0.1:8200 --client-cert /etc/bridge/tls.crt \
  --client-key /etc/bridge/tls.key --ca-cert /etc/bridge/ca.crt >"$ROOT/want"
if diff -u "$ROOT/want" "$ROOT/ours"; then pass "ExecStart with the shipped env file = the guide's command line"
else fail "ExecStart expands differently from the guide"; fi

for key in 'Restart=always' 'RestartSec=5' 'User=vault' 'Type=notify' 'NotifyAccess=main' \
  'After=network-online.target vault.service' 'Wants=network-online.target' \
  'WantedBy=multi-user.target' 'IPAddressDeny=any' 'CapabilityBoundingSet='; do
  if grep -qx -- "$key" "$ROOT/etc/systemd/system/vault-bridge.service"; then :; else
    fail "packaged unit lacks $key"; fi
done
pass "packaged unit keeps the guide's Restart/RestartSec/User/ordering and the reviewer's hardening keys"

# The bridge execs its own file and its forwarding executable
# (/usr/libexec/cloudtaser/vault-bridge-forward), the beacon likewise: nothing
# in the unit may stop an exec there. No path setting makes /usr
# non-executable or hidden (ProtectSystem=strict only makes it read-only), and
# the system call filter, computed as systemd does (the first line an
# allowlist, then ~ removes and a plain line adds back), keeps execve and
# execveat.
expand_filter() { # "names and @groups" -> system call names, one a line
  local words w
  read -r -a words <<<"$*"
  for w in "${words[@]}"; do
    case $w in
      @*) expand_filter "$(systemd-analyze syscall-filter "$w" | sed -n 's/^    \([@a-z_0-9-]*\)$/\1/p' | tr '\n' ' ')" ;;
      *) echo "$w" ;;
    esac
  done
}
unit_allows() { # UNIT_FILE -> the system calls its filter allows, one a line
  local allowed="" first=yes line v
  while IFS= read -r line; do
    v=${line#SystemCallFilter=}
    case $first:$v in
      yes:~*) echo "DENYLIST-FIRST"; return ;;
      yes:*) allowed=$(expand_filter "$v" | sort -u) ;;
      no:~*) allowed=$(comm -23 <(echo "$allowed") <(expand_filter "${v#\~}" | sort -u)) ;;
      no:*) allowed=$( (echo "$allowed"; expand_filter "$v") | sort -u) ;;
    esac
    first=no
  done < <(grep '^SystemCallFilter=' "$1")
  echo "$allowed"
}
exec_ok() { # UNIT_FILE
  local unit=$1 name blocking allowed missing c
  name=$(basename "$unit")
  blocking=$(grep -E '^(NoExecPaths|ExecPaths|RootDirectory|RootImage|TemporaryFileSystem)=' "$unit" || true)
  blocking+=$(sed -n 's/^InaccessiblePaths=//p' "$unit" | tr ' ' '\n' | sed 's/^-//' |
    grep -E '^/(usr(/libexec(/cloudtaser)?|/bin)?)?/?$' || true)
  if [ -z "$blocking" ]; then pass "$name: no path setting hides /usr/libexec/cloudtaser or makes it non-executable"
  else fail "$name may stop the exec of the forwarding executable: $blocking"; fi
  allowed=$(unit_allows "$unit")
  if [ "$allowed" = DENYLIST-FIRST ]; then
    fail "$name: the first SystemCallFilter= line is a denylist; this check expects an allowlist"
    return
  fi
  # The parent's own calls the unit must keep: exec of the children, and the data channel's
  # sealed memfd (shared/ipc/shm_ring.cc: memfd_create, ftruncate, fcntl F_ADD_SEALS), and the
  # thread a name is looked up on (shared/os/resolver.cc: clone3, or clone on older libcs).
  missing=""
  for c in execve execveat memfd_create ftruncate fcntl clone clone3 eventfd2; do
    grep -qx "$c" <<<"$allowed" || missing+=" $c"
  done
  if [ -z "$missing" ]; then
    pass "$name: the system call filter keeps exec, the data channel's memfd calls and the lookup thread's ($(wc -l <<<"$allowed") calls allowed)"
  else fail "$name: the system call filter drops:$missing"; fi
}
unit="$ROOT/etc/systemd/system/vault-bridge.service"
exec_ok "$unit"

# ---- vault-bridge@.service: one bridge per cluster (instance "eks" here).
tmpl="$ROOT/etc/systemd/system/vault-bridge@.service"
sed -e 's|@BINDIR@|/usr/bin|' "$TOP/systemd/vault-bridge@.service" >"$tmpl"
verify "template instance vault-bridge@eks" vault-bridge@eks.service
score_out=$(systemd-analyze security --offline=yes --no-pager --root="$ROOT" vault-bridge@eks.service 2>&1) || true
score=$(sed -nE 's/.*Overall exposure level for vault-bridge@eks.service: ([0-9.]+).*/\1/p' <<<"$score_out")
if [ -z "$score" ]; then
  fail "no exposure score for vault-bridge@eks.service"
  echo "$score_out" | tail -5
elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
  pass "vault-bridge@eks exposure $score <= $MAX_EXPOSURE"
else
  fail "vault-bridge@eks exposure $score > $MAX_EXPOSURE"
fi

# The same hardening as the single unit, line for line: every setting of
# vault-bridge.service is in the template unchanged, except the ones that
# name the instance's own user, directories and configuration; and the
# template adds only those and its mount view of /etc/vault-bridge.
settings() { # KEY=VALUE lines of a unit (no comments, no ExecStart continuations)
  grep -E '^[A-Za-z]+=' "$1" | grep -v -E '^(Description|Documentation)='
}
per_instance='^(Environment|EnvironmentFile|ExecStart|User|Group|RuntimeDirectory)='
missing=$(comm -23 <(settings "$unit" | grep -v -E "$per_instance" | sort) <(settings "$tmpl" | sort))
extra=$(comm -13 <(settings "$unit" | sort) <(settings "$tmpl" | sort) |
  grep -v -E "$per_instance" | grep -v -E '^(TemporaryFileSystem|BindReadOnlyPaths)=' || true)
if [ -z "$missing" ] && [ -z "$extra" ]; then
  pass "the template keeps every setting of vault-bridge.service; only user, paths and the mount view differ"
else
  fail "the template's hardening differs from vault-bridge.service"
  printf '    missing: %s\n' "$missing" "$extra" | sed '$s/missing:/extra:  /'
fi

# What keeps one cluster's bridge away from another's key: a user and group
# of its own, and a mount view in which /etc/vault-bridge holds only its own
# directory; nothing writable but its own runtime directory.
missing=""
for key in 'User=vault-%i' 'Group=vault-%i' 'TemporaryFileSystem=/etc/vault-bridge:ro' \
  'BindReadOnlyPaths=/etc/vault-bridge/%i' 'EnvironmentFile=/etc/vault-bridge/%i/vault-bridge.env' \
  'RuntimeDirectory=vault-bridge-%i' 'PrivateUsers=yes' 'ProtectProc=invisible' 'ProtectSystem=strict'; do
  grep -qx -- "$key" "$tmpl" || missing+=" $key"
done
others=$(grep -E '^(DynamicUser|SupplementaryGroups|ReadWritePaths|BindPaths|StateDirectory|CacheDirectory|LogsDirectory|ConfigurationDirectory|LoadCredential|SetCredential)=' "$tmpl" || true)
if [ -z "$missing" ] && [ -z "$others" ]; then
  pass "each instance runs as vault-NAME and sees /etc/vault-bridge/NAME only; it writes /run/vault-bridge-NAME only"
else fail "template isolation: lacks$missing; has: $others"; fi
# The mount view must not hide or un-execute the forwarding executable either.
tfs=$(sed -n 's/^TemporaryFileSystem=//p' "$tmpl" | tr ' ' '\n' | grep -v -x '/etc/vault-bridge:ro' || true)
if [ -z "$tfs" ] && ! grep -qE '^(NoExecPaths|ExecPaths|RootDirectory|RootImage)=' "$tmpl"; then
  pass "the template's only temporary file system is /etc/vault-bridge; /usr stays executable"
else fail "the template may hide or un-execute /usr: $tfs"; fi

# ExecStart of vault-bridge@eks with an instance file that sets only the
# broker: every path is the instance's own.
sed 's/%i/eks/g' "$tmpl" >"$ROOT/eks.service"
printf 'BROKER_ADDRESS=broker.eks.example.com:443\n' >"$ROOT/eks.env"
expand_execstart "$ROOT/eks.service" "$ROOT/eks.env" >"$ROOT/ours-eks"
printf '%s\n' /usr/bin/vault-bridge --broker-address broker.eks.example.com:443 \
  --vault-addr http://127.0.0.1:8200 --client-cert /etc/vault-bridge/eks/tls.crt \
  --client-key /etc/vault-bridge/eks/tls.key --ca-cert /etc/vault-bridge/eks/ca.crt \
  --status-file /run/vault-bridge-eks/status.prom >"$ROOT/want-eks"
if diff -u "$ROOT/want-eks" "$ROOT/ours-eks"; then
  pass "vault-bridge@eks with BROKER_ADDRESS alone: the seed's flags with eks's own files and status file"
else fail "vault-bridge@eks's ExecStart expands differently"; fi

# ---- Beacon mode: the shipped drop-ins replace ExecStart= only. Installed
# as the docs say, the unit still verifies, keeps its exposure score, and
# runs the beacon-mode command line with the env file's BEACON_ADDRESS.
dropin_execstart() { # UNIT DROPIN ENVFILE: the command line of UNIT with DROPIN
  local merged
  merged=$(mktemp -p "$ROOT")
  grep '^Environment=' "$1" >"$merged"
  grep '^Environment=' "$2" >>"$merged"
  # The drop-in's own ExecStart (after its empty reset line).
  sed -n '/^ExecStart=./,/[^\\]$/p' "$2" >>"$merged"
  expand_execstart "$merged" "$3"
}
mkdir -p "$ROOT/etc/systemd/system/vault-bridge.service.d"
sed -e 's|@BINDIR@|/usr/bin|' "$TOP/systemd/vault-bridge-beacon-mode.conf" \
  >"$ROOT/etc/systemd/system/vault-bridge.service.d/beacon-mode.conf"
verify "packaged unit with the beacon-mode drop-in" vault-bridge.service
exposure vault-bridge.service
{ cat "$ROOT/etc/default/vault-bridge"; echo BEACON_ADDRESS=beacon.example.com:443; } >"$ROOT/beacon.env"
dropin_execstart "$unit" "$ROOT/etc/systemd/system/vault-bridge.service.d/beacon-mode.conf" \
  "$ROOT/beacon.env" >"$ROOT/ours-bm"
printf '%s\n' /usr/bin/vault-bridge --beacon-address beacon.example.com:443 --beacon-ca /etc/bridge/ca.crt \
  --pairing-key-file /etc/bridge/pairing.key --vault-addr http://127.0.0.1:8200 \
  --client-cert /etc/bridge/tls.crt --client-key /etc/bridge/tls.key --ca-cert /etc/bridge/ca.crt >"$ROOT/want-bm"
if diff -u "$ROOT/want-bm" "$ROOT/ours-bm"; then
  pass "beacon-mode drop-in + BEACON_ADDRESS in the env file: the documented beacon-mode command line"
else fail "beacon-mode drop-in: ExecStart expands differently"; fi
# Without BEACON_ADDRESS systemd passes ${BEACON_ADDRESS} as one empty
# argument (the drop-in sets no default beacon): the bridge must refuse that
# with one line rather than start.
if grep -q '^Environment=BEACON_ADDRESS= ' "$ROOT/etc/systemd/system/vault-bridge.service.d/beacon-mode.conf"; then
  if [ -n "$BIN" ] && [ -x "$BIN" ]; then
    err=$("$BIN" --beacon-address "" --beacon-ca /etc/bridge/ca.crt --vault-addr http://127.0.0.1:8200 2>&1) && err=""
    if grep -q -- '--beacon-address needs a non-empty value' <<<"$err"; then
      pass "beacon-mode drop-in without BEACON_ADDRESS: the bridge refuses to start: $err"
    else fail "an empty --beacon-address is not refused: '$err'"; fi
  else echo "  note: no bridge binary; skipped running it with an empty --beacon-address"; fi
else fail "the beacon-mode drop-in must not default BEACON_ADDRESS to a beacon"; fi
rm -r "$ROOT/etc/systemd/system/vault-bridge.service.d"
mkdir -p "$ROOT/etc/systemd/system/vault-bridge@.service.d" "$ROOT/etc/vault-bridge/eks"
sed -e 's|@BINDIR@|/usr/bin|' "$TOP/systemd/vault-bridge@-beacon-mode.conf" \
  >"$ROOT/etc/systemd/system/vault-bridge@.service.d/beacon-mode.conf"
verify "template instance vault-bridge@eks with the beacon-mode drop-in" vault-bridge@eks.service
sed 's/%i/eks/g' "$ROOT/etc/systemd/system/vault-bridge@.service.d/beacon-mode.conf" >"$ROOT/eks-bm.conf"
printf 'BEACON_ADDRESS=beacon.example.com:443\n' >"$ROOT/eks-bm.env"
dropin_execstart "$ROOT/eks.service" "$ROOT/eks-bm.conf" "$ROOT/eks-bm.env" >"$ROOT/ours-eks-bm"
printf '%s\n' /usr/bin/vault-bridge --beacon-address beacon.example.com:443 \
  --beacon-ca /etc/vault-bridge/eks/ca.crt --pairing-key-file /etc/vault-bridge/eks/pairing.key \
  --vault-addr http://127.0.0.1:8200 --client-cert /etc/vault-bridge/eks/tls.crt \
  --client-key /etc/vault-bridge/eks/tls.key --ca-cert /etc/vault-bridge/eks/ca.crt \
  --status-file /run/vault-bridge-eks/status.prom >"$ROOT/want-eks-bm"
if diff -u "$ROOT/want-eks-bm" "$ROOT/ours-eks-bm"; then
  pass "vault-bridge@eks with the beacon-mode drop-in: beacon mode with eks's own files and status file"
else fail "vault-bridge@eks beacon-mode drop-in: ExecStart expands differently"; fi
rm -r "$ROOT/etc/systemd/system/vault-bridge@.service.d"

# ---- cloudtaser-beacon.service: the relay, as the package installs it.
bunit="$ROOT/etc/systemd/system/cloudtaser-beacon.service"
if [ -n "$BEACON" ] && [ -x "$BEACON" ]; then
  cp "$BEACON" "$ROOT/usr/bin/cloudtaser-beacon"
else
  echo "  note: no beacon binary given; verifying against an empty executable"
  printf '#!/bin/sh\nexit 0\n' >"$ROOT/usr/bin/cloudtaser-beacon"
  chmod 0755 "$ROOT/usr/bin/cloudtaser-beacon"
fi
sed -e 's|@ENVFILE@|/etc/default/cloudtaser-beacon|' -e 's|@BINDIR@|/usr/bin|' \
  "$TOP/systemd/cloudtaser-beacon.service" >"$bunit"
cp "$TOP/systemd/cloudtaser-beacon.env" "$ROOT/etc/default/cloudtaser-beacon"
verify "beacon unit" cloudtaser-beacon.service
exposure cloudtaser-beacon.service
exec_ok "$bunit"
# With the shipped env file: docs/man/cloudtaser-beacon.8's example.
expand_execstart "$bunit" "$ROOT/etc/default/cloudtaser-beacon" >"$ROOT/ours-beacon"
printf '%s\n' /usr/bin/cloudtaser-beacon --listen 0.0.0.0:443 --cert /etc/cloudtaser-beacon/tls.crt \
  --key /etc/cloudtaser-beacon/tls.key --metrics-listen 127.0.0.1:9090 >"$ROOT/want-beacon"
if diff -u "$ROOT/want-beacon" "$ROOT/ours-beacon"; then
  pass "beacon ExecStart with the shipped env file = the man page's example"
else fail "beacon ExecStart expands differently from the man page's example"; fi
missing=""
for key in 'Restart=always' 'RestartSec=5' 'User=cloudtaser-beacon' 'Group=cloudtaser-beacon' \
  'Type=notify' 'NotifyAccess=main' 'WantedBy=multi-user.target' 'NoNewPrivileges=yes' \
  'ProtectSystem=strict' 'SecureBits=noroot-locked'; do
  grep -qx -- "$key" "$bunit" || missing+=" $key"
done
if [ -z "$missing" ]; then pass "beacon unit: restarts always, runs as cloudtaser-beacon, Type=notify, no new privileges"
else fail "beacon unit lacks:$missing"; fi
# Port 443 as user cloudtaser-beacon: CAP_NET_BIND_SERVICE and nothing
# else, both bounding and ambient; no PrivateUsers= (a capability in a user
# namespace of its own does not cover the host's network namespace). The
# filter forbids capset (~@privileged), so the beacon must start its
# children with none (beacon/parent.cc clears the ambient set after binding;
# check-packages runs it so).
caps="$(sed -n 's/^CapabilityBoundingSet=//p' "$bunit")|$(sed -n 's/^AmbientCapabilities=//p' "$bunit")"
if [ "$caps" = 'CAP_NET_BIND_SERVICE|CAP_NET_BIND_SERVICE' ] && ! grep -q '^PrivateUsers=yes' "$bunit"; then
  pass "beacon unit: CAP_NET_BIND_SERVICE is its only capability (bounding and ambient), no private user namespace"
else fail "beacon unit capabilities: bounding|ambient = $caps"; fi
if ! grep -qx capset <<<"$(unit_allows "$bunit")"; then
  pass "beacon unit: capset is not allowed (children must start without the ambient capability)"
else fail "beacon unit allows capset"; fi

# The beacon as the unit starts it, for real (root and a built beacon
# needed): an unprivileged user holding CAP_NET_BIND_SERVICE as an ambient
# capability, as User= and AmbientCapabilities= give it, in a network
# namespace of its own. It binds 443; its children hold no capability and
# never call capset(), which the unit's filter would refuse with EPERM (the
# sandbox then refuses to run): strace watches every process for it.
if [ -n "$BEACON" ] && [ -x "$BEACON" ] && [ "$(id -u)" = 0 ] && command -v strace >/dev/null; then
  bdir=$(mktemp -d)
  chmod 0755 "$bdir"
  "$TOP/deploy/cloudtaser-certs" --out "$bdir/pki" --external-host broker.test --beacon-host 127.0.0.1 >/dev/null
  chmod 0755 "$bdir/pki" "$bdir/pki/beacon"
  chgrp 65534 "$bdir/pki/beacon/tls.key"
  chmod 0640 "$bdir/pki/beacon/tls.key"
  # shellcheck disable=SC2016 # expanded by the inner shell
  unshare --net --pid --fork --mount-proc bash -c '
    ip link set lo up
    strace -f -qq -e trace=capset -o "$1/strace" \
      setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+net_bind_service \
        --ambient-caps=+net_bind_service --bounding-set=-all,+net_bind_service --no-new-privs \
        "$2" --listen 127.0.0.1:443 --cert "$1/pki/beacon/tls.crt" --key "$1/pki/beacon/tls.key" \
        2>"$1/log" &
    for _ in $(seq 1 50); do grep -q "parent\] info: ready" "$1/log" && break; sleep 0.1; done
    ss -ltnH | awk "{print \$4}" >"$1/ports"
    parent=$(pgrep -o -x cloudtaser-beac)
    for p in $(pgrep -x cloudtaser-beac); do
      echo "$p $(awk "/^Uid:/{u=\$2} /^CapEff:/{e=\$2} /^CapPrm:/{r=\$2} /^CapAmb:/{a=\$2} END{print u, r, e, a}" /proc/$p/status)"
    done >"$1/procs"
    echo "$parent" >"$1/parent"
    kill -TERM "$parent"
    for _ in $(seq 1 100); do kill -0 "$parent" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$parent" 2>/dev/null || true
    wait
  ' check "$bdir" "$BEACON" || true
  parent=$(cat "$bdir/parent")
  kids=$(grep -v "^$parent " "$bdir/procs" || true)
  echo "    processes (pid uid CapPrm CapEff CapAmb): $(tr '\n' ';' <"$bdir/procs")"
  if grep -qx '127.0.0.1:443' "$bdir/ports" && grep -q "^$parent 65534 " "$bdir/procs" &&
    [ "$(wc -l <<<"$kids")" = 2 ] &&
    [ -z "$(awk '$2 != 65534 || $3 != "0000000000000000" || $4 != "0000000000000000" || $5 != "0000000000000000"' <<<"$kids")" ]; then
    pass "beacon as user 65534 with ambient CAP_NET_BIND_SERVICE binds 443; its two children hold no capability"
  else fail "beacon with the unit's capability: ports $(tr '\n' ' ' <"$bdir/ports"); log: $(tail -3 "$bdir/log")"; fi
  # setpriv's own capset calls come before it execs the beacon (its pid keeps them).
  child_capset=$(grep capset "$bdir/strace" | awk '{print $1}' | sort -u | grep -v -x "$parent" || true)
  if [ -z "$child_capset" ] && grep -q 'parent\] info: exiting' "$bdir/log"; then
    pass "no process the beacon started called capset(); SIGTERM ended it cleanly"
  else fail "capset() called by pid(s) $child_capset (parent $parent); log: $(tail -3 "$bdir/log")"; fi
  rm -rf "$bdir"
else
  echo "  note: not root, no strace or no beacon binary; skipped running the beacon with the unit's capability"
fi

# The guide's unit, pasted verbatim into /etc/systemd/system.
if [ -r "$SEED" ]; then
  sed -n '/^\[Unit\]/,/^WantedBy=multi-user.target/p' "$SEED" >"$ROOT/seed.service"
  ln -s /usr/bin/vault-bridge "$ROOT/usr/local/bin/vault-bridge"
  cp "$ROOT/seed.service" "$ROOT/etc/systemd/system/seed-vault-bridge.service"
  verify "the guide's unit, pasted, with the documented /usr/local/bin symlink" seed-vault-bridge.service
else
  echo "  note: $SEED not found; skipped the pasted-unit check"
fi

echo "check-systemd: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
