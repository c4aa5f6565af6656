#!/bin/bash
# Real-traffic test of vault-egress-lock in network namespaces this script
# creates and removes:
#
#   [broker] 10.250.1.2 ---- 10.250.1.1 [vault host] 10.250.2.1 ---- 10.250.2.2 [internet]
#            10.250.1.3 (a 2nd cluster's broker)      fd00:ce1::1 --- fd00:ce1::2
#            10.250.1.4 (a 3rd address)                               10.250.2.3 (a 2nd resolver)
#
# The addresses exist only inside these namespaces; the host's own ruleset
# and interfaces are never touched (every command runs under
# `ip netns exec` / `ip -n`). Each back end gets fresh namespaces.
#
# For each back end: a realistic prior ruleset; probes before the lock (all
# answer); apply; the vault host reaches the broker port, DNS and loopback,
# and nothing else goes out or comes in (8200 included, IPv6 included); the
# policy's drop counters count the blocked probes; a second apply changes
# nothing; verify passes and notices tampering; remove brings back the
# prior ruleset exactly (diff empty) and traffic flows again; two --broker
# (two clusters) allow exactly both brokers, each on its own port, and a
# third address is refused; --add adds a cluster and keeps the others, each
# with a drop-in of its own; an apply without --add replaces the list and
# takes away the drop-ins of the clusters it no longer names; an unconfirmed
# first apply rolls itself back to no lock; a confirmed one stays; --beacon
# (beacon relay mode) allows exactly the beacon, over IPv4 or IPv6, alone or
# beside another cluster's broker.
#
# Then what must survive a reboot and a bad change: an unconfirmed re-apply
# rolls back to the last confirmed lock (not to an open host) and leaves a
# rule another tool added meanwhile; verify fails with one line after a
# flush; a simulated reboot (flush everything, then the boot unit's own
# ExecStart line) brings the lock back, also when an apply was pending;
# a damaged record makes the boot restore fail closed.
#
# Usage: egress-lock-netns.sh [BACKEND...]   (default: iptables-legacy iptables-nft nft)
# Several back ends run at once, one process each; EGRESS_LOCK_SERIAL=1 runs
# them one after another in this process.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOCK=${LOCK:-$HERE/../../bridge/vault-egress-lock}
LOCK=$(cd "$(dirname "$LOCK")" && pwd)/$(basename "$LOCK")
PROBE=("${PYTHON:-python3}" "$HERE/netprobe.py")
UNIT=$HERE/../../systemd/vault-egress-lock-restore.service
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(iptables-legacy iptables-nft nft)

[ "$(id -u)" = 0 ] || { echo "egress-lock-netns: needs root (network namespaces)" >&2; exit 1; }

TAG="ctvh$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NS_VH="" NS_BR="" NS_IN=""
SERVER_PIDS=()
PASSED=0 FAILED=0

cleanup() {
  local pid ns
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Watchdogs started by apply run in the vault-host namespace; end them by
  # the pid they recorded before the namespace goes.
  if [ -n "$NS_VH" ] && [ -f "$WORK/state/watchdog.pid" ]; then
    kill "$(cat "$WORK/state/watchdog.pid")" 2>/dev/null || true
  fi
  for ns in "$NS_VH" "$NS_BR" "$NS_IN"; do
    if [ -n "$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "  PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }

in_vh() { ip netns exec "$NS_VH" "$@"; }
in_br() { ip netns exec "$NS_BR" "$@"; }
in_in() { ip netns exec "$NS_IN" "$@"; }
lock() {
  VAULT_EGRESS_LOCK_STATE_DIR=$WORK/state VAULT_EGRESS_LOCK_DROPIN_DIR=$WORK/dropin \
    VAULT_EGRESS_LOCK_RESOLV_CONF=$WORK/resolv.conf ip netns exec "$NS_VH" "$LOCK" "$@"
}

# Poll for a condition, bounded: up to $1 tries, 0.1 s apart.
wait_for() {
  local tries=$1 i
  shift
  for ((i = 0; i < tries; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_server() {
  local ns=$1 name=$2
  shift 2
  ip netns exec "$ns" "${PROBE[@]}" serve --ready-file "$WORK/$name.ready" --lifetime 600 "$@" \
    >/dev/null 2>&1 &
  SERVER_PIDS+=($!)
  wait_for 100 test -f "$WORK/$name.ready" || { echo "server $name did not start" >&2; exit 1; }
}

make_topology() {
  local n=$1
  NS_VH="$TAG-$n-vault" NS_BR="$TAG-$n-broker" NS_IN="$TAG-$n-inet"
  ip netns add "$NS_VH"
  ip netns add "$NS_BR"
  ip netns add "$NS_IN"
  # veths are created inside the vault-host namespace and their peers moved
  # straight into the others: no interface ever exists in the host namespace.
  ip -n "$NS_VH" link add vb type veth peer name bv netns "$NS_BR"
  ip -n "$NS_VH" link add vi type veth peer name iv netns "$NS_IN"
  ip -n "$NS_VH" addr add 10.250.1.1/24 dev vb
  ip -n "$NS_BR" addr add 10.250.1.2/24 dev bv
  ip -n "$NS_BR" addr add 10.250.1.3/24 dev bv
  ip -n "$NS_BR" addr add 10.250.1.4/24 dev bv
  ip -n "$NS_VH" addr add 10.250.2.1/24 dev vi
  ip -n "$NS_IN" addr add 10.250.2.2/24 dev iv
  ip -n "$NS_IN" addr add 10.250.2.3/24 dev iv
  ip -n "$NS_VH" addr add fd00:ce1::1/64 dev vi nodad
  ip -n "$NS_IN" addr add fd00:ce1::2/64 dev iv nodad
  local ns
  for ns in "$NS_VH" "$NS_BR" "$NS_IN"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_VH" link set vb up
  ip -n "$NS_VH" link set vi up
  ip -n "$NS_BR" link set bv up
  ip -n "$NS_IN" link set iv up
  echo "nameserver 10.250.2.2" >"$WORK/resolv.conf"
  rm -rf "$WORK/state" "$WORK/dropin" "$WORK"/vault-bridge@*.service.d
  rm -f "$WORK"/*.ready
  start_server "$NS_BR" "broker-$n" --tcp 443 --tcp 8443 --tcp 9443 --tcp 22
  start_server "$NS_IN" "inet-$n" --tcp 443 --tcp 80 --udp 53 --udp 123
  start_server "$NS_VH" "vault-$n" --tcp 8200 --tcp 22
}

drop_topology() {
  local pid ns
  if [ -f "$WORK/state/watchdog.pid" ]; then
    kill "$(cat "$WORK/state/watchdog.pid")" 2>/dev/null || true
  fi
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
  for ns in "$NS_VH" "$NS_BR" "$NS_IN"; do ip netns del "$ns"; done
  NS_VH="" NS_BR="" NS_IN=""
}

# A ruleset an operator might already have: it must come back byte for byte.
prior_ruleset() {
  local backend=$1
  case $backend in
    nft)
      in_vh nft -f - <<'EOF'
table inet operator {
	chain input {
		type filter hook input priority filter + 10; policy accept;
		tcp dport 22 accept
	}
}
EOF
      ;;
    *)
      local v4=${backend/iptables/iptables} v6=${backend/iptables/ip6tables}
      in_vh "$v4" -w 5 -A INPUT -p tcp --dport 22 -j ACCEPT
      in_vh "$v4" -w 5 -N OPERATOR
      in_vh "$v4" -w 5 -A OPERATOR -s 10.250.1.0/24 -j RETURN
      in_vh "$v4" -w 5 -P FORWARD DROP
      in_vh "$v6" -w 5 -A INPUT -p tcp --dport 22 -j ACCEPT
      ;;
  esac
}

# The whole ruleset of the back end, without counters and timestamps.
dump() {
  local backend=$1
  case $backend in
    nft) in_vh nft list ruleset ;;
    *)
      in_vh "$backend-save" | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]$//'
      in_vh "${backend/iptables/ip6tables}-save" | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]$//'
      ;;
  esac
}

# Packets dropped by the lock's output chain: its trailing DROP rule
# (iptables) or trailing counter (nft).
out_drops() {
  local backend=$1
  case $backend in
    nft)
      in_vh nft list chain inet vault_egress_lock output |
        sed -nE 's/.*counter packets ([0-9]+) bytes.*dropped by policy.*/\1/p' ;;
    *)
      { in_vh "$backend" -w 5 -L VAULT-EGRESS-OUT -n -v -x || true; } | awk '$3 == "DROP" { print $1 }' ;;
  esac
}

probe_vh() { in_vh "${PROBE[@]}" check --label "vault->" "$@"; }
probe_br() { in_br "${PROBE[@]}" check --label "broker->" "$@"; }
probe_in() { in_in "${PROBE[@]}" check --label "inet->" "$@"; }

# A set-up step: report it only when it fails, never abort the run.
step() {
  local what=$1
  shift
  if ! "$@" >"$WORK/step.log" 2>&1; then
    fail "$what"
    sed 's/^/    /' "$WORK/step.log"
  fi
}

# A checked behaviour: PASS/FAIL, with the command's output shown on failure.
expect() {
  local what=$1
  shift
  if "$@" >"$WORK/expect.log" 2>&1; then pass "$what"
  else
    fail "$what"
    sed 's/^/    /' "$WORK/expect.log"
  fi
}

all_open() {
  probe_vh reach:tcp:10.250.1.2:443 reach:tcp:10.250.1.2:8443 reach:tcp:10.250.2.2:443 \
    reach:udp:10.250.2.2:53 reach:udp:10.250.2.2:123 reach:tcp:127.0.0.1:8200 \
    "reach:tcp:[fd00:ce1::2]:443" &&
    probe_br reach:tcp:10.250.1.1:8200 reach:tcp:10.250.1.1:22 &&
    probe_in reach:tcp:10.250.2.1:8200 "reach:tcp:[fd00:ce1::1]:8200"
}

locked() {
  probe_vh reach:tcp:10.250.1.2:443 reach:udp:10.250.2.2:53 reach:tcp:127.0.0.1:8200 \
    "reach:tcp:[::1]:8200" \
    blocked:tcp:10.250.1.2:8443 blocked:tcp:10.250.1.2:22 blocked:tcp:10.250.2.2:443 \
    blocked:tcp:10.250.2.2:80 blocked:udp:10.250.2.2:123 "blocked:tcp:[fd00:ce1::2]:443" \
    "blocked:udp:[fd00:ce1::2]:123" &&
    probe_br blocked:tcp:10.250.1.1:8200 blocked:tcp:10.250.1.1:22 &&
    probe_in blocked:tcp:10.250.2.1:8200 blocked:tcp:10.250.2.1:22 \
      "blocked:tcp:[fd00:ce1::1]:8200"
}

not_applied() { ! lock verify >/dev/null 2>&1 && [ ! -f "$WORK/state/current.conf" ]; }
settled() { [ ! -f "$WORK/state/pending" ] && watchdog_gone; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# What a reboot leaves of the firewall: nothing. The prior ruleset goes too,
# as it would on a host that does not persist it.
flush_all() {
  local backend=$1
  case $backend in
    nft | iptables-nft) in_vh nft flush ruleset ;;
    *)
      local c
      for c in "$backend" "${backend/iptables/ip6tables}"; do
        in_vh "$c" -w 5 -F
        in_vh "$c" -w 5 -X
        in_vh "$c" -w 5 -P INPUT ACCEPT
        in_vh "$c" -w 5 -P FORWARD ACCEPT
        in_vh "$c" -w 5 -P OUTPUT ACCEPT
      done ;;
  esac
}

# The boot unit's ExecStart line, as systemd would run it, with the helper
# from this checkout in place of the packaged /usr/sbin one.
boot_unit() {
  local -a argv
  read -r -a argv <<<"$(sed -n 's/^ExecStart=//p' "$UNIT")"
  if [ "${argv[0]:-}" != /usr/sbin/vault-egress-lock ]; then
    echo "unexpected ExecStart in $UNIT: ${argv[*]}" >&2
    return 1
  fi
  lock "${argv[@]:1}"
}

# Another tool's rule, added while the lock is in place; it must outlive the
# lock's rollbacks. It matches nothing the probes send.
other_tool_adds() {
  case $1 in
    nft)
      in_vh nft add table inet othertool
      in_vh nft add chain inet othertool out '{ type filter hook output priority 10; policy accept; }'
      in_vh nft add rule inet othertool out tcp dport 9999 accept ;;
    *) in_vh "$1" -w 5 -A OUTPUT -p tcp --dport 9999 -j ACCEPT ;;
  esac
}
other_rule_present() {
  case $1 in
    # Read whole, then matched: grep -q would quit early and, under
    # pipefail, nft's SIGPIPE would turn a match into a failure.
    nft) grep -q 'tcp dport 9999 accept' <<<"$(in_vh nft list chain inet othertool out)" ;;
    *) in_vh "$1" -w 5 -C OUTPUT -p tcp --dport 9999 -j ACCEPT ;;
  esac
}

verify_fails_with_one_line() {
  local rc=0
  lock verify >/dev/null 2>"$WORK/verify.err" || rc=$?
  cat "$WORK/verify.err"
  [ "$rc" = 1 ] && [ "$(wc -l <"$WORK/verify.err")" = 1 ] && grep -q 'drift' "$WORK/verify.err"
}

lock_first_other_behind() {
  lock verify && probe_vh blocked:tcp:10.250.2.2:80 &&
    in_vh "$1" -w 5 -C OUTPUT -p tcp --dport 80 -j ACCEPT
}

flush_then_verify_fails() { flush_all "$1" && verify_fails_with_one_line; }

boot_unit_fails_closed() {
  local rc=0
  boot_unit 2>"$WORK/restore.err" || rc=$?
  cat "$WORK/restore.err"
  [ "$rc" = 1 ] && [ "$(wc -l <"$WORK/restore.err")" = 1 ] &&
    grep -q 'failing closed' "$WORK/restore.err"
}

# After a failed restore: nothing leaves but loopback, not even to the broker.
lockdown() {
  probe_vh reach:tcp:127.0.0.1:8200 blocked:tcp:10.250.1.2:443 blocked:udp:10.250.2.2:53 \
    blocked:tcp:10.250.2.2:443 "blocked:tcp:[fd00:ce1::2]:443" &&
    probe_br blocked:tcp:10.250.1.1:8200
}
# The IPAddressAllow= lines of vault-bridge.service's drop-in, then of
# vault-bridge@eks's and (when given) vault-bridge@aks's.
both_dropins() {
  grep -qx -- "$1" "$WORK/dropin/egress-lock.conf" &&
    grep -qx -- "$2" "$WORK/vault-bridge@eks.service.d/egress-lock.conf" &&
    { [ $# -lt 3 ] || grep -qx -- "$3" "$WORK/vault-bridge@aks.service.d/egress-lock.conf"; } &&
    [ "$(grep -c '^IPAddressAllow=' "$WORK/vault-bridge@eks.service.d/egress-lock.conf")" = 1 ]
}
status_lists_brokers() {
  local out
  out=$(lock status)
  grep -qx 'broker: 10.250.1.2:443 -> 10.250.1.2 port 443' <<<"$out" &&
    grep -qx 'broker (vault-bridge@eks): 10.250.1.3:8443 -> 10.250.1.3 port 8443' <<<"$out" &&
    grep -qx 'broker (vault-bridge@aks): 10.250.1.4:9443 -> 10.250.1.4 port 9443' <<<"$out"
}
dropins_gone() {
  local n
  for n in "$@"; do [ ! -e "$WORK/vault-bridge@$n.service.d/egress-lock.conf" ] || return 1; done
}
watchdog_gone() { ! kill -0 "$(cat "$WORK/state/watchdog.pid")" 2>/dev/null; }

run_backend() {
  local backend=$1 n=$2
  echo "== back end $backend"
  make_topology "$n"
  prior_ruleset "$backend"
  dump "$backend" >"$WORK/before"

  expect "before the lock every probe answers" all_open

  step "apply --dry-run" lock apply --broker 10.250.1.2:443 --backend "$backend" --dry-run
  dump "$backend" >"$WORK/after-dry"
  expect "--dry-run changes nothing" diff -u "$WORK/before" "$WORK/after-dry"

  expect "apply succeeds" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  local drops0
  drops0=$(out_drops "$backend")
  expect "locked: broker:443, DNS and loopback pass; all else out and all in is blocked" locked
  local drops1
  drops1=$(out_drops "$backend")
  if [ -n "$drops1" ] && [ "$drops1" -gt "${drops0:-0}" ]; then
    pass "the OUTPUT drop counter counts the blocked probes ($drops0 -> $drops1)"
  else
    fail "the OUTPUT drop counter did not move (${drops0:-?} -> ${drops1:-?})"
  fi
  expect "the unit drop-in allows the broker and the resolver" \
    grep -qx 'IPAddressAllow=10.250.1.2 10.250.2.2' "$WORK/dropin/egress-lock.conf"

  dump "$backend" | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/' >"$WORK/applied1"
  step "second apply" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  dump "$backend" | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/' >"$WORK/applied2"
  expect "applying twice changes nothing" diff -u "$WORK/applied1" "$WORK/applied2"

  expect "verify passes on the applied policy" lock verify
  if [ "$backend" = nft ]; then
    step "tamper" in_vh nft insert rule inet vault_egress_lock output tcp dport 80 accept
  else
    step "tamper" in_vh "$backend" -w 5 -I VAULT-EGRESS-OUT -p tcp --dport 80 -j ACCEPT
  fi
  if lock verify >/dev/null 2>&1; then fail "verify misses an added rule"
  else pass "verify notices an added rule"; fi
  step "re-apply" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  expect "re-apply repairs it" lock verify
  if [ "$backend" != nft ]; then
    # A rule above the jump to the lock's chain sees packets first.
    step "a rule above the lock" in_vh "$backend" -w 5 -I OUTPUT -p tcp --dport 80 -j ACCEPT
    if lock verify >/dev/null 2>&1; then fail "verify misses a rule above the jump to the lock"
    else pass "verify notices a rule above the jump to the lock"; fi
    step "re-apply" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
    expect "re-apply puts the lock first again; the other rule stays, behind it" \
      lock_first_other_behind "$backend"
    step "delete the rule" in_vh "$backend" -w 5 -D OUTPUT -p tcp --dport 80 -j ACCEPT
  fi

  expect "remove succeeds" lock remove
  dump "$backend" >"$WORK/after"
  expect "after remove the prior ruleset is back (diff empty)" diff -u "$WORK/before" "$WORK/after"
  expect "after remove every probe answers again" all_open

  # Two clusters on one vault host: the single unit's broker and cluster
  # eks's, each on its own port. Exactly both pass; a third address, and
  # each broker's address on the other's port, are refused.
  step "apply two brokers" lock apply --broker 10.250.1.2:443 --broker eks=10.250.1.3:8443 \
    --backend "$backend" --confirm-timeout 0
  expect "two --broker: both brokers pass, each on its own port; a third address is refused" \
    probe_vh reach:tcp:10.250.1.2:443 reach:tcp:10.250.1.3:8443 \
      blocked:tcp:10.250.1.4:443 blocked:tcp:10.250.1.4:8443 blocked:tcp:10.250.1.4:9443 \
      blocked:tcp:10.250.1.2:8443 blocked:tcp:10.250.1.3:443 blocked:tcp:10.250.2.2:443
  expect "two --broker: each unit's drop-in allows its own broker only" \
    both_dropins 'IPAddressAllow=10.250.1.2 10.250.2.2' 'IPAddressAllow=10.250.1.3 10.250.2.2'
  expect "two --broker: verify passes" lock verify
  # A third cluster, added without naming the other two (nor the back end).
  step "apply --add a third cluster" lock apply --add --broker aks=10.250.1.4:9443 --confirm-timeout 0
  expect "--add: the new cluster's broker passes and the other two still do" \
    probe_vh reach:tcp:10.250.1.2:443 reach:tcp:10.250.1.3:8443 reach:tcp:10.250.1.4:9443 \
      blocked:tcp:10.250.1.4:443 blocked:tcp:10.250.1.3:9443 blocked:tcp:10.250.2.2:443
  expect "--add: the new cluster gets its drop-in; the others keep theirs" \
    both_dropins 'IPAddressAllow=10.250.1.2 10.250.2.2' 'IPAddressAllow=10.250.1.3 10.250.2.2' \
      'IPAddressAllow=10.250.1.4 10.250.2.2'
  expect "status lists every broker with its cluster" status_lists_brokers
  # Without --add the brokers given are the whole list.
  step "apply one broker again" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  expect "an apply without --add replaces the list: the clusters it does not name are refused again" \
    probe_vh reach:tcp:10.250.1.2:443 blocked:tcp:10.250.1.3:8443 blocked:tcp:10.250.1.4:9443
  expect "... and their drop-ins are gone" dropins_gone eks aks
  step "remove" lock remove
  dump "$backend" >"$WORK/after"
  expect "remove after the several-cluster lock: diff empty" diff -u "$WORK/before" "$WORK/after"

  # Beacon relay mode: the bridge dials a beacon, not the broker. --beacon
  # alone allows exactly the beacon on 443 (and DNS): the broker, another
  # address on 443 and the beacon on other ports are refused, nothing comes in.
  step "apply --beacon" lock apply --beacon 10.250.2.3 --backend "$backend" --confirm-timeout 0
  expect "--beacon: the beacon on 443 and DNS pass; the broker, other hosts and ports are blocked, inbound too" \
    probe_vh reach:tcp:10.250.2.3:443 reach:udp:10.250.2.2:53 reach:tcp:127.0.0.1:8200 \
      blocked:tcp:10.250.2.2:443 blocked:tcp:10.250.2.3:80 blocked:udp:10.250.2.3:123 \
      blocked:tcp:10.250.1.2:443 blocked:tcp:10.250.1.2:8443 "blocked:tcp:[fd00:ce1::2]:443"
  expect "--beacon: nothing gets in" \
    probe_in blocked:tcp:10.250.2.1:8200 blocked:tcp:10.250.2.1:22 "blocked:tcp:[fd00:ce1::1]:8200"
  expect "--beacon: the unit drop-in allows the beacon and the resolver" \
    grep -qx 'IPAddressAllow=10.250.2.3 10.250.2.2' "$WORK/dropin/egress-lock.conf"
  expect "--beacon: verify passes" lock verify
  step "remove" lock remove
  # An IPv6 beacon on its own port passes; the same host over IPv4 does not.
  step "apply --beacon [v6]:port" lock apply --beacon '[fd00:ce1::2]:443' --backend "$backend" --confirm-timeout 0
  expect "--beacon over IPv6: that beacon passes, its IPv4 address and other ports do not" \
    probe_vh "reach:tcp:[fd00:ce1::2]:443" "blocked:tcp:[fd00:ce1::2]:80" blocked:tcp:10.250.2.2:443 \
      blocked:tcp:10.250.1.2:443
  step "remove" lock remove
  # Beside a reverse-connect cluster: the broker and the other cluster's
  # beacon pass, each for its own unit.
  step "apply --broker and --beacon" lock apply --broker 10.250.1.2:443 --beacon gke=10.250.2.3 \
    --backend "$backend" --confirm-timeout 0
  expect "--broker with --beacon: both pass, each on its port; other addresses and ports are refused" \
    probe_vh reach:tcp:10.250.1.2:443 reach:tcp:10.250.2.3:443 blocked:tcp:10.250.2.2:443 \
      blocked:tcp:10.250.1.3:443 blocked:tcp:10.250.1.2:8443 blocked:tcp:10.250.2.3:80
  expect "--broker with --beacon: each unit's drop-in allows its own endpoint only" \
    grep -qx 'IPAddressAllow=10.250.1.2 10.250.2.2' "$WORK/dropin/egress-lock.conf"
  expect "... and the beacon cluster's unit its beacon" \
    grep -qx 'IPAddressAllow=10.250.2.3 10.250.2.2' "$WORK/vault-bridge@gke.service.d/egress-lock.conf"
  expect "status names the beacon as a beacon" \
    grep -qx 'beacon (vault-bridge@gke): 10.250.2.3 -> 10.250.2.3 port 443' <(lock status)
  step "remove" lock remove
  dump "$backend" >"$WORK/after"
  expect "remove after the beacon locks: diff empty" diff -u "$WORK/before" "$WORK/after"

  # --dns narrows DNS to the given resolver.
  step "apply --dns" lock apply --broker 10.250.1.2 --dns 10.250.2.2 --backend "$backend" --confirm-timeout 0
  expect "--dns: the named resolver answers, another is blocked" \
    probe_vh reach:udp:10.250.2.2:53 blocked:udp:10.250.2.3:53 reach:tcp:10.250.1.2:443
  step "remove" lock remove

  # --allow adds one destination port, not the whole host.
  step "apply --allow" lock apply --broker 10.250.1.2 --allow 10.250.2.0/24:80 --backend "$backend" --confirm-timeout 0
  expect "--allow: the extra CIDR:PORT passes, other ports stay blocked" \
    probe_vh reach:tcp:10.250.2.2:80 blocked:tcp:10.250.2.2:443
  step "remove" lock remove

  # Unconfirmed, with no lock confirmed before: back to no lock.
  step "apply --confirm-timeout 1" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 1
  if wait_for 100 not_applied; then
    dump "$backend" >"$WORK/after-timeout"
    expect "an unconfirmed first apply rolls back by itself to no lock (diff empty)" \
      diff -u "$WORK/before" "$WORK/after-timeout"
  else
    fail "unconfirmed apply was still in place after 10 s"
  fi

  # Confirmed: the watchdog fires and leaves the rules alone.
  step "apply --confirm-timeout 1" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 1
  step "confirm" lock confirm
  if wait_for 100 watchdog_gone; then
    expect "confirmed apply stays after the timeout" lock verify
  else
    fail "the watchdog did not finish within 10 s"
  fi
  step "remove" lock remove
  dump "$backend" >"$WORK/after"
  expect "remove after a confirmed apply: diff empty" diff -u "$WORK/before" "$WORK/after"

  # A confirmed lock, then a re-apply that also opens port 80 and is never
  # confirmed: the watchdog goes back to the confirmed lock, not to an open
  # host, and only the lock's own chains/table change.
  step "apply (confirmed)" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  step "re-apply with --allow, unconfirmed" lock apply --broker 10.250.1.2:443 \
    --allow 10.250.2.0/24:80 --backend "$backend" --confirm-timeout 2
  expect "the unconfirmed re-apply is live (port 80 passes)" probe_vh reach:tcp:10.250.2.2:80
  step "another tool adds a rule" other_tool_adds "$backend"
  if wait_for 300 settled; then
    expect "an unconfirmed re-apply rolls back to the last confirmed lock, not to an open host" locked
    expect "after that rollback verify passes" lock verify
    expect "a rule another tool added after apply survives the rollback" other_rule_present "$backend"
    expect "the watchdog's log says where it rolled back to" \
      grep -q 'not confirmed within 2s: rolled back to the last confirmed lock' "$WORK/state/watchdog.log"
  else
    fail "the unconfirmed re-apply was still pending after 30 s"
  fi

  # Two unconfirmed applies in a row: the second's rollback still goes to
  # the confirmed lock, not to the first unconfirmed one.
  rm -f "$WORK/state/watchdog.pid"
  step "unconfirmed apply opening port 80" lock apply --broker 10.250.1.2:443 \
    --allow 10.250.2.0/24:80 --backend "$backend" --confirm-timeout 3
  wait_for 100 test -s "$WORK/state/watchdog.pid" || fail "the first watchdog did not start"
  local first_watchdog
  first_watchdog=$(cat "$WORK/state/watchdog.pid" 2>/dev/null || echo 0)
  step "unconfirmed apply opening port 443 to the internet host" lock apply --broker 10.250.1.2:443 \
    --allow 10.250.2.0/24:443 --backend "$backend" --confirm-timeout 2
  if wait_for 300 settled && wait_for 100 pid_gone "$first_watchdog"; then
    expect "two unconfirmed applies in a row roll back to the confirmed lock, not to the first" locked
  else
    fail "the two unconfirmed applies were still pending after 40 s"
  fi

  expect "verify exits 1 with one line when the lock's rules are flushed" \
    flush_then_verify_fails "$backend"
  expect "a simulated reboot (flush everything, then the boot unit's ExecStart) restores the lock" boot_unit
  expect "after the simulated reboot the broker passes and everything else is blocked" locked
  expect "after the simulated reboot verify passes" lock verify

  # A reboot while a re-apply waits for confirmation: its watchdog dies with
  # the host, so the boot unit must bring back the confirmed lock.
  rm -f "$WORK/state/watchdog.pid"
  step "re-apply with --allow, unconfirmed, long timeout" lock apply --broker 10.250.1.2:443 \
    --allow 10.250.2.0/24:80 --backend "$backend" --confirm-timeout 600
  wait_for 100 test -s "$WORK/state/watchdog.pid" || fail "the watchdog did not start"
  step "the watchdog dies with the host" kill "$(cat "$WORK/state/watchdog.pid")"
  wait_for 100 watchdog_gone || fail "the watchdog did not end"
  step "flush everything" flush_all "$backend"
  expect "a reboot during an unconfirmed apply restores the last confirmed lock" boot_unit
  expect "... which blocks what the unconfirmed apply opened" locked

  # A damaged record (here: the confirmed rules truncated) must not boot
  # into an open host.
  local rec=confirmed.v4
  if [ "$backend" = nft ]; then rec=confirmed.nft; fi
  : >"$WORK/state/$rec"
  step "flush everything" flush_all "$backend"
  expect "a boot restore that cannot load the recorded lock exits 1 with one line and fails closed" \
    boot_unit_fails_closed
  expect "the fail-closed lockdown passes loopback only, not even the broker" lockdown
  if lock verify >/dev/null 2>&1; then fail "verify passes on the fail-closed lockdown"
  else pass "verify does not pass on the fail-closed lockdown"; fi
  step "remove" lock remove
  expect "remove takes the lockdown off" probe_vh reach:tcp:10.250.1.2:443 reach:tcp:10.250.2.2:443

  # The first boot after an upgrade from the helper that changed the
  # built-in chains: its lock was never persisted, so there is nothing this
  # version can restore, and the host must not come up open.
  printf 'BACKEND=%s\nBROKER_SPEC=10.250.1.2:443\n' "$backend" >"$WORK/state/config"
  expect "a boot over an older version's state exits 1 with one line and fails closed" \
    boot_unit_fails_closed
  expect "... loopback only" lockdown
  rm -f "$WORK/state/config"
  step "remove" lock remove
  drop_topology
}

# Several back ends: one run of this script each, at once. Each has its own
# namespaces, work directory and state, and its time is mostly waiting (probes
# that must time out, confirm timeouts), so together they take about as long
# as one. Their output is printed in order when all have ended.
if [ ${#BACKENDS[@]} -gt 1 ] && [ "${EGRESS_LOCK_SERIAL:-0}" != 1 ]; then
  pids=() summary='^egress-lock: [0-9]+ passed, [0-9]+ failed$'
  for b in "${BACKENDS[@]}"; do
    bash "$0" "$b" >"$WORK/run-$b.log" 2>&1 &
    pids+=($!)
  done
  i=0
  for b in "${BACKENDS[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    i=$((i + 1))
    grep -Ev "$summary" "$WORK/run-$b.log" || true
    line=$(grep -E "$summary" "$WORK/run-$b.log" | tail -1 || true)
    if [ -z "$line" ]; then
      fail "back end $b ended (exit $rc) without its summary line"
      continue
    fi
    read -r _ p _ f _ <<<"$line"
    PASSED=$((PASSED + p)) FAILED=$((FAILED + f))
    [ "$rc" = 0 ] || [ "$f" != 0 ] || fail "back end $b exited $rc with no failed check"
  done
else
  n=0
  for b in "${BACKENDS[@]}"; do
    n=$((n + 1))
    run_backend "$b" "$n"
  done
fi
echo "egress-lock: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
