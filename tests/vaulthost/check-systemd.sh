#!/bin/bash
# The packaged unit: `systemd-analyze verify` says nothing, the exposure
# score is at most 1.5, its ExecStart expands (with the shipped environment
# file) to exactly the guide's command line, nothing in it stops the exec of
# the forwarding executable, and the guide's own unit text, pasted as is,
# verifies too once /usr/local/bin/vault-bridge exists.
#
# Usage: check-systemd.sh [BRIDGE_BINARY]
# Without a built bridge the verify steps use an empty executable in its
# place (verify only checks that the file exists and is executable) and say so.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$HERE/../..
SEED=${SEED:-$TOP/../shared/seed/reverse-connect-architecture.txt}
BIN=${1:-}
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

score_out=$(systemd-analyze security --offline=yes --no-pager --root="$ROOT" vault-bridge.service 2>&1) || true
score=$(sed -nE 's/.*Overall exposure level for vault-bridge.service: ([0-9.]+).*/\1/p' <<<"$score_out")
if [ -z "$score" ]; then
  fail "no exposure score from systemd-analyze security --offline=yes"
  echo "$score_out" | tail -5
else
  echo "  exposure score (systemd-analyze security --offline=yes): $score"
  grep '^✗' <<<"$score_out" | sed 's/^/    /' || true
  if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    pass "exposure $score <= $MAX_EXPOSURE"
  else
    fail "exposure $score > $MAX_EXPOSURE"
  fi
fi

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
# (/usr/libexec/cloudtaser/vault-bridge-forward): nothing in the unit may
# stop an exec there. No path setting makes /usr non-executable or hidden
# (ProtectSystem=strict only makes it read-only), and the system call filter,
# computed as systemd does (the first line an allowlist, then ~ removes and
# a plain line adds back), keeps execve and execveat.
unit="$ROOT/etc/systemd/system/vault-bridge.service"
blocking=$(grep -E '^(NoExecPaths|ExecPaths|RootDirectory|RootImage|TemporaryFileSystem)=' "$unit" || true)
blocking+=$(sed -n 's/^InaccessiblePaths=//p' "$unit" | tr ' ' '\n' | sed 's/^-//' |
  grep -E '^/(usr(/libexec(/cloudtaser)?|/bin)?)?/?$' || true)
if [ -z "$blocking" ]; then pass "no path setting hides /usr/libexec/cloudtaser or makes it non-executable"
else fail "the unit may stop the exec of the forwarding executable: $blocking"; fi
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
allowed=""
first=yes
while IFS= read -r line; do
  v=${line#SystemCallFilter=}
  case $first:$v in
    yes:~*) fail "the first SystemCallFilter= line is a denylist; this check expects an allowlist"; break ;;
    yes:*) allowed=$(expand_filter "$v" | sort -u) ;;
    no:~*) allowed=$(comm -23 <(echo "$allowed") <(expand_filter "${v#\~}" | sort -u)) ;;
    no:*) allowed=$( (echo "$allowed"; expand_filter "$v") | sort -u) ;;
  esac
  first=no
done < <(grep '^SystemCallFilter=' "$unit")
# The parent's own calls the unit must keep: exec of the children, and the data channel's
# sealed memfd (shared/ipc/shm_ring.cc: memfd_create, ftruncate, fcntl F_ADD_SEALS), and the thread the
# broker's name is looked up on (shared/os/resolver.cc: clone3, or clone on older libcs).
missing=""
for c in execve execveat memfd_create ftruncate fcntl clone clone3 eventfd2; do
  grep -qx "$c" <<<"$allowed" || missing+=" $c"
done
if [ -z "$missing" ]; then
  pass "the unit's system call filter keeps exec, the data channel's memfd calls and the lookup thread's ($(wc -l <<<"$allowed") calls allowed)"
else fail "the unit's system call filter drops:$missing"; fi

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
