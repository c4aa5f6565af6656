#!/usr/bin/env bash
# Runs inside empty-root.sh: what the beacon must do as a container sees it
# (docs/beacon.md, "Running a beacon"), as uid 65532 in a read-only root
# holding only itself and its forwarding executable, with its certificate and
# key at /etc/cloudtaser-beacon.
#
# Port 443 as uid 65532: the fresh network namespace starts with the
# kernel's net.ipv4.ip_unprivileged_port_start of 1024, and the beacon cannot
# bind 443 there (the control); set to 0 in that namespace only, as docker
# does in every container with a network of its own, it can.
#
# The run is real: a real broker and bridge ($BROKER_BIN, $BRIDGE_BIN, outside
# the root, as the cluster and the vault host would run them) both dial out
# to the beacon on 127.0.0.1:443, it pairs them, and a wrapper's request
# crosses broker, beacon and bridge to an OpenBao stand-in.
#   BROKER_BIN=... BRIDGE_BIN=... PKI=DIR beacon-in-empty-root.sh VERSION
# PKI is the cloudtaser-certs output (--beacon-host 127.0.0.1) the beacon's
# certificate came from.
set -euo pipefail
version="$1"
here="$(cd "$(dirname "$0")" && pwd)"
root="$SANDBOX_ROOT"
read -r -a run <<< "$SANDBOX_RUN"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
logs="$(mktemp -d)"
out="$logs/out" err="$logs/err"
pids=()
cleanup() {
  for p in ${pids[@]+"${pids[@]}"}; do kill -KILL "$p" 2>/dev/null || true; done
  { wait; } 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT

listing="$(cd "$root" && find . -xdev -not -path './proc/*' | sort | tr '\n' ' ')"
expect "the root holds only the beacon, its forwarding executable and mount points ($listing)" \
  test "$listing" = ". ./cloudtaser-beacon ./cloudtaser-beacon-forward ./etc ./etc/cloudtaser-beacon ./proc "
expect "the root filesystem is read-only, even for root" bash -c "! touch '$root/x' 2>/dev/null"
expect "the certificate directory is mounted read-only" bash -c "! touch '$root/etc/cloudtaser-beacon/x' 2>/dev/null"

status() { local s=0; "${run[@]}" /cloudtaser-beacon "$@" >"$out" 2>"$err" </dev/null || s=$?; echo "$s"; }

s="$(status --version)"
expect "--version exits 0 as uid 65532 (exit $s)" test "$s" = 0
expect "--version prints $version ($(head -c 80 "$out"))" grep -qF "$version" "$out"
s="$(status --help)"
expect "--help exits 0 (exit $s)" test "$s" = 0
help="$(cat "$out" "$err")"
for flag in --listen --cert --key --client-ca --metrics-listen --drain-timeout; do
  expect "--help documents $flag" grep -qF -- "$flag" <<< "$help"
done
s="$(status --no-such-flag)"
expect "an unknown flag exits 2 (exit $s)" test "$s" = 2
expect "an unknown flag prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

tls=/etc/cloudtaser-beacon
s="$(status --listen 127.0.0.1:443 --cert "$tls/missing.crt" --key "$tls/tls.key")"
expect "a missing certificate file exits 2 (exit $s)" test "$s" = 2
expect "a missing certificate file prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

# Port 443 as uid 65532.
start="$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
s="$(status --listen 127.0.0.1:443 --cert "$tls/tls.crt" --key "$tls/tls.key")"
expect "control: with ip_unprivileged_port_start $start (the kernel's default), uid 65532 cannot bind 443 (exit $s: $(head -c 90 "$err"))" \
  bash -c "[ '$s' = 2 ] && grep -q 'cannot listen on 127.0.0.1:443' '$err'"
echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start
"${run[@]}" /cloudtaser-beacon --listen 127.0.0.1:443 --cert "$tls/tls.crt" --key "$tls/tls.key" \
  --metrics-listen 127.0.0.1:9091 --drain-timeout 5 >/dev/null 2>"$logs/beacon.log" </dev/null &
beacon=$!
pids+=("$beacon")
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" || true; }
ready=0
for _ in $(seq 1 100); do
  [ "$(code 9091 /readyz)" = 200 ] && { ready=1; break; }
  kill -0 "$beacon" 2>/dev/null || break
  sleep 0.1
done
expect "with ip_unprivileged_port_start 0 in its network namespace it listens on 443 as uid 65532 (/readyz 200)" test "$ready" = 1
expect "it says where it listens" grep -qF 'listening for brokers and bridges on 127.0.0.1:443' "$logs/beacon.log"

# Both sides dial out to it: the broker keeps connections waiting, the bridge
# is paired with one, and their pinned mTLS link runs inside.
# shellcheck source=tests/cluster/standin.sh
. "$here/standin.sh"
listening=0
start_standin beacon-image-canary "$logs/upstream.log" && listening=1
pids+=("$STANDIN_PID")
expect "the OpenBao stand-in listens on 127.0.0.1:8200" test "$listening" = 1
beacon_flags=(--beacon-address 127.0.0.1:443 --beacon-ca "$PKI/broker/ca.crt")
"$BROKER_BIN" "${beacon_flags[@]}" --pairing-key-file "$PKI/broker/pairing.key" \
  --service-listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9090 \
  --cert "$PKI/broker/tls.crt" --key "$PKI/broker/tls.key" --ca-cert "$PKI/broker/ca.crt" \
  2>"$logs/broker.log" </dev/null &
broker=$!
pids+=("$broker")
"$BRIDGE_BIN" "${beacon_flags[@]}" --pairing-key-file "$PKI/bridge/pairing.key" \
  --vault-addr http://127.0.0.1:8200 --client-cert "$PKI/bridge/tls.crt" \
  --client-key "$PKI/bridge/tls.key" --ca-cert "$PKI/bridge/ca.crt" \
  --service-cert "$PKI/service/tls.crt" --service-key "$PKI/service/tls.key" \
  2>"$logs/bridge.log" </dev/null &
bridge=$!
pids+=("$bridge")
linked=0
for _ in $(seq 1 150); do
  [ "$(code 9090 /readyz)" = 200 ] && { linked=1; break; }
  { kill -0 "$broker" && kill -0 "$bridge"; } 2>/dev/null || break
  sleep 0.1
done
expect "the broker and the bridge link through the beacon (broker /readyz 200)" test "$linked" = 1
expect "the broker saw the bridge connect through the beacon" grep -qE 'conn=[0-9]+ bridge connected' "$logs/broker.log"

svc=cloudtaser-broker.cloudtaser-system.svc
answer="$(curl -sS --max-time 5 --cacert "$PKI/service/ca.crt" --resolve "$svc:8443:127.0.0.1" \
  -H 'X-Vault-Token: t0ken' "https://$svc:8443/v1/secret/data/canary" 2>&1 || true)"
expect "a wrapper's request crosses broker, beacon and bridge to the stand-in and back (${answer:0:60}...)" \
  grep -qF '"value": "beacon-image-canary"' <<< "$answer"

# The TLS process sends its figures to the metrics port once a second: read
# until they show the pair, for at most 5 s.
metric() { awk -v m="$1" '$1 == m {print $2}' <<< "$metrics"; }
for _ in $(seq 1 50); do
  metrics="$(curl -s --max-time 2 http://127.0.0.1:9091/metrics || true)"
  pairs="$(metric cloudtaser_beacon_pairs_total)"
  b2b="$(metric 'cloudtaser_beacon_bytes_relayed_total{direction="broker_to_bridge"}')"
  r2b="$(metric 'cloudtaser_beacon_bytes_relayed_total{direction="bridge_to_broker"}')"
  [ "${pairs:-0}" -ge 1 ] && [ "${b2b:-0}" -gt 0 ] && [ "${r2b:-0}" -gt 0 ] && break
  sleep 0.1
done
expect "the beacon paired them (pairs_total $pairs) and relayed bytes both ways ($b2b broker->bridge, $r2b bridge->broker)" \
  bash -c "[ '${pairs:-0}' -ge 1 ] && [ '${b2b:-0}' -gt 0 ] && [ '${r2b:-0}' -gt 0 ]"

fpid="$(ps -e -o pid=,ppid=,args= | awk -v p="$beacon" '$2 == p && / --child=forward / {print $1}')"
fexe="$(readlink "/proc/$fpid/exe" 2>/dev/null || true)"
expect "the forwarding process (pid $fpid) runs the executable beside the beacon ($fexe)" \
  test "$fexe" = "$root/cloudtaser-beacon-forward"
kids="$(ps -e -o pid=,ppid= | awk -v p="$beacon" '$2 == p {print $1}' | tr '\n' ' ')"
buids="$(for p in "$beacon" $kids; do
  awk '/^Uid:/{print $2 "," $3 "," $4 "," $5}' "/proc/$p/status" 2>/dev/null || true; done | sort -u | tr '\n' ' ')"
expect "the beacon and its children ($kids) all run as uid 65532 ($buids)" test "$buids" = "65532,65532,65532,65532 "
caps="$(for p in "$beacon" $kids; do awk '/^CapEff:/{print $2}' "/proc/$p/status" 2>/dev/null || true; done | sort -u | tr '\n' ' ')"
expect "no process of the beacon holds a capability (CapEff $caps)" test "$caps" = "0000000000000000 "

for p in "$bridge" "$broker"; do kill -TERM "$p" 2>/dev/null || true; done
kill -TERM "$beacon" 2>/dev/null || true
s=0
for _ in $(seq 1 100); do kill -0 "$beacon" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$beacon" 2>/dev/null; then kill -KILL "$beacon"; s=timeout; fi
[ "$s" = timeout ] || { wait "$beacon" || s=$?; }
expect "SIGTERM exits 0 within 10 s (exit $s)" test "$s" = 0
if [ "$failed" != 0 ]; then
  for l in beacon broker bridge; do echo "--- $l log"; tail -20 "$logs/$l.log"; done
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
