#!/usr/bin/env bash
# Runs inside empty-root.sh: what the broker must do as a pod sees it, as uid
# 65532 in a read-only root holding only itself, its forwarding executable
# and its certificates.
#   broker-in-empty-root.sh VERSION
set -euo pipefail
version="$1"
root="$SANDBOX_ROOT"
read -r -a run <<< "$SANDBOX_RUN"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
out="$(mktemp)" err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT

# The root holds the two executables, mount points and nothing else.
listing="$(cd "$root" && find . -xdev -not -path './proc/*' | sort | tr '\n' ' ')"
expect "the root holds only the broker, its forwarding executable and mount points ($listing)" \
  test "$listing" = ". ./cloudtaser-broker ./cloudtaser-broker-forward ./etc ./etc/cloudtaser ./etc/cloudtaser/tls ./proc "
expect "the root filesystem is read-only, even for root" bash -c "! touch '$root/x' 2>/dev/null"
expect "the certificates are mounted read-only" bash -c "! touch '$root/etc/cloudtaser/tls/x' 2>/dev/null"

status() { local s=0; "${run[@]}" /cloudtaser-broker "$@" >"$out" 2>"$err" </dev/null || s=$?; echo "$s"; }

s="$(status --version)"
expect "--version exits 0 as uid 65532 (exit $s)" test "$s" = 0
expect "--version prints $version ($(head -c 80 "$out"))" grep -qF "$version" "$out"
s="$(status --help)"
expect "--help exits 0 (exit $s)" test "$s" = 0
help="$(cat "$out" "$err")"
for flag in --service-listen --bridge-listen --cert --key --ca-cert --bridge-pin; do
  expect "--help documents $flag" grep -qF -- "$flag" <<< "$help"
done
s="$(status --no-such-flag)"
expect "an unknown flag exits 2 (exit $s)" test "$s" = 2
expect "an unknown flag prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

tls=/etc/cloudtaser/tls
base=(--service-listen 127.0.0.1:8443 --bridge-listen 127.0.0.1:8444 --cert "$tls/tls.crt" --key "$tls/tls.key" --ca-cert "$tls/ca.crt")
s="$(status --service-listen 127.0.0.1:8443 --bridge-listen 127.0.0.1:8444 --cert "$tls/missing.crt" --key "$tls/tls.key" --ca-cert "$tls/ca.crt")"
expect "a missing certificate file exits 2 (exit $s)" test "$s" = 2
expect "a missing certificate file prints one line on stderr ($(head -c 100 "$err"))" test "$(wc -l < "$err")" = 1

# Serving: only once the broker advertises its metrics listener (issue 5 §3).
if grep -qF -- --metrics-listen <<< "$help"; then
  "${run[@]}" /cloudtaser-broker "${base[@]}" --metrics-listen 127.0.0.1:9090 --drain-timeout 5 \
    >"$out" 2>"$err" </dev/null &
  pid=$!
  listening=0
  for _ in $(seq 1 100); do
    ports="$(ss -ltnH | awk '{print $4}' | tr '\n' ' ')"
    if grep -q '127.0.0.1:8443 ' <<< "$ports " && grep -q '127.0.0.1:8444 ' <<< "$ports " && grep -q '127.0.0.1:9090 ' <<< "$ports "; then
      listening=1; break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  expect "it listens on 8443, 8444 and 9090 in the read-only root" test "$listening" = 1
  code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:9090$1" || true; }
  expect "/healthz answers 200" test "$(code /healthz)" = 200
  expect "/readyz is not ready with no bridge connected" test "$(code /readyz)" = 503
  expect "/metrics answers 200" test "$(code /metrics)" = 200
  # /metrics is served by the forwarding process, so it is up by now.
  fpid="$(ps -e -o pid=,ppid=,args= | awk -v p="$pid" '$2 == p && / --child=forward / {print $1}')"
  fexe="$(readlink "/proc/$fpid/exe" 2>/dev/null || true)"
  expect "the forwarding process (pid $fpid) runs the executable beside the broker ($fexe)" \
    test "$fexe" = "$root/cloudtaser-broker-forward"
  # (a process that exits between ps and awk - ps itself - is skipped, not fatal)
  uids="$(for p in $(ps -e -o pid=); do awk '/^Uid:/{print $2}' "/proc/$p/status" 2>/dev/null || true; done | sort -u | tr '\n' ' ')"
  expect "every process runs as uid 65532 or is the test's own root shell (uids: $uids)" test "$uids" = "0 65532 "
  kill -TERM "$pid" 2>/dev/null || true
  s=0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; s=timeout; fi
  [ "$s" = timeout ] || { wait "$pid" || s=$?; }
  expect "SIGTERM with no streams open exits 0 within 10 s (exit $s)" test "$s" = 0
else
  echo "note: the broker's --help has no --metrics-listen yet; the serving checks start when it does"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
