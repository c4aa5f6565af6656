#!/bin/bash
# Real-traffic test of vault-egress-lock in network namespaces this script
# creates and removes:
#
#   [broker] 10.250.1.2 ---- 10.250.1.1 [vault host] 10.250.2.1 ---- 10.250.2.2 [internet]
#                                                     fd00:ce1::1 --- fd00:ce1::2
#                                                                     10.250.2.3 (a 2nd resolver)
#
# The addresses exist only inside these namespaces; the host's own ruleset
# and interfaces are never touched (every command runs under
# `ip netns exec` / `ip -n`). Each back end gets fresh namespaces.
#
# For each back end: a realistic prior ruleset; probes before the lock (all
# answer); apply; the vault host reaches the broker port, DNS and loopback,
# and nothing else goes out or comes in (8200 included, IPv6 included); the
# policy's drop counters count the blocked probes; a second apply changes
# nothing; verify passes and notices tampering; rollback brings back the
# saved ruleset exactly (diff empty) and traffic flows again; an unconfirmed
# apply rolls itself back; a confirmed one stays.
#
# Usage: egress-lock-netns.sh [BACKEND...]   (default: iptables-legacy iptables-nft nft)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOCK=${LOCK:-$HERE/../../bridge/vault-egress-lock}
LOCK=$(cd "$(dirname "$LOCK")" && pwd)/$(basename "$LOCK")
PROBE=("${PYTHON:-python3}" "$HERE/netprobe.py")
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
  rm -rf "$WORK/state" "$WORK/dropin"
  rm -f "$WORK"/*.ready
  start_server "$NS_BR" "broker-$n" --tcp 443 --tcp 8443 --tcp 22
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
      in_vh "$v4" -A INPUT -p tcp --dport 22 -j ACCEPT
      in_vh "$v4" -N OPERATOR
      in_vh "$v4" -A OPERATOR -s 10.250.1.0/24 -j RETURN
      in_vh "$v4" -P FORWARD DROP
      in_vh "$v6" -A INPUT -p tcp --dport 22 -j ACCEPT
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

# Packets dropped by the OUTPUT policy (iptables) or the output chain's
# trailing counter (nft).
out_drops() {
  local backend=$1
  case $backend in
    nft)
      in_vh nft list chain inet vault_egress_lock output |
        sed -nE 's/.*counter packets ([0-9]+) bytes.*dropped by policy.*/\1/p' ;;
    *)
      in_vh "$backend" -L OUTPUT -n -v -x | sed -nE '1s/.*policy DROP ([0-9]+) packets.*/\1/p' ;;
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

not_applied() { ! lock verify >/dev/null 2>&1 && [ ! -f "$WORK/state/config" ]; }
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
    step "tamper" in_vh "$backend" -I OUTPUT -p tcp --dport 80 -j ACCEPT
  fi
  if lock verify >/dev/null 2>&1; then fail "verify misses an added rule"
  else pass "verify notices an added rule"; fi
  step "re-apply" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 0
  expect "re-apply repairs it" lock verify

  expect "rollback succeeds" lock rollback
  dump "$backend" >"$WORK/after"
  expect "after rollback the saved ruleset is back (diff empty)" diff -u "$WORK/before" "$WORK/after"
  expect "after rollback every probe answers again" all_open

  # --dns narrows DNS to the given resolver.
  step "apply --dns" lock apply --broker 10.250.1.2 --dns 10.250.2.2 --backend "$backend" --confirm-timeout 0
  expect "--dns: the named resolver answers, another is blocked" \
    probe_vh reach:udp:10.250.2.2:53 blocked:udp:10.250.2.3:53 reach:tcp:10.250.1.2:443
  step "rollback" lock rollback

  # --allow adds one destination port, not the whole host.
  step "apply --allow" lock apply --broker 10.250.1.2 --allow 10.250.2.0/24:80 --backend "$backend" --confirm-timeout 0
  expect "--allow: the extra CIDR:PORT passes, other ports stay blocked" \
    probe_vh reach:tcp:10.250.2.2:80 blocked:tcp:10.250.2.2:443
  step "rollback" lock rollback

  # Unconfirmed: the detached watchdog restores the saved ruleset.
  step "apply --confirm-timeout 1" lock apply --broker 10.250.1.2:443 --backend "$backend" --confirm-timeout 1
  if wait_for 100 not_applied; then
    dump "$backend" >"$WORK/after-timeout"
    expect "unconfirmed apply rolls back by itself (diff empty)" \
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
  step "rollback" lock rollback
  dump "$backend" >"$WORK/after"
  expect "final rollback: diff empty" diff -u "$WORK/before" "$WORK/after"
  drop_topology
}

n=0
for b in "${BACKENDS[@]}"; do
  n=$((n + 1))
  run_backend "$b" "$n"
done
echo "egress-lock: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
