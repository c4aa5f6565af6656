#!/usr/bin/env bash
# make check-metrics: `promtool check metrics` (Debian's prometheus package) on
# what the real daemons write: the broker's /metrics with no bridge, with a
# bridge and traffic, and after a failed handshake (labelled series), and
# vault-bridge's --status-file (node_exporter textfile collector) with the
# link down and up. Everything on 127.0.0.1, every wait bounded.
#
#   check-metrics.sh BROKER_BIN BRIDGE_BIN
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
broker_bin="$(realpath "$1")"
bridge_bin="$(realpath "$2")"
work="$(mktemp -d)"
pids=()
cleanup() {
  {
    for p in "${pids[@]}"; do kill -KILL -- "-$p" || true; done
    wait
  } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# ---- promtool: on PATH, else Debian's prometheus package (root only).
# Installed-Size of prometheus 2.42 in bookworm is about 94 MB (promtool and
# the server; no smaller Debian package ships promtool). Its maintainer
# scripts would start the server, so a policy-rc.d refuses that for the
# duration of the install when the machine has none.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "promtool missing; run: sudo apt-get install --no-install-recommends prometheus" >&2
    exit 1
  fi
  echo "installing Debian's prometheus package for promtool"
  added_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends prometheus >/dev/null; } || rc=$?
  [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || exit 1
fi
promtool --version 2>&1 | head -1

# promtool check metrics reads stdin; it exits non-zero on a parse error or a
# lint problem (missing HELP, counter without _total, bad unit suffix...).
promcheck() {  # what file
  local out
  if out="$(promtool check metrics < "$2" 2>&1)"; then
    ok "promtool check metrics: $1"
  else
    bad "promtool check metrics: $1"
    sed 's/^/     /' <<< "$out"
    sed 's/^/     | /' "$2"
  fi
}

wait_for() {  # seconds command...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
metrics_have() { grep -q "$1" <<< "$(curl -s --max-time 5 "http://127.0.0.1:$mport/metrics")"; }
# A wait that must succeed: on a timeout, say which and show the logs.
must() {
  local what="$1"; shift
  "$@" && return 0
  bad "timed out: $what"
  tail -n 20 "$work"/*.log
  echo "$passed passed, $failed failed"
  exit 1
}
log_port() {  # log regex -> the port of the first match
  grep -oE "$2" "$1" 2>/dev/null | head -1 | grep -oE '[0-9]+$'
}

# ---- certificates: the operator's helper, as in the docs.
"$root/deploy/cloudtaser-certs" --out "$work/pki" --external-host broker.test > /dev/null
pki="$work/pki"

# ---- an upstream (OpenBao stand-in)
up_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
setsid python3 "$root/tests/upstream_standin.py" --listen "127.0.0.1:$up_port" --token t \
  --secret demo=password=hunter2 > "$work/upstream.log" 2>&1 &
pids+=($!); disown $!  # killed by cleanup, reaped without a job report
must "the upstream to listen" wait_for 10 grep -q 'listening on' "$work/upstream.log"

# ---- the broker with --metrics-listen
setsid "$broker_bin" --bridge-listen 127.0.0.1:0 --service-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 --cert "$pki/broker/tls.crt" --key "$pki/broker/tls.key" \
  --ca-cert "$pki/broker/ca.crt" > "$work/broker.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
must "the broker to start" wait_for 10 grep -q 'serving metrics on' "$work/broker.log"
bport="$(log_port "$work/broker.log" 'listening for bridges on 127\.0\.0\.1:[0-9]+')"
sport="$(log_port "$work/broker.log" 'wrappers on 127\.0\.0\.1:[0-9]+')"
mport="$(log_port "$work/broker.log" 'serving metrics on 127\.0\.0\.1:[0-9]+')"
must "/healthz" wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$mport/healthz"
fetch() { curl -sS --max-time 5 -D "$work/headers" -o "$2" "http://127.0.0.1:$mport/$1"; }

fetch metrics "$work/no-bridge.prom"
expect "/metrics is served as text format 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$work/headers"
promcheck "broker /metrics, no bridge connected" "$work/no-bridge.prom"
expect "bridges_connected is 0 without a bridge" grep -qx 'cloudtaser_broker_bridges_connected 0' "$work/no-bridge.prom"

# ---- the bridge, with its status file, before and after it links up
status="$work/textfile/vault-bridge.prom"
mkdir -p "$work/textfile"
setsid "$bridge_bin" --broker-address "127.0.0.1:$bport" --broker-name broker.test \
  --vault-addr "http://127.0.0.1:$up_port" --client-cert "$pki/bridge/tls.crt" \
  --client-key "$pki/bridge/tls.key" --ca-cert "$pki/bridge/ca.crt" \
  --allow-plaintext-streams --status-file "$status" > "$work/bridge.log" 2>&1 &
pids+=($!); disown $!
must "the status file at start" wait_for 10 test -s "$status"
cp "$status" "$work/status-start.prom"
promcheck "bridge --status-file at start" "$work/status-start.prom"
must "/readyz 200 with the bridge" wait_for 15 curl -sf -o /dev/null "http://127.0.0.1:$mport/readyz"
must "link_up 1 in the status file" wait_for 10 grep -qx 'cloudtaser_bridge_link_up 1' "$status"
cp "$status" "$work/status-up.prom"
promcheck "bridge --status-file, link up" "$work/status-up.prom"

for i in 1 2 3; do
  expect "request $i through the tunnel" curl -sSf --max-time 5 -H 'X-Vault-Token: t' \
    -o /dev/null "http://127.0.0.1:$sport/v1/secret/data/demo"
done
[ "$failed" = 0 ] || tail -n 20 "$work/broker.log" "$work/bridge.log" "$work/upstream.log"
# A failed handshake on the bridge port: labelled failure series appear.
curl -s --max-time 3 -o /dev/null "http://127.0.0.1:$bport/" || true
# The TLS process reports its figures once a second.
must "streams_total 3 in /metrics" wait_for 5 metrics_have 'cloudtaser_broker_streams_total 3'
must "a handshake failure in /metrics" wait_for 5 metrics_have 'handshake_failures_total{'
fetch metrics "$work/bridge.prom"
promcheck "broker /metrics, bridge connected, after traffic and a failed handshake" "$work/bridge.prom"
expect "bridges_connected is 1 with the bridge" grep -qx 'cloudtaser_broker_bridges_connected 1' "$work/bridge.prom"
expect "a labelled series is there (handshake failures by reason)" grep -q '^cloudtaser_broker_handshake_failures_total{reason="[a-z_]*"} [0-9]' "$work/bridge.prom"
expect "no payload in /metrics" bash -c "! grep -q hunter2 '$work/bridge.prom'"

# ---- the broker drains; the bridge's file says link down again
kill -TERM "$broker_pid"
exited() { [ ! -e "/proc/$1" ] || grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat"; }
must "the broker to exit" wait_for 15 exited "$broker_pid"
rc=0; wait "$broker_pid" || rc=$?
expect "the broker exits 0 on SIGTERM" test "$rc" = 0
must "link_up 0 in the status file" wait_for 10 grep -qx 'cloudtaser_bridge_link_up 0' "$status"
cp "$status" "$work/status-down.prom"
promcheck "bridge --status-file, link down after the broker left" "$work/status-down.prom"

# The check can fail: promtool rejects what breaks the format's rules.
printf '# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n' > "$work/bad-lint.prom"
printf '# TYPE x gauge\nx{a="1} 1\n' > "$work/bad-parse.prom"
expect "promtool flags a counter without _total" bash -c "! promtool check metrics < '$work/bad-lint.prom' >/dev/null 2>&1"
expect "promtool flags an unterminated label value" bash -c "! promtool check metrics < '$work/bad-parse.prom' >/dev/null 2>&1"

echo
for f in bridge.prom status-up.prom; do
  out="$(promtool check metrics < "$work/$f" 2>&1)" || true
  echo "promtool check metrics < $f: ${out:-no problems}"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
