#!/usr/bin/env bash
# make bench: throughput/latency of the tunnel against direct nginx and the peers, measured in the
# same run, plus broker memory per idle wrapper stream. A benchmark, not a test: it prints tables.
#
# Part 1 ("peers"): the shared peer harness ../shared/bench/run.sh (nginx upstream; wrk/h2load;
#   socat, stunnel and haproxy mTLS chains, ssh -R) with cloudtaser-broker + vault-bridge slotted in
#   as one more row through PROJECT_START, with our real flags and the harness's PKI and upstream.
#   Everything under test is pinned to CPU $SUT_CPU, the load generator to $LG_CPU (run.sh does it).
# Part 2 ("idle"): broker+bridge+a tiny upstream; RSS/PSS of the broker's three processes before and
#   after $IDLE_STREAMS idle wrapper connections (held open by tests/bench/idle_conns.py), once the
#   broker's forward process holds them all; the same for the bridge, and for `ssh -R` as baseline.
# Results: printed, and written to build/bench/results.md (logs next to it).
#
# Knobs (defaults in brackets):
#   QUICK [0]      1 = smoke: DUR=1 RUNS=1 BULK_MB=64 CRYPTO=0 ROWS="direct-http haproxy ssh-R-pty"
#   PARTS ["peers split idle"]: split = CPU per request of each of our six processes (tests/bench/split.sh,
#                  its own nginx and wrk; DUR/ROUNDS there); RUN_SH [<repo>/../shared/bench/run.sh]; BIN [<repo>/build]
#   PROJECT_PORT [8443] BRIDGE_PORT [9443]: the project's service and bridge ports on 127.0.0.1
#   IDLE_STREAMS [10000]; IDLE_BASELINES ["ssh-R"] ("" for none); IDLE_UPSTREAM_PORT [8200]
#   STREAM_MODE [plain]: plain = the bridge carries wrapper bytes unchanged (--allow-plaintext-streams
#                  when the bridge has that flag; comparable to the peers, which all hand plain HTTP to
#                  the client); tls = wrappers speak TLS end to end to the bridge (--service-cert/--service-key
#                  from the harness PKI, PROJECT_SCHEME=https; comparable to direct-https)
#   HA [1]         1 = also a row with two brokers (--replicas 2) and one bridge linked to both, as in a
#                  cluster: kube-proxy-style nftables DNAT (numgen random) spreads the bridge's dials and the
#                  wrappers over the two (needs root and nft; skipped with a line otherwise). The throughput
#                  row comes from a second run.sh call (direct-http and the project row) whose direct-http row is
#                  its baseline; the idle part adds the pair beside the single broker.
#   HA_BRIDGE_PORT [9444] HA_PROJECT_PORT [8444]: the second broker's ports
#   BEACON [1]     1 = also a row through cloudtaser-beacon (docs/beacon.md): broker and bridge both dial
#                  the beacon on 127.0.0.1:$BEACON_PORT [9445], which pairs them and relays the link (two
#                  TLS layers on each side, one decrypt/encrypt per direction in the beacon); a third
#                  run.sh call (direct-http and the project row) whose direct-http row is its baseline
#   PIN [1] SUT_CPU [0] LG_CPU [1]; RUN_TIMEOUT [2400] seconds for the whole of run.sh
#   Anything else run.sh reads (DUR, RUNS, CONNS, ROWS, BULK_MB, CRYPTO, ...) is passed through.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
# shellcheck source=tests/bench/ssh_r.sh
. "$HERE/ssh_r.sh"
BIN=${BIN:-$ROOT/build}
OUTDIR=${OUTDIR:-$ROOT/build/bench}
RUN_SH=${RUN_SH:-$ROOT/../shared/bench/run.sh}
QUICK=${QUICK:-0}
PARTS=${PARTS:-"peers split idle"}
PROJECT_PORT=${PROJECT_PORT:-8443}; BRIDGE_PORT=${BRIDGE_PORT:-9443}
HA=${HA:-1}; HA_PROJECT_PORT=${HA_PROJECT_PORT:-8444}; HA_BRIDGE_PORT=${HA_BRIDGE_PORT:-9444}
BEACON=${BEACON:-1}; BEACON_PORT=${BEACON_PORT:-9445}
IDLE_STREAMS=${IDLE_STREAMS:-10000}; IDLE_BASELINES=${IDLE_BASELINES-"ssh-R"}
IDLE_UPSTREAM_PORT=${IDLE_UPSTREAM_PORT:-8200}
PIN=${PIN:-1}; SUT_CPU=${SUT_CPU:-0}; LG_CPU=${LG_CPU:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-2400}
PY=${PYTHON:-/usr/bin/python3}; [ -x "$PY" ] || PY=python3
[ "$(nproc)" -lt 2 ] && PIN=0
export PIN SUT_CPU LG_CPU
if [ "$QUICK" = 1 ]; then
  export DUR=${DUR:-1} RUNS=${RUNS:-1} BULK_MB=${BULK_MB:-64} CRYPTO=${CRYPTO:-0}
  export ROWS=${ROWS:-"direct-http haproxy ssh-R-pty"}
fi

BROKER=$BIN/cloudtaser-broker; BRIDGE=$BIN/vault-bridge; BEACON_BIN=$BIN/cloudtaser-beacon
for b in "$BROKER" "$BRIDGE"; do
  [ -x "$b" ] || { echo "bench: $b not built; run make first" >&2; exit 1; }
done
STREAM_MODE=${STREAM_MODE:-plain}
# Bridge flags for how wrapper streams are carried; $1 is the PKI directory (expanded by the caller).
bridge_stream_flags() {
  # The upstreams (nginx, idle_upstream.py) are not OpenBao: no health polling.
  local health=""
  if "$BRIDGE" --help 2>&1 | grep -q -- '--vault-health-interval'; then health=" --vault-health-interval 0"; fi
  case $STREAM_MODE in
  plain) if "$BRIDGE" --help 2>&1 | grep -q -- '--allow-plaintext-streams'; then echo "--allow-plaintext-streams$health"; else echo "${health# }"; fi ;;
  tls) echo "--service-cert $1/server.pem --service-key $1/server.key --service-name localhost$health" ;;
  *) echo "bench: STREAM_MODE must be plain or tls" >&2; exit 1 ;;
  esac
}
SCHEME=http; [ "$STREAM_MODE" = tls ] && SCHEME=https
# The daemons refuse to start without a pin: each pins the other's key (curl's sha256// form).
# shellcheck disable=SC2016  # expanded later, with $1 set by pin_of or inside run.sh
PIN_OF='sha256//$(openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64)'
pin_of() { eval "echo \"$PIN_OF\""; }
mkdir -p "$OUTDIR"
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo '+dirty')"

# ---------- processes we start: session leaders only, killed by group (and their descendants) ----------
OURS=(); RUN_PID=; W=$(mktemp -d /tmp/ct-bench.XXXXXX)
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
tree() { [ -d "/proc/$1" ] && echo "$1"; descendants "$1"; }
kill_tree() { # session leader pids...
  local p kids=()
  for p in "$@"; do mapfile -t -O "${#kids[@]}" kids < <(descendants "$p"); done
  for p in "$@"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5; do
    local alive=0; for p in "$@" "${kids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.2
  done
  for p in "$@"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  for p in "${kids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
  set +e
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM "$RUN_PID" 2>/dev/null   # run.sh cleans up after itself on TERM
    for _ in $(seq 50); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null
  fi
  [ ${#OURS[@]} -gt 0 ] && kill_tree "${OURS[@]}"
  OURS=(); rm -rf "$W"
  ha_nat off
}
# Two brokers behind one address, as kube-proxy spreads a Service: each new connection to the first
# broker's bridge or service port goes to one of the two at random (nftables DNAT, in the kernel, so
# no proxy process costs CPU). Loaded only for the HA rows, removed after them and on exit.
HA_TABLE=ct_bench_ha
ha_nat() { # on|off
  command -v nft >/dev/null || return 0
  nft delete table ip "$HA_TABLE" 2>/dev/null || true
  [ "$1" = on ] || return 0
  nft -f - <<EOF
table ip $HA_TABLE {
  chain out {
    type nat hook output priority -100;
    ip daddr 127.0.0.1 tcp dport $BRIDGE_PORT dnat to 127.0.0.1 : numgen random mod 2 map { 0 : $BRIDGE_PORT, 1 : $HA_BRIDGE_PORT }
    ip daddr 127.0.0.1 tcp dport $PROJECT_PORT dnat to 127.0.0.1 : numgen random mod 2 map { 0 : $PROJECT_PORT, 1 : $HA_PROJECT_PORT }
  }
}
EOF
}
ha_usable() { [ "$HA" = 1 ] && [ "$(id -u)" = 0 ] && command -v nft >/dev/null; }
trap cleanup EXIT; trap 'exit 130' INT TERM

start_bg() { # cpu name cmd... -> LAST_PID (a session leader, pinned)
  local cpu=$1 name=$2; shift 2
  if [ "$PIN" = 1 ]; then setsid taskset -c "$cpu" "$@" >>"$OUTDIR/$name.log" 2>&1 </dev/null &
  else setsid "$@" >>"$OUTDIR/$name.log" 2>&1 </dev/null & fi
  LAST_PID=$!; OURS+=("$LAST_PID")
}
stop_bg() { local p keep=(); kill_tree "$@"; for p in "${OURS[@]}"; do [[ " $* " == *" $p "* ]] || keep+=("$p"); done; OURS=("${keep[@]}"); }
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
need_free() { local p; for p; do port_free "$p" || { echo "bench: port $p on 127.0.0.1 is busy; stop what uses it or change the port knobs" >&2; exit 1; }; done; }
wait_http() { local i; for i in $(seq 100); do curl -sfk -o /dev/null --max-time 2 "$1" && return 0; sleep 0.1; done; return 1; }

MD="$OUTDIR/results.md"; : >"$MD"
emit() { printf '%s\n' "$@" | tee -a "$MD"; }
emit "# cloudtaser reverse-connect bench $(date -u +%Y-%m-%dT%H:%MZ)" "" \
  "rev $REV; host $(nproc) cpu ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)" \
  "command: $( [ "$QUICK" = 1 ] && printf 'QUICK=1 ')make bench   (tests/bench/bench.sh; PARTS=\"$PARTS\" IDLE_STREAMS=$IDLE_STREAMS STREAM_MODE=$STREAM_MODE; binaries from $BIN)" \
  "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" ""
# Everything is pinned to 2 CPUs: anything else running on them skews every row (the rows of one run
# stay comparable only roughly). Say so in the results rather than silently.
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD0" 'BEGIN{exit !(l > 1.0)}'; then
  emit "**warning: load average $LOAD0 at start: other work shares the CPUs; figures are depressed and noisy.**" ""
fi

# run.sh's PROJECT_START for $1 brokers (1, or 2 for the HA row: the second on the HA_* ports, both
# with --replicas 2, behind ha_nat). Single-quoted parts expand inside run.sh's `bash -c`, where
# BASELINE_PKI/BASELINE_UPSTREAM are set. The daemons refuse a private key others can read, and the
# harness's PKI is world-readable: the row runs from a private copy (keys 0600).
project_start() {
  local n=$1 i ports=("$PROJECT_PORT $BRIDGE_PORT" "$HA_PROJECT_PORT $HA_BRIDGE_PORT") sp bp extra=
  [ "$n" -gt 1 ] && extra=" --replicas $n"
  printf '%s\n' "exec >>'$OUTDIR/project-row.log' 2>&1" \
    'P="$BASELINE_WORK/ct-pki"; rm -rf "$P"; cp -r "$BASELINE_PKI" "$P"; chmod 700 "$P"; chmod 600 "$P"/*.key'
  for ((i = 0; i < n; i++)); do
    read -r sp bp <<<"${ports[$i]}"
    printf '%s\n' "'$BROKER' --bridge-listen 127.0.0.1:$bp --service-listen 127.0.0.1:$sp$extra"' --cert "$P/server.pem" --key "$P/server.key" --ca-cert "$P/ca.pem" --bridge-pin "$(set -- "$P/client.pem"; echo '"$PIN_OF"')" &'
  done
  printf '%s\n' "'$BRIDGE' --broker-address 127.0.0.1:$BRIDGE_PORT"' --vault-addr "http://$BASELINE_UPSTREAM" --client-cert "$P/client.pem" --client-key "$P/client.key" --ca-cert "$P/ca.pem" --broker-pin "$(set -- "$P/server.pem"; echo '"$PIN_OF"')" '"$(bridge_stream_flags '"$P"')"' &' \
    wait
}
# run.sh's PROJECT_START for the beacon row: the beacon (the harness's server certificate, which
# names 127.0.0.1), then the broker and the bridge in beacon mode with a fresh pairing key.
project_start_beacon() {
  local b="--beacon-address 127.0.0.1:$BEACON_PORT"' --beacon-ca "$P/ca.pem" --pairing-key-file "$P/pairing.key"'
  printf '%s\n' "exec >>'$OUTDIR/project-row.log' 2>&1" \
    'P="$BASELINE_WORK/ct-pki"; rm -rf "$P"; cp -r "$BASELINE_PKI" "$P"; chmod 700 "$P"; chmod 600 "$P"/*.key' \
    'openssl rand -base64 32 >"$P/pairing.key"; chmod 600 "$P/pairing.key"' \
    "'$BEACON_BIN' --listen 127.0.0.1:$BEACON_PORT"' --cert "$P/server.pem" --key "$P/server.key" &' \
    "'$BROKER' $b --service-listen 127.0.0.1:$PROJECT_PORT"' --cert "$P/server.pem" --key "$P/server.key" --ca-cert "$P/ca.pem" --bridge-pin "$(set -- "$P/client.pem"; echo '"$PIN_OF"')" &' \
    "'$BRIDGE' $b"' --vault-addr "http://$BASELINE_UPSTREAM" --client-cert "$P/client.pem" --client-key "$P/client.key" --ca-cert "$P/ca.pem" --broker-pin "$(set -- "$P/server.pem"; echo '"$PIN_OF"')" '"$(bridge_stream_flags '"$P"')"' &' \
    wait
}
# One run.sh call: $1 = its log/table name; the rest of the environment says what it runs.
run_peers() {
  local name=$1 rc=0
  export OUT="$OUTDIR/$name.md"; rm -f "$OUT"
  echo "# running $RUN_SH (log: $OUTDIR/$name.log)"
  timeout -k 30 "$RUN_TIMEOUT" bash "$RUN_SH" >"$OUTDIR/$name.log" 2>&1 </dev/null &
  RUN_PID=$!
  tail -n +1 --pid="$RUN_PID" -f "$OUTDIR/$name.log" 2>/dev/null || true
  wait "$RUN_PID" || rc=$?; RUN_PID=
  if [ -s "$OUT" ]; then
    sed -e '/^# tunnel baseline/d' -e 's/^# /    /' "$OUT" >>"$MD"
    awk '/^## per-core crypto/,/^$/' "$OUTDIR/$name.log" | sed 's/^/    /' >>"$MD"
    [ $rc = 0 ] || emit "" "run.sh exited with status $rc (see $OUTDIR/$name.log)"
  else
    emit "run.sh failed (status $rc) before writing its table; last lines of $OUTDIR/$name.log:" ""
    tail -20 "$OUTDIR/$name.log" | sed 's/^/    /' | tee -a "$MD"
  fi
  emit ""
}

# ================================================================ part 1: peers + project row
if [[ " $PARTS " == *" peers "* ]]; then
  if [ ! -f "$RUN_SH" ]; then
    emit "## throughput and latency: SKIPPED" "" \
      "The peer harness was not found at $RUN_SH (it lives beside the repository, in ../shared/bench/run.sh)." \
      "Set RUN_SH=/path/to/run.sh to use one elsewhere. Only the idle-stream memory part runs." ""
    echo "bench: peer harness $RUN_SH not found; skipping the throughput table" >&2
  else
    need_free "$PROJECT_PORT" "$BRIDGE_PORT"
    : >"$OUTDIR/project-row.log"
    PROJECT_START=$(project_start 1)
    export PROJECT_START PROJECT_PORT PROJECT_SCHEME=$SCHEME PROJECT_NAME="cloudtaser broker+bridge ($STREAM_MODE streams)"
    emit "## throughput and latency (shared/bench/run.sh, same run; req/s | p50 ms | p99 ms)" ""
    run_peers peers
    if ha_usable; then
      need_free "$HA_PROJECT_PORT" "$HA_BRIDGE_PORT"
      ha_nat on
      PROJECT_START=$(project_start 2)
      PROJECT_NAME="cloudtaser HA: 2 brokers, bridge linked to both ($STREAM_MODE streams)"
      export PROJECT_START PROJECT_NAME
      emit "## HA: two brokers (--replicas 2) behind kube-proxy-style nftables DNAT, one bridge linked to both" "" \
        "A second run.sh call (direct-http and the project row): compare each project row with the direct-http row of its own call." \
        "The DNAT makes conntrack track every connection to the project port (not direct-http's): part of the cost, as in a cluster." ""
      ROWS="direct-http" run_peers peers-ha   # run.sh adds the project row
      ha_nat off
    else
      emit "## HA row: skipped (HA=$HA; needs root and nft for the kube-proxy-style DNAT)" ""
    fi
    if [ "$BEACON" = 1 ] && [ -x "$BEACON_BIN" ]; then
      need_free "$PROJECT_PORT" "$BEACON_PORT"
      PROJECT_START=$(project_start_beacon)
      PROJECT_NAME="cloudtaser via beacon: broker and bridge both dial it ($STREAM_MODE streams)"
      export PROJECT_START PROJECT_NAME
      emit "## Beacon relay mode: broker and bridge both dial cloudtaser-beacon, which relays the link" "" \
        "A third run.sh call (direct-http and the project row): compare the project row with the direct-http row of its own call," \
        "and that ratio with the reverse-connect row's in the first call." ""
      ROWS="direct-http" run_peers peers-beacon
    else
      emit "## Beacon row: skipped (BEACON=$BEACON; $BEACON_BIN built: $([ -x "$BEACON_BIN" ] && echo yes || echo no))" ""
    fi
  fi
fi

# ================================================================ part 2: memory per idle stream
SSH_PORT=12222; SSH_R_PORT=19004
mem_of() { # pids... -> "rss_kib pss_kib nprocs"
  local p r=0 s=0 n=0 v
  for p; do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null); r=$((r + ${v:-0}))
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); s=$((s + ${v:-0}))
    n=$((n + 1))
  done
  echo "$r $s $n"
}
fds_of() { local p n=0 c; for p; do c=$(ls "/proc/$p/fd" 2>/dev/null | wc -l); n=$((n + c)); done; echo "$n"; }
wait_fds() { # want seconds pid... : until the tree's fd count reaches want; prints the count reached
  local want=$1 secs=$2 n=0 i; shift 2
  for i in $(seq $((secs * 5))); do
    n=$(fds_of $(for p; do tree "$p"; done)); [ "$n" -ge "$want" ] && break; sleep 0.2
  done
  echo "$n"
}
make_pki() {
  mkdir -p "$W/pki"; (
    cd "$W/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
      -keyout ca.key -out ca.pem 2>/dev/null
    for n in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout $n.key -out $n.csr 2>/dev/null
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\n' \
        "$([ $n = server ] && echo serverAuth || echo clientAuth)" >$n.ext
      openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile $n.ext -out $n.pem 2>/dev/null
    done
    chmod 600 ./*.key )  # the daemons refuse a key others can read
}
# Every idle connection comes from 127.0.0.1: lift the broker's per-source cap (256 by default) to
# the count, or it refuses all but the first 256.
broker_idle_flags() {
  if "$BROKER" --help 2>&1 | grep -q -- '--max-wrappers-per-source'; then echo "--max-wrappers-per-source $IDLE_STREAMS"; fi
}
start_system() { # name -> SRV_PID (the "broker" side), CLI_PID (the "bridge" side), SYS_PORT
  # Our daemons: the brokers' TLS flags, and the one bridge either system runs.
  local tls=(--cert "$W/pki/server.pem" --key "$W/pki/server.key" --ca-cert "$W/pki/ca.pem"
             --bridge-pin "$(pin_of "$W/pki/client.pem")" $(broker_idle_flags))
  local bridge=("$BRIDGE" --broker-address "127.0.0.1:$BRIDGE_PORT" --vault-addr "http://127.0.0.1:$IDLE_UPSTREAM_PORT"
                --client-cert "$W/pki/client.pem" --client-key "$W/pki/client.key" --ca-cert "$W/pki/ca.pem"
                --broker-pin "$(pin_of "$W/pki/server.pem")" $(bridge_stream_flags "$W/pki"))
  case $1 in
  project)
    start_bg "$SUT_CPU" idle-broker "$BROKER" --bridge-listen "127.0.0.1:$BRIDGE_PORT" \
      --service-listen "127.0.0.1:$PROJECT_PORT" "${tls[@]}"; SRV_PID=$LAST_PID
    start_bg "$SUT_CPU" idle-bridge "${bridge[@]}"; CLI_PID=$LAST_PID
    SYS_PORT=$PROJECT_PORT; SYS_SCHEME=$SCHEME ;;
  project-ha) # both brokers under one session leader, so the tree holds both
    local b1=("$BROKER" --bridge-listen "127.0.0.1:$BRIDGE_PORT" --service-listen "127.0.0.1:$PROJECT_PORT" --replicas 2)
    local b2=("$BROKER" --bridge-listen "127.0.0.1:$HA_BRIDGE_PORT" --service-listen "127.0.0.1:$HA_PROJECT_PORT" --replicas 2)
    start_bg "$SUT_CPU" idle-brokers \
      bash -c "$(printf '%q ' "${b1[@]}" "${tls[@]}") & $(printf '%q ' "${b2[@]}" "${tls[@]}") & wait"
    SRV_PID=$LAST_PID
    start_bg "$SUT_CPU" idle-bridge "${bridge[@]}"; CLI_PID=$LAST_PID
    SYS_PORT=$PROJECT_PORT; SYS_SCHEME=$SCHEME ;;
  ssh-R)
    ssh_r_setup "$W/ssh" "$SSH_PORT"
    start_bg "$SUT_CPU" idle-sshd /usr/sbin/sshd -D -e -f "$W/ssh/sshd_config"; SRV_PID=$LAST_PID
    local i; for i in $(seq 50); do port_free "$SSH_PORT" || break; sleep 0.1; done
    ssh_r_client "$W/ssh" "$SSH_PORT" "$SSH_R_PORT" "$IDLE_UPSTREAM_PORT"
    start_bg "$SUT_CPU" idle-ssh "${SSH_R_CLIENT[@]}"; CLI_PID=$LAST_PID
    SYS_PORT=$SSH_R_PORT; SYS_SCHEME=http ;;
  *) echo "bench: unknown idle system $1" >&2; return 1 ;;
  esac
}
kib_per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{ if (n > 0) printf "%.2f", (b - a) / n; else print "-" }'; }
mib() { awk -v k="$1" 'BEGIN{ printf "%.1f", k / 1024 }'; }

IDLE_ROWS=()
idle_run() { # system label_server label_client
  local sys=$1 ls=$2 lc=$3 url st opened alive srv_fd0 cli_fd0 srv_fd1 cli_fd1 m0s m0c m1s m1c t_req n
  start_system "$sys" || return 1
  url="$SYS_SCHEME://127.0.0.1:$SYS_PORT/v1/secret/data/app"
  if ! wait_http "$url"; then
    IDLE_ROWS+=("| $ls | did not answer on $SYS_PORT (see $OUTDIR/idle-*.log) |"); stop_bg "$SRV_PID" "$CLI_PID"; return 1
  fi
  for _ in $(seq 20); do curl -sfk -o /dev/null --max-time 2 "$url" || true; done   # warm code paths
  sleep 1
  srv_fd0=$(fds_of $(tree "$SRV_PID")); cli_fd0=$(fds_of $(tree "$CLI_PID"))
  m0s=$(mem_of $(tree "$SRV_PID")); m0c=$(mem_of $(tree "$CLI_PID"))
  st="$W/idle.status"; rm -f "$st" "$W/idle.check"
  start_bg "$LG_CPU" idle-client "$PY" "$HERE/idle_conns.py" --port "$SYS_PORT" --count "$IDLE_STREAMS" \
    --status "$st" --check "$W/idle.check" --hold 600 --open-deadline 120
  local hp=$LAST_PID i
  for i in $(seq 700); do grep -q '^opened' "$st" 2>/dev/null && break; kill -0 "$hp" 2>/dev/null || break; sleep 0.2; done
  opened=$(awk '/^opened/{print $2}' "$st" 2>/dev/null); opened=${opened:-0}
  # the broker (or sshd) holds one fd per wrapper stream; the bridge (or ssh) one per upstream connection
  srv_fd1=$(wait_fds $((srv_fd0 + opened)) 60 "$SRV_PID")
  cli_fd1=$(wait_fds $((cli_fd0 + opened)) 60 "$CLI_PID")
  sleep 2
  m1s=$(mem_of $(tree "$SRV_PID")); m1c=$(mem_of $(tree "$CLI_PID"))
  srv_fd1=$(fds_of $(tree "$SRV_PID")); cli_fd1=$(fds_of $(tree "$CLI_PID"))
  t_req=$(curl -sk -o /dev/null --max-time 10 -w '%{time_total}' "$url" 2>/dev/null || echo nan)
  t_req=$(awk -v t="$t_req" 'BEGIN{ if (t == "nan") print "fail"; else printf "%.1f", t * 1000 }')
  touch "$W/idle.check"
  for i in $(seq 100); do grep -q '^alive' "$st" 2>/dev/null && break; sleep 0.1; done
  alive=$(awk '/^alive/{print $2}' "$st" 2>/dev/null); alive=${alive:-?}
  stop_bg "$hp"; stop_bg "$SRV_PID" "$CLI_PID"
  n=$opened
  read -r r0 p0 np <<<"$m0s"; read -r r1 p1 _ <<<"$m1s"
  IDLE_ROWS+=("| $ls | $np | $(mib "$r0") | $(mib "$r1") | **$(kib_per "$r0" "$r1" "$n")** | $(kib_per "$p0" "$p1" "$n") | $((srv_fd1 - srv_fd0)) | $opened/$IDLE_STREAMS | $alive | $t_req |")
  read -r r0 p0 np <<<"$m0c"; read -r r1 p1 _ <<<"$m1c"
  IDLE_ROWS+=("| $lc | $np | $(mib "$r0") | $(mib "$r1") | $(kib_per "$r0" "$r1" "$n") | $(kib_per "$p0" "$p1" "$n") | $((cli_fd1 - cli_fd0)) | | | |")
}

if [[ " $PARTS " == *" split "* ]]; then
  # The row's total above, split by process: which of the six a change helped (issue 16).
  emit "## CPU per request by process (tests/bench/split.sh; same machine, its own nginx and wrk)" ""
  echo "# running tests/bench/split.sh (log: $OUTDIR/split.log)"
  if STREAM_MODE=$STREAM_MODE BIN=$BIN SUT_CPU=$SUT_CPU LG_CPU=$LG_CPU OUT="$OUTDIR/split.md" \
    bash "$HERE/split.sh" >"$OUTDIR/split.log" 2>&1 </dev/null; then
    sed 's/^# /    /' "$OUTDIR/split.md" | tee -a "$MD"
  else
    emit "split.sh failed; last lines of $OUTDIR/split.log:" ""
    tail -20 "$OUTDIR/split.log" | sed 's/^/    /' | tee -a "$MD"
  fi
  emit ""
fi

if [[ " $PARTS " == *" idle "* ]]; then
  echo "# idle-stream memory: $IDLE_STREAMS idle wrapper connections (logs: $OUTDIR/idle-*.log)"
  rm -f "$OUTDIR"/idle-*.log
  if [[ " $IDLE_BASELINES " == *" ssh-R "* ]] && ! { command -v ssh >/dev/null && [ -x /usr/sbin/sshd ]; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then   # as run.sh does; keep the service stopped
      echo "# installing openssh-server openssh-client for the ssh -R baseline" >&2
      made_policy=0
      if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client; } >/dev/null || true
      [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    fi
    command -v ssh >/dev/null && [ -x /usr/sbin/sshd ] || { echo "bench: no sshd; skipping the ssh -R idle baseline" >&2; IDLE_BASELINES=${IDLE_BASELINES//ssh-R/}; }
  fi
  need_free "$IDLE_UPSTREAM_PORT" "$PROJECT_PORT" "$BRIDGE_PORT"
  [[ " $IDLE_BASELINES " == *" ssh-R "* ]] && need_free "$SSH_PORT" "$SSH_R_PORT"
  make_pki
  start_bg "$SUT_CPU" idle-upstream "$PY" "$HERE/idle_upstream.py" --port "$IDLE_UPSTREAM_PORT" --max-seconds 1200
  UP_PID=$LAST_PID
  wait_http "http://127.0.0.1:$IDLE_UPSTREAM_PORT/v1/secret/data/app" || { echo "bench: idle upstream did not start" >&2; exit 1; }
  idle_run project "cloudtaser-broker (3 procs)" "vault-bridge (3 procs)" || true
  if ha_usable; then
    need_free "$HA_PROJECT_PORT" "$HA_BRIDGE_PORT"
    ha_nat on
    idle_run project-ha "HA: 2 × cloudtaser-broker (6 procs + sh)" "HA: vault-bridge linked to both" || true
    ha_nat off
  fi
  for b in $IDLE_BASELINES; do
    case $b in ssh-R) idle_run ssh-R "ssh -R: sshd (broker side)" "ssh -R: ssh client (bridge side)" || true ;; esac
  done
  stop_bg "$UP_PID"
  emit "## memory per idle wrapper stream ($IDLE_STREAMS connections held open, nothing sent)" "" \
    "RSS = sum of VmRSS over the daemon's processes (PSS from smaps_rollup in the next column), before and after" \
    "the connections, once the daemon's fd count shows them all; per stream = delta / connections opened." \
    "Kernel socket memory is not included. \"request\" = one GET through the tunnel while they are held." "" \
    "| daemon | procs | RSS before MiB | RSS after MiB | KiB/stream RSS | KiB/stream PSS | fds added | opened | alive at end | request ms |" \
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  emit "${IDLE_ROWS[@]}"
  emit "| target (issue 2): broker | | | | ≤ 4 | | | | | |" ""
fi
emit "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# written to $MD"
