#!/usr/bin/env bash
# make demo: the whole reverse-connect path on loopback, narrated.
#
#   curl --> cloudtaser-broker :8443 ==(one pinned mTLS link, dialled by the bridge)==
#        <-- vault-bridge --> OpenBao :8200 (bao server -dev, or a stand-in)
#
# make demo-beacon (tests/demo.sh --beacon): the same through cloudtaser-beacon
# :9444, which both daemons dial; nothing listens for the other side.
#
#   curl --> cloudtaser-broker :8443 --> cloudtaser-beacon :9444 <-- vault-bridge --> OpenBao
#
# Everything runs from a scratch directory that is removed at the end, and every
# process started here is stopped here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CT_BUILD:-$ROOT/build}
WORK=$(mktemp -d /tmp/cloudtaser-demo.XXXXXX)
PIDS=()
VAULT_PORT=${VAULT_PORT:-8200} SERVICE_PORT=${SERVICE_PORT:-8443} BRIDGE_PORT=${BRIDGE_PORT:-9443}
BEACON_PORT=${BEACON_PORT:-9444}
BEACON=0
case "${1:-}" in
  --beacon) BEACON=1 ;;
  "") ;;
  *) echo "usage: $0 [--beacon]" >&2; exit 2 ;;
esac

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port: bounded wait for a listener on 127.0.0.1
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}
wait_log() { # file regex
  for _ in $(seq 100); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; return 1
}
PORTS="$VAULT_PORT $SERVICE_PORT"
if [ $BEACON = 1 ]; then PORTS="$PORTS $BEACON_PORT"; else PORTS="$PORTS $BRIDGE_PORT"; fi
for p in $PORTS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is in use; stop what uses it and run make demo again" >&2; exit 1
  fi
done

step "1. A throwaway CA and certificates (deploy/cloudtaser-certs), pins printed"
BEACON_CERTS=()
if [ $BEACON = 1 ]; then BEACON_CERTS=(--beacon-host 127.0.0.1); fi
"$ROOT/deploy/cloudtaser-certs" --out "$WORK/pki" --external-host localhost "${BEACON_CERTS[@]}" \
  >"$WORK/certs.log"
sed -n '/sha256/p' "$WORK/certs.log" | sed 's/^/    /'
BROKER_PIN=$(grep -E '^broker' "$WORK/pki/pins.txt" | grep -oE 'sha256//[A-Za-z0-9+/=]+')
BRIDGE_PIN=$(grep -E '^bridge' "$WORK/pki/pins.txt" | grep -oE 'sha256//[A-Za-z0-9+/=]+')

TOKEN="demo-root-token"
if command -v bao >/dev/null 2>&1; then
  step "2. OpenBao on 127.0.0.1:$VAULT_PORT (bao server -dev), with secret/demo written"
  bao server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$VAULT_PORT" \
    >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
  wait_port $VAULT_PORT
  BAO_ADDR="http://127.0.0.1:$VAULT_PORT" BAO_TOKEN="$TOKEN" bao kv put secret/demo password=hunter2 >/dev/null
else
  step "2. No bao on PATH: an OpenBao KV v2 stand-in on 127.0.0.1:$VAULT_PORT (tests/upstream_standin.py)"
  python3 "$ROOT/tests/upstream_standin.py" --listen "127.0.0.1:$VAULT_PORT" --token "$TOKEN" \
    --secret demo=password=hunter2 >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
  wait_port $VAULT_PORT
fi
echo "    OpenBao listens on loopback only; nothing else on this 'vault host' listens."

SERVICE_FLAGS=(--service-cert "$WORK/pki/service/tls.crt" --service-key "$WORK/pki/service/tls.key")
if [ $BEACON = 0 ]; then
step "3. cloudtaser-broker: bridges on :$BRIDGE_PORT (mTLS, bridge pin), wrappers on :$SERVICE_PORT"
set -x
"$BUILD/cloudtaser-broker" --bridge-listen 127.0.0.1:$BRIDGE_PORT --service-listen 127.0.0.1:$SERVICE_PORT \
  --cert "$WORK/pki/broker/tls.crt" --key "$WORK/pki/broker/tls.key" --ca-cert "$WORK/pki/broker/ca.crt" \
  --bridge-pin "$BRIDGE_PIN" 2>"$WORK/broker.log" &
{ set +x; } 2>/dev/null
PIDS+=($!)
wait_log "$WORK/broker.log" 'parent\] info: ready'

step "4. vault-bridge dials OUT to the broker (broker pin checked); wrappers' TLS ends in the bridge"
set -x
"$BUILD/vault-bridge" --broker-address 127.0.0.1:$BRIDGE_PORT --broker-name localhost \
  --vault-addr http://127.0.0.1:$VAULT_PORT \
  --client-cert "$WORK/pki/bridge/tls.crt" --client-key "$WORK/pki/bridge/tls.key" \
  --ca-cert "$WORK/pki/bridge/ca.crt" --broker-pin "$BROKER_PIN" "${SERVICE_FLAGS[@]}" 2>"$WORK/bridge.log" &
{ set +x; } 2>/dev/null
PIDS+=($!)
else
step "3. cloudtaser-beacon on :$BEACON_PORT: it pairs and relays, and holds no key of the link"
set -x
"$BUILD/cloudtaser-beacon" --listen 127.0.0.1:$BEACON_PORT \
  --cert "$WORK/pki/beacon/tls.crt" --key "$WORK/pki/beacon/tls.key" 2>"$WORK/beacon.log" &
{ set +x; } 2>/dev/null
PIDS+=($!)
wait_log "$WORK/beacon.log" 'parent\] info: ready'
BEACON_FLAGS=(--beacon-address 127.0.0.1:$BEACON_PORT --beacon-ca "$WORK/pki/broker/ca.crt")

step "4. cloudtaser-broker dials OUT to the beacon and waits there for bridges; wrappers on :$SERVICE_PORT"
set -x
"$BUILD/cloudtaser-broker" "${BEACON_FLAGS[@]}" --pairing-key-file "$WORK/pki/broker/pairing.key" \
  --service-listen 127.0.0.1:$SERVICE_PORT \
  --cert "$WORK/pki/broker/tls.crt" --key "$WORK/pki/broker/tls.key" --ca-cert "$WORK/pki/broker/ca.crt" \
  --bridge-pin "$BRIDGE_PIN" 2>"$WORK/broker.log" &
{ set +x; } 2>/dev/null
PIDS+=($!)
wait_log "$WORK/broker.log" 'parent\] info: ready'

step "5. vault-bridge dials OUT to the beacon; its mTLS with the broker (pins) runs inside"
set -x
"$BUILD/vault-bridge" "${BEACON_FLAGS[@]}" --pairing-key-file "$WORK/pki/bridge/pairing.key" \
  --vault-addr http://127.0.0.1:$VAULT_PORT \
  --client-cert "$WORK/pki/bridge/tls.crt" --client-key "$WORK/pki/bridge/tls.key" \
  --ca-cert "$WORK/pki/bridge/ca.crt" --broker-pin "$BROKER_PIN" "${SERVICE_FLAGS[@]}" 2>"$WORK/bridge.log" &
{ set +x; } 2>/dev/null
PIDS+=($!)
fi
wait_log "$WORK/broker.log" 'conn=[0-9]+ bridge connected'
grep -hE 'bridge connected|connected to the broker' "$WORK/broker.log" "$WORK/bridge.log" | sed 's/^/    /'

SVC=cloudtaser-broker.cloudtaser-system.svc
N=$((5 + BEACON))
step "$N. A wrapper reads secret/demo over TLS to $SVC (the broker relays ciphertext only)"
set -x
curl -sS --max-time 10 --cacert "$WORK/pki/service/ca.crt" --resolve "$SVC:$SERVICE_PORT:127.0.0.1" \
  -H "X-Vault-Token: $TOKEN" "https://$SVC:$SERVICE_PORT/v1/secret/data/demo" | tee "$WORK/answer.json"
{ set +x; } 2>/dev/null
echo
grep -q '"password": *"hunter2"' "$WORK/answer.json" || { echo "demo FAILED: unexpected answer" >&2; exit 1; }

step "$((N + 1)). The processes (each daemon: parent and its children)"
DAEMONS=$(IFS=,; echo "${PIDS[*]:1}")
ps -o pid,ppid,user,args --ppid "$DAEMONS" -p "$DAEMONS" | sed 's/^/    /'

step "Done: the secret crossed the tunnel; the vault host accepted no inbound connection."
