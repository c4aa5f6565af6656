#!/bin/bash
# vault-egress-lock without touching any firewall: the dry run prints the
# reverse-connect guide's iptables rules exactly, in the lock's own chains
# (the guide's lines are read from the seed document itself), and bad
# arguments exit 2 with one message.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOCK=${LOCK:-$HERE/../../bridge/vault-egress-lock}
SEED=${SEED:-$HERE/../../../shared/seed/reverse-connect-architecture.txt}
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "  PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The guide's firewall block, <broker-ip> filled in, comments dropped.
if [ -r "$SEED" ]; then
  sed -n '/^iptables -P INPUT DROP/,/^iptables -A OUTPUT -m state/p' "$SEED" |
    grep '^iptables ' | sed -e 's/ *#.*$//' -e 's/<broker-ip>/203.0.113.10/' >"$TMP/seed"
else
  # Without the guidance folder beside the checkout, the guide's lines as
  # published (kept in step with the seed by the test above when present).
  cat >"$TMP/seed" <<'SEED'
iptables -P INPUT DROP
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -P OUTPUT DROP
iptables -A OUTPUT -o lo -j ACCEPT
iptables -A OUTPUT -d 203.0.113.10 -p tcp --dport 443 -j ACCEPT
iptables -A OUTPUT -p udp --dport 53 -j ACCEPT
iptables -A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
SEED
fi
if [ "$(wc -l <"$TMP/seed")" -eq 8 ]; then pass "read the guide's 8 firewall lines"
else fail "expected 8 firewall lines in the guide, found $(wc -l <"$TMP/seed")"; fi

"$LOCK" apply --broker 203.0.113.10 --backend iptables --dry-run >"$TMP/dry"
# The lock keeps its rules in chains of its own (so that taking it off
# removes only them): the guide's INPUT rules go into VAULT-EGRESS-IN, its
# OUTPUT rules into VAULT-EGRESS-OUT, and where the guide sets a built-in
# chain's policy to DROP, ours ends in -j DROP.
awk '
  $2 == "-P" && $4 == "DROP" { drop[$3] = 1; next }
  $2 == "-A" { chain = $3; sub(/^iptables -A [A-Z]+ /, ""); rules[chain] = rules[chain] "iptables -A VAULT-EGRESS-" (chain == "INPUT" ? "IN" : "OUT") " " $0 "\n" }
  END {
    printf "%s", rules["INPUT"]; if (drop["INPUT"]) print "iptables -A VAULT-EGRESS-IN -j DROP"
    printf "%s", rules["OUTPUT"]; if (drop["OUTPUT"]) print "iptables -A VAULT-EGRESS-OUT -j DROP"
  }' "$TMP/seed" >"$TMP/seed-ours"
grep '^iptables -A ' "$TMP/dry" >"$TMP/ours"
if diff -u "$TMP/seed-ours" "$TMP/ours"; then pass "dry run = the guide's rules, in the guide's order, in the lock's own chains"
else fail "dry run differs from the guide"; fi
if grep -qx -- 'iptables -I INPUT 1 -j VAULT-EGRESS-IN' "$TMP/dry" &&
  grep -qx -- 'iptables -I OUTPUT 1 -j VAULT-EGRESS-OUT' "$TMP/dry" &&
  ! grep -q -- ' -P ' "$TMP/dry"; then
  pass "every packet of INPUT and OUTPUT goes through the lock's chains first; no built-in policy is changed"
else fail "the dry run lacks the jumps at the top of INPUT/OUTPUT, or sets a policy"; fi

"$LOCK" apply --broker 203.0.113.10:8443 --dns 192.0.2.53 --allow 198.51.100.0/24:5696 \
  --backend iptables --dry-run >"$TMP/dry2"
if grep -qx -- 'iptables -A VAULT-EGRESS-OUT -d 203.0.113.10 -p tcp --dport 8443 -j ACCEPT' "$TMP/dry2" &&
  grep -qx -- 'iptables -A VAULT-EGRESS-OUT -d 192.0.2.53 -p udp --dport 53 -j ACCEPT' "$TMP/dry2" &&
  grep -qx -- 'iptables -A VAULT-EGRESS-OUT -d 198.51.100.0/24 -p tcp --dport 5696 -j ACCEPT' "$TMP/dry2" &&
  ! grep -qx -- 'iptables -A VAULT-EGRESS-OUT -p udp --dport 53 -j ACCEPT' "$TMP/dry2"; then
  pass "broker port, --dns and --allow show up as rules; DNS is narrowed"
else fail "port/--dns/--allow rules wrong"; cat "$TMP/dry2"; fi

if grep -qx 'IPAddressAllow=203.0.113.10 192.0.2.53' "$TMP/dry2"; then
  pass "the dry run shows the unit drop-in with the broker and the resolver"
else fail "drop-in text wrong"; fi

# Several clusters (vault-bridge@NAME): every broker given is allowed on its
# own port, and nothing else; each named cluster gets a drop-in of its own
# that allows its broker only.
"$LOCK" apply --broker 203.0.113.10 --broker eks=198.51.100.7:8443 \
  --broker 'aks=[2001:db8::5]:9443' --dns 192.0.2.53 --backend iptables --dry-run >"$TMP/multi"
grep -E -- '^ip6?tables -A VAULT-EGRESS-OUT .*-p tcp ' "$TMP/multi" >"$TMP/multi-brokers" || true
cat >"$TMP/multi-want" <<'WANT'
iptables -A VAULT-EGRESS-OUT -d 203.0.113.10 -p tcp --dport 443 -j ACCEPT
iptables -A VAULT-EGRESS-OUT -d 198.51.100.7 -p tcp --dport 8443 -j ACCEPT
ip6tables -A VAULT-EGRESS-OUT -d 2001:db8::5 -p tcp --dport 9443 -j ACCEPT
WANT
if diff -u "$TMP/multi-want" "$TMP/multi-brokers"; then
  pass "--broker given three times: exactly the three brokers, each on its own port"
else fail "three --broker: wrong broker rules"; fi
drop_of() { # the IPAddressAllow= line of UNIT's drop-in in dry-run output FILE
  awk -v want="# /etc/systemd/system/$1.d/egress-lock.conf" '
    $0 == want { on = 1; next }
    /^# \// { on = 0 }
    on && /^IPAddressAllow=/' "$TMP/$2"
}
if [ "$(drop_of vault-bridge.service multi)" = 'IPAddressAllow=203.0.113.10 192.0.2.53' ] &&
  [ "$(drop_of vault-bridge@eks.service multi)" = 'IPAddressAllow=198.51.100.7 192.0.2.53' ] &&
  [ "$(drop_of vault-bridge@aks.service multi)" = 'IPAddressAllow=2001:db8::5 192.0.2.53' ]; then
  pass "each cluster's drop-in allows its own broker only (and the resolver)"
else fail "per-cluster drop-ins wrong"; sed -n '/^# \/etc/,$p' "$TMP/multi"; fi

# --add over a recorded lock (a state directory as apply writes it): the
# recorded brokers and --allow stay, the new cluster joins, a named one
# replaces its cluster's earlier broker, the back end stays the recorded
# one, and DNS to any server stays so.
mkdir -p "$TMP/state"
cat >"$TMP/state/current.conf" <<'STATE'
BACKEND=iptables-nft
BROKER=|203.0.113.10|443|203.0.113.10
BROKER=eks|198.51.100.7:8443|8443|198.51.100.7
DNS_ADDRS=
ALLOWS=198.51.100.0/24:5696,
LOCKDOWN=
APPLIED_AT=2026-01-01T00:00:00Z
STATE
VAULT_EGRESS_LOCK_STATE_DIR=$TMP/state VAULT_EGRESS_LOCK_RESOLV_CONF=/dev/null "$LOCK" apply --add --broker gke=192.0.2.80:443 \
  --broker eks=198.51.100.9:8443 --dns 192.0.2.53 --dry-run >"$TMP/add" 2>"$TMP/add.err"
grep -E -- '^ip6?tables-nft -A VAULT-EGRESS-OUT .*-j ACCEPT$' "$TMP/add" | grep -v -- '-o lo' >"$TMP/add-out" || true
cat >"$TMP/add-want" <<'WANT'
iptables-nft -A VAULT-EGRESS-OUT -d 203.0.113.10 -p tcp --dport 443 -j ACCEPT
iptables-nft -A VAULT-EGRESS-OUT -d 192.0.2.80 -p tcp --dport 443 -j ACCEPT
iptables-nft -A VAULT-EGRESS-OUT -d 198.51.100.9 -p tcp --dport 8443 -j ACCEPT
iptables-nft -A VAULT-EGRESS-OUT -d 198.51.100.0/24 -p tcp --dport 5696 -j ACCEPT
iptables-nft -A VAULT-EGRESS-OUT -p udp --dport 53 -j ACCEPT
iptables-nft -A VAULT-EGRESS-OUT -m state --state ESTABLISHED,RELATED -j ACCEPT
ip6tables-nft -A VAULT-EGRESS-OUT -p udp --dport 53 -j ACCEPT
ip6tables-nft -A VAULT-EGRESS-OUT -m state --state ESTABLISHED,RELATED -j ACCEPT
WANT
if diff -u "$TMP/add-want" "$TMP/add-out" && grep -q 'DNS stays open' "$TMP/add.err"; then
  pass "--add keeps the recorded brokers and --allow, adds the new cluster, replaces a moved one, keeps the back end, never narrows DNS"
else fail "--add merged wrongly"; cat "$TMP/add.err"; fi
if [ "$(drop_of vault-bridge@eks.service add)" = 'IPAddressAllow=198.51.100.9' ] &&
  [ "$(drop_of vault-bridge@gke.service add)" = 'IPAddressAllow=192.0.2.80' ] &&
  [ "$(drop_of vault-bridge.service add)" = 'IPAddressAllow=203.0.113.10' ]; then
  pass "--add: the moved cluster's drop-in names its new broker only; the others keep theirs"
else fail "--add drop-ins wrong"; sed -n '/^# \/etc/,$p' "$TMP/add"; fi

# A lock recorded by the version that took one broker: --add keeps it.
cat >"$TMP/state/current.conf" <<'STATE'
BACKEND=nft
BROKER_SPEC=203.0.113.10:443
BROKER_PORT=443
BROKER_ADDRS=203.0.113.10
DNS_ADDRS=192.0.2.53
ALLOWS=
LOCKDOWN=
APPLIED_AT=2026-01-01T00:00:00Z
STATE
VAULT_EGRESS_LOCK_STATE_DIR=$TMP/state "$LOCK" apply --add --broker eks=198.51.100.9:8443 \
  --dry-run >"$TMP/add-old" 2>/dev/null
if [ "$(grep -c 'tcp dport' "$TMP/add-old")" = 2 ] &&
  grep -qx $'\t\tip daddr 203.0.113.10 tcp dport 443 accept' "$TMP/add-old" &&
  grep -qx $'\t\tip daddr 198.51.100.9 tcp dport 8443 accept' "$TMP/add-old" &&
  grep -qx $'\t\tip daddr 192.0.2.53 udp dport 53 accept' "$TMP/add-old"; then
  pass "--add over a lock recorded by the one-broker version keeps its broker and DNS"
else fail "--add over an old record"; cat "$TMP/add-old"; fi

# Beacon relay mode: --beacon allows a beacon exactly as --broker allows a
# broker (port 443 by default), alone or beside brokers of other clusters.
"$LOCK" apply --beacon 203.0.113.20 --dns 192.0.2.53 --backend iptables --dry-run >"$TMP/beacon"
grep -E -- '^ip6?tables -A VAULT-EGRESS-OUT ' "$TMP/beacon" >"$TMP/beacon-out" || true
cat >"$TMP/beacon-want" <<'WANT'
iptables -A VAULT-EGRESS-OUT -o lo -j ACCEPT
iptables -A VAULT-EGRESS-OUT -d 203.0.113.20 -p tcp --dport 443 -j ACCEPT
iptables -A VAULT-EGRESS-OUT -d 192.0.2.53 -p udp --dport 53 -j ACCEPT
iptables -A VAULT-EGRESS-OUT -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A VAULT-EGRESS-OUT -j DROP
ip6tables -A VAULT-EGRESS-OUT -o lo -j ACCEPT
ip6tables -A VAULT-EGRESS-OUT -m state --state ESTABLISHED,RELATED -j ACCEPT
ip6tables -A VAULT-EGRESS-OUT -j DROP
WANT
if diff -u "$TMP/beacon-want" "$TMP/beacon-out" && grep -qx '# beacon: 203.0.113.20 -> 203.0.113.20 port 443' "$TMP/beacon" &&
  [ "$(drop_of vault-bridge.service beacon)" = 'IPAddressAllow=203.0.113.20 192.0.2.53' ]; then
  pass "--beacon alone: the beacon on 443 and the resolver, nothing else; the drop-in allows the beacon"
else fail "--beacon alone: wrong rules or drop-in"; cat "$TMP/beacon"; fi
"$LOCK" apply --beacon 203.0.113.20 --beacon '[2001:db8::20]:8443' --broker eks=198.51.100.7:8443 \
  --beacon gke=192.0.2.80 --dns 192.0.2.53 --backend iptables --dry-run >"$TMP/mixed"
grep -E -- '^ip6?tables -A VAULT-EGRESS-OUT .*-p tcp ' "$TMP/mixed" >"$TMP/mixed-out" || true
cat >"$TMP/mixed-want" <<'WANT'
iptables -A VAULT-EGRESS-OUT -d 203.0.113.20 -p tcp --dport 443 -j ACCEPT
iptables -A VAULT-EGRESS-OUT -d 198.51.100.7 -p tcp --dport 8443 -j ACCEPT
iptables -A VAULT-EGRESS-OUT -d 192.0.2.80 -p tcp --dport 443 -j ACCEPT
ip6tables -A VAULT-EGRESS-OUT -d 2001:db8::20 -p tcp --dport 8443 -j ACCEPT
WANT
if diff -u "$TMP/mixed-want" "$TMP/mixed-out" &&
  [ "$(drop_of vault-bridge.service mixed)" = 'IPAddressAllow=203.0.113.20 2001:db8::20 192.0.2.53' ] &&
  [ "$(drop_of vault-bridge@eks.service mixed)" = 'IPAddressAllow=198.51.100.7 192.0.2.53' ] &&
  [ "$(drop_of vault-bridge@gke.service mixed)" = 'IPAddressAllow=192.0.2.80 192.0.2.53' ]; then
  pass "--beacon and --broker combined: every beacon and broker on its port; each unit's drop-in its own"
else fail "--beacon with --broker: wrong rules or drop-ins"; cat "$TMP/mixed"; fi

# --add over a lock recorded with a beacon: the beacon stays a beacon, and a
# cluster that moves from its broker to a beacon loses the broker.
cat >"$TMP/state/current.conf" <<'STATE'
BACKEND=nft
BEACON=|203.0.113.20|443|203.0.113.20
BROKER=eks|198.51.100.7:8443|8443|198.51.100.7
DNS_ADDRS=192.0.2.53
ALLOWS=
LOCKDOWN=
APPLIED_AT=2026-01-01T00:00:00Z
STATE
VAULT_EGRESS_LOCK_STATE_DIR=$TMP/state "$LOCK" apply --add --beacon eks=192.0.2.90 \
  --dry-run >"$TMP/add-beacon" 2>/dev/null
if [ "$(grep -c 'tcp dport' "$TMP/add-beacon")" = 2 ] &&
  grep -qx $'\t\tip daddr 203.0.113.20 tcp dport 443 accept' "$TMP/add-beacon" &&
  grep -qx $'\t\tip daddr 192.0.2.90 tcp dport 443 accept' "$TMP/add-beacon" &&
  grep -qx '# beacon: 203.0.113.20 -> 203.0.113.20 port 443' "$TMP/add-beacon" &&
  grep -qx '# beacon of vault-bridge@eks: 192.0.2.90 -> 192.0.2.90 port 443' "$TMP/add-beacon"; then
  pass "--add keeps a recorded beacon, and a cluster moved to a beacon no longer reaches its old broker"
else fail "--add with beacons"; cat "$TMP/add-beacon"; fi

bad() {
  local rc=0
  "$LOCK" "$@" >/dev/null 2>"$TMP/err" || rc=$?
  if [ "$rc" = 2 ] && [ -s "$TMP/err" ]; then pass "exit 2 for: $*"
  else fail "expected exit 2 for: $* (got $rc)"; fi
}
bad
bad frobnicate
bad apply
bad apply --broker 203.0.113.10:0 --dry-run
bad apply --broker 203.0.113.10 --broker eks=203.0.113.11:0 --dry-run
bad apply --broker EKS=203.0.113.11 --dry-run
bad apply --broker =203.0.113.11 --dry-run
bad apply --broker 'a/b=203.0.113.11' --dry-run
bad apply --broker eks= --dry-run
bad apply --broker 203.0.113.10 --dns not-an-ip --dry-run
bad apply --beacon --dry-run
bad apply --beacon 203.0.113.20:0 --dry-run
bad apply --beacon 203.0.113.20:70000 --dry-run
bad apply --beacon EKS=203.0.113.20 --dry-run
bad apply --beacon eks= --dry-run
bad apply --dns 192.0.2.53 --dry-run
bad apply --broker 203.0.113.10 --allow 10.0.0.0/33:80 --dry-run
bad apply --broker 203.0.113.10 --allow 10.0.0.0/8 --dry-run
bad apply --broker 203.0.113.10 --backend pf --dry-run
bad apply --broker 203.0.113.10 --confirm-timeout soon --dry-run
bad status extra
bad restore extra
bad remove extra

echo "egress-lock-cli: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
