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
bad apply --broker 203.0.113.10 --dns not-an-ip --dry-run
bad apply --broker 203.0.113.10 --allow 10.0.0.0/33:80 --dry-run
bad apply --broker 203.0.113.10 --allow 10.0.0.0/8 --dry-run
bad apply --broker 203.0.113.10 --backend pf --dry-run
bad apply --broker 203.0.113.10 --confirm-timeout soon --dry-run
bad status extra
bad restore extra
bad remove extra

echo "egress-lock-cli: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
