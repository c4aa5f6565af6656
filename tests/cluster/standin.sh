# shellcheck shell=bash
# Sourced by the empty-root checks of the bridge and the beacon: OpenBao's stand-in
# (tests/upstream_standin.py) on 127.0.0.1:8200, token t0ken, one secret canary=value=$1,
# its log in $2. STANDIN_PID is its pid. Returns once it says it listens, so that the
# bridge's first health probe and the first request do not race the interpreter's
# start-up (a loaded CI machine lost that race), or 1 after 10 s.
start_standin() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/../upstream_standin.py" --listen 127.0.0.1:8200 \
    --token t0ken --secret "canary=value=$1" 2>"$2" &
  # shellcheck disable=SC2034 # used by the sourcing script
  STANDIN_PID=$!
  local _
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
