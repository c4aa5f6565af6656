#!/usr/bin/env bash
# Runs inside empty-root.sh: what the bridge must do as a container on the
# vault host sees it (docs/vault-host.md, "The bridge as a container"), as
# uid 65532 in a read-only root holding only itself, its forwarding
# executable and /etc/nsswitch.conf, with its certificate directory at
# /etc/bridge and the runtime's /etc/hosts and /etc/resolv.conf mounted
# read-only. The bridge resolves --broker-address, so it reads those two (a
# container runtime provides them; nothing else in /etc is needed).
#
# The link is real: a real broker ($BROKER_BIN, outside the root, as the
# cluster would run it) and an OpenBao stand-in (tests/upstream_standin.py)
# listen on this namespace's loopback; the bridge dials broker.test, a name
# only the mounted /etc/hosts knows, over pinned mTLS with the systemd unit's
# flags, and a wrapper's request crosses broker and bridge to the stand-in.
#   BROKER_BIN=build/cloudtaser-broker PKI=DIR bridge-in-empty-root.sh VERSION
# PKI is the cloudtaser-certs output the bridge's certificates came from.
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
expect "the root holds only the bridge, its forwarding executable, nsswitch.conf and mount points ($listing)" \
  test "$listing" = ". ./etc ./etc/bridge ./etc/hosts ./etc/nsswitch.conf ./etc/resolv.conf ./proc ./vault-bridge ./vault-bridge-forward "
expect "the root filesystem is read-only, even for root" bash -c "! touch '$root/x' 2>/dev/null"
expect "the certificate directory is mounted read-only" bash -c "! touch '$root/etc/bridge/x' 2>/dev/null"
expect "/etc/hosts and /etc/resolv.conf are mounted read-only" \
  bash -c "! touch '$root/etc/hosts' 2>/dev/null && ! touch '$root/etc/resolv.conf' 2>/dev/null"

status() { local s=0; "${run[@]}" /vault-bridge "$@" >"$out" 2>"$err" </dev/null || s=$?; echo "$s"; }

s="$(status --version)"
expect "--version exits 0 as uid 65532 (exit $s)" test "$s" = 0
expect "--version prints $version ($(head -c 80 "$out"))" grep -qF "$version" "$out"
s="$(status --help)"
expect "--help exits 0 (exit $s)" test "$s" = 0
help="$(cat "$out" "$err")"
for flag in --broker-address --vault-addr --client-cert --client-key --ca-cert --broker-pin; do
  expect "--help documents $flag" grep -qF -- "$flag" <<< "$help"
done
s="$(status --no-such-flag)"
expect "an unknown flag exits 2 (exit $s)" test "$s" = 2
expect "an unknown flag prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

# The systemd unit's flags with its default paths (systemd/vault-bridge.env);
# the pin is /etc/bridge/broker.pin and the service certificate
# /etc/bridge/service.{crt,key}, found beside tls.crt.
tls=/etc/bridge
unit_flags=(--vault-addr http://127.0.0.1:8200 --client-cert "$tls/tls.crt" --client-key "$tls/tls.key" --ca-cert "$tls/ca.crt")
s="$(status --broker-address broker.test:8444 --vault-addr http://127.0.0.1:8200 --client-cert "$tls/missing.crt" --client-key "$tls/tls.key" --ca-cert "$tls/ca.crt")"
expect "a missing certificate file exits 2 (exit $s)" test "$s" = 2
expect "a missing certificate file prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

# OpenBao's stand-in and the broker, as root outside the root filesystem.
# shellcheck source=tests/cluster/standin.sh
. "$here/standin.sh"
listening=0
start_standin bridge-image-canary "$logs/upstream.log" && listening=1
pids+=("$STANDIN_PID")
expect "the OpenBao stand-in listens on 127.0.0.1:8200" test "$listening" = 1
"$BROKER_BIN" --bridge-listen 127.0.0.1:8444 --service-listen 127.0.0.1:8443 \
  --metrics-listen 127.0.0.1:9090 --cert "$PKI/broker/tls.crt" --key "$PKI/broker/tls.key" \
  --ca-cert "$PKI/broker/ca.crt" 2>"$logs/broker.log" </dev/null &
pids+=($!)
"${run[@]}" /vault-bridge --broker-address broker.test:8444 "${unit_flags[@]}" \
  >/dev/null 2>"$logs/bridge.log" </dev/null &
bridge=$!
pids+=("$bridge")
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:9090$1" || true; }
linked=0
for _ in $(seq 1 100); do
  [ "$(code /readyz)" = 200 ] && { linked=1; break; }
  kill -0 "$bridge" 2>/dev/null || break
  sleep 0.1
done
expect "the bridge links to the broker by the name in the mounted /etc/hosts (broker /readyz 200)" test "$linked" = 1
expect "the broker saw a bridge with a pinned certificate connect" grep -qE 'bridge connected' "$logs/broker.log"
expect "the bridge checked the broker's pin from /etc/bridge/broker.pin and the name broker.test" \
  grep -qE '1 broker pin\(s\), verifying name broker.test' "$logs/bridge.log"
expect "the bridge ends wrapper TLS with /etc/bridge/service.crt" grep -qF 'ends here with /etc/bridge/service.crt' "$logs/bridge.log"

svc=cloudtaser-broker.cloudtaser-system.svc
answer="$(curl -sS --max-time 5 --cacert "$PKI/service/ca.crt" --resolve "$svc:8443:127.0.0.1" \
  -H 'X-Vault-Token: t0ken' "https://$svc:8443/v1/secret/data/canary" 2>&1 || true)"
expect "a wrapper's request crosses broker and bridge to the stand-in and back (${answer:0:60}...)" \
  grep -qF '"value": "bridge-image-canary"' <<< "$answer"
expect "the stand-in served that request" grep -qF 'GET /v1/secret/data/canary' "$logs/upstream.log"

fpid="$(ps -e -o pid=,ppid=,args= | awk -v p="$bridge" '$2 == p && / --child=forward / {print $1}')"
fexe="$(readlink "/proc/$fpid/exe" 2>/dev/null || true)"
expect "the forwarding process (pid $fpid) runs the executable beside the bridge ($fexe)" \
  test "$fexe" = "$root/vault-bridge-forward"
buids="$(for p in "$bridge" $(ps -e -o pid=,ppid= | awk -v p="$bridge" '$2 == p {print $1}'); do
  awk '/^Uid:/{print $2 "," $3 "," $4 "," $5}' "/proc/$p/status" 2>/dev/null || true; done | sort -u | tr '\n' ' ')"
expect "the bridge and its children all run as uid 65532 ($buids)" test "$buids" = "65532,65532,65532,65532 "
capeff="$(awk '/^CapEff:/{print $2}' "/proc/$bridge/status")"
expect "the bridge's parent holds no capability (CapEff $capeff)" test "$capeff" = 0000000000000000

kill -TERM "$bridge" 2>/dev/null || true
s=0
for _ in $(seq 1 100); do kill -0 "$bridge" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bridge" 2>/dev/null; then kill -KILL "$bridge"; s=timeout; fi
[ "$s" = timeout ] || { wait "$bridge" || s=$?; }
expect "SIGTERM exits 0 within 10 s (exit $s)" test "$s" = 0

# The pin is what admits the broker, not just the CA: the same broker, the
# same chain, but a pin for another key, and the bridge does not link.
"${run[@]}" /vault-bridge --broker-address broker.test:8444 "${unit_flags[@]}" \
  --broker-pin sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= 2>"$logs/wrongpin.log" </dev/null &
wrong=$!
pids+=("$wrong")
refused=0
for _ in $(seq 1 50); do
  grep -qF 'matches no configured pin' "$logs/wrongpin.log" && { refused=1; break; }
  sleep 0.1
done
expect "with a pin for another key the bridge refuses the broker ($(grep -m1 -oE 'peer certificate key.*' "$logs/wrongpin.log" | head -c 90))" test "$refused" = 1
# (the good bridge's link closed above; readiness follows a closed link at once)
ready="$(code /readyz)"
for _ in $(seq 1 20); do [ "$ready" = 503 ] && break; sleep 0.1; ready="$(code /readyz)"; done
expect "and the broker has no bridge (/readyz $ready)" test "$ready" = 503
kill -TERM "$wrong" 2>/dev/null || true
if [ "$failed" != 0 ]; then
  echo "--- bridge log"; tail -20 "$logs/bridge.log"; echo "--- broker log"; tail -20 "$logs/broker.log"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
