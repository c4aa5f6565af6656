#!/usr/bin/env bash
# make bench-split: CPU per request of each of the tunnel's processes (broker parent, TLS, forward;
# bridge the same), so that a change can be pinned to the process it helped. The shared harness
# (../shared/bench/run.sh) gives the row's total; this gives its parts, measured the same way: CPU
# time of every thread from /proc/PID/task/*/schedstat, around wrk runs with 1 KiB answers at each
# connection count, and around single-stream bulk curls (CPU seconds per GiB).
#
# A/B: with BIN_B set, the two builds run alternately (A B A B ...), ROUNDS times each, in one
# sitting on the same upstream, and the table shows the median of each side and B/A. This is how a
# change's effect is measured (issue 16): the machine's drift hits both sides alike.
#
#   CONNS ["16 256"]; DUR [5] seconds per wrk run; ROUNDS [3] runs per build and connection count
#   CLOSE_CONNS [16]: also a "close" column, wrk with Connection: close at that many connections (a new
#            wrapper connection, stream and OpenBao connection per request); "" for none
#   FLAGS_A, FLAGS_B [""]: extra bridge flags for build A / B; with FLAGS_B and no BIN_B, B is the same
#            build with other flags, e.g. FLAGS_B=--proxy-protocol (nginx then also listens with
#            proxy_protocol on a second port, and the bridge with the flag is pointed there)
#   BULK_MB [256] size of the bulk file (0: no bulk column); STREAM_MODE [plain] plain | tls
#   BIN [build] BIN_B [unset] SUT_CPU [0] LG_CPU [1]; OUT [unset] also write the table there
#   SSH_R [0] 1 = also measure `ssh -R` (sshd and an ssh -N -R client, aes128-gcm as the shared harness
#            runs it) in the same rounds, as build S, against the same nginx: the table's A/S column is
#            the tunnel's CPU over ssh's, measured the same way (plain streams; not with BIN_B)
#   PACE_MS [0]: each wrk connection waits this long before each request (wrk's Lua delay()), so a
#            row that answers faster does not simply do more: at c=16 and PACE_MS=4 both rows are
#            offered about 4,000 req/s, and CPU per request compares like for like (the req/s row
#            shows what each achieved)
#   COUNTS [0] 1 = then count build A's syscalls, context switches and wake-ups per request and
#            process at each connection count (perf stat, tracepoints): what the hand-offs cost
#   PERF [0] 1 = then profile build A at c=16 (perf record -e cpu-clock on the SUT cpu) and print the
#            top symbols of each process (build/bench/split.perf.data stays for perf report);
#            PERF_EVENT [cpu-clock], e.g. cpu-clock:u for user space alone
# Ports: nginx 127.0.0.1:18210, service 127.0.0.1:18453, bridge link 127.0.0.1:19453.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build}; BIN_B=${BIN_B:-}; FLAGS_A=${FLAGS_A:-}; FLAGS_B=${FLAGS_B:-}
[ -n "$FLAGS_B" ] && [ -z "$BIN_B" ] && BIN_B=$BIN
CONNS=${CONNS:-"16 256"}; CLOSE_CONNS=${CLOSE_CONNS-16}; DUR=${DUR:-5}; ROUNDS=${ROUNDS:-3}; BULK_MB=${BULK_MB:-256}; PERF=${PERF:-0}
COUNTS=${COUNTS:-0}; PACE_MS=${PACE_MS:-0}; SSH_R=${SSH_R:-0}; SSHD_PORT=18222; SSHR_PORT=18223
STREAM_MODE=${STREAM_MODE:-plain}; SUT_CPU=${SUT_CPU:-0}; LG_CPU=${LG_CPU:-1}
UP=18210; UP_PP=18211; SVC=18453; LINK=19453
if [ "$SSH_R" = 1 ] && { [ -n "$BIN_B" ] || [ "$STREAM_MODE" != plain ]; }; then
  echo "bench-split: SSH_R=1 compares build A with plain streams to ssh -R; unset BIN_B/FLAGS_B, STREAM_MODE=plain" >&2
  exit 2
fi
[ "$(nproc)" -ge 2 ] || { echo "bench-split: needs 2 CPUs (daemons and load generator pinned apart)" >&2; exit 1; }
for b in "$BIN" ${BIN_B:+"$BIN_B"}; do
  if [ ! -x "$b/cloudtaser-broker" ] || [ ! -x "$b/vault-bridge" ]; then
    echo "bench-split: no daemons in $b; run make" >&2; exit 1
  fi
done
if ! command -v nginx >/dev/null && [ -x /usr/sbin/nginx ]; then PATH=$PATH:/usr/sbin; fi
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ "$SSH_R" = 1 ]; then
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh >/dev/null || missing+=(openssh-client)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing ${missing[*]}" >&2
    # policy-rc.d: the packages' scripts must not start the system's nginx or sshd
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    systemctl disable --now nginx >/dev/null 2>&1 || true
  else
    echo "bench-split: needs ${missing[*]}: apt-get install ${missing[*]}" >&2; exit 1
  fi
fi

W=$(mktemp -d /tmp/ct-split.XXXXXX); SHM=$(mktemp -d /dev/shm/ct-split.XXXXXX); chmod 755 "$W" "$SHM"
PIDS=()
stop() { # session leaders...
  local p
  for p in "$@"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  done
}
cleanup() { set +e; [ ${#PIDS[@]} -gt 0 ] && stop "${PIDS[@]}"; rm -rf "$W" "$SHM"; }
trap cleanup EXIT; trap 'exit 130' INT TERM
start() { # log cmd... -> LAST_PID (own session, pinned to the SUT cpu)
  local log=$1; shift
  setsid taskset -c "$SUT_CPU" "$@" >"$log" 2>&1 </dev/null &
  LAST_PID=$!; PIDS+=("$LAST_PID")
}
wait_http() { for _ in $(seq 50); do curl -sfk -o /dev/null --max-time 2 "$@" && return 0; sleep 0.1; done; return 1; }

# ---------- upstream: nginx, the harness's 1 KiB KV answer and a bulk file in tmpfs ----------
head -c 1024 /dev/zero | tr '\0' 'A' | sed 's/^/{"data":{"data":{"v":"/; s/$/"}}}/' >"$W/kv.json"
[ "$BULK_MB" -gt 0 ] && dd if=/dev/zero of="$SHM/big" bs=1M count="$BULK_MB" status=none && chmod 644 "$SHM/big"
cat >"$W/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $W/b; proxy_temp_path $W/p; fastcgi_temp_path $W/f;
  uwsgi_temp_path $W/u; scgi_temp_path $W/s; sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 10000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UP backlog=4096;
    listen 127.0.0.1:$UP_PP backlog=4096 proxy_protocol;
    location = /v1/secret/data/app { default_type application/json; alias $W/kv.json; }
    location = /big { default_type application/octet-stream; alias $SHM/big; }
  }
}
EOF
start "$W/nginx.log" nginx -c "$W/nginx.conf" -e "$W/nginx-error.log"
wait_http "http://127.0.0.1:$UP/v1/secret/data/app" || { echo "bench-split: nginx did not start" >&2; exit 1; }

"$ROOT/deploy/cloudtaser-certs" --out "$W/pki" --external-host localhost >/dev/null
P=$W/pki
stream_flags=(--allow-plaintext-streams); scheme=http; curl_tls=()
if [ "$STREAM_MODE" = tls ]; then
  stream_flags=(--service-cert "$P/service/tls.crt" --service-key "$P/service/tls.key"); scheme=https
  curl_tls=(--cacert "$P/ca/ca.crt" --resolve "cloudtaser-broker.cloudtaser-system.svc:$SVC:127.0.0.1")
fi
host=127.0.0.1; [ "$STREAM_MODE" = tls ] && host=cloudtaser-broker.cloudtaser-system.svc
base="$scheme://$host:$SVC"

# ---------- the tunnel of one build, and its six processes by role ----------
BROKER_PID=; BRIDGE_PID=
tunnel_up() { # bin extra-bridge-flags
  local up=$UP extra
  read -r -a extra <<<"$2"
  [[ " $2 " == *" --proxy-protocol "* ]] && up=$UP_PP
  start "$W/broker.log" "$1/cloudtaser-broker" --bridge-listen 127.0.0.1:$LINK --service-listen 127.0.0.1:$SVC \
    --cert "$P/broker/tls.crt" --key "$P/broker/tls.key" --ca-cert "$P/ca/ca.crt"
  BROKER_PID=$LAST_PID
  start "$W/bridge.log" "$1/vault-bridge" --broker-address 127.0.0.1:$LINK --vault-addr "http://127.0.0.1:$up" \
    --broker-name localhost --client-cert "$P/bridge/tls.crt" --client-key "$P/bridge/tls.key" \
    --ca-cert "$P/ca/ca.crt" "${stream_flags[@]}" --vault-health-interval 0 "${extra[@]}"
  BRIDGE_PID=$LAST_PID
  wait_http "${curl_tls[@]}" "$base/v1/secret/data/app" ||
    { echo "bench-split: the tunnel of $1 did not come up" >&2; cat "$W"/broker.log "$W"/bridge.log >&2; exit 1; }
}
tunnel_down() { stop "$BROKER_PID" "$BRIDGE_PID"; PIDS=("${PIDS[0]}"); }
ROLES=(broker-parent broker-tls broker-forward bridge-parent bridge-tls bridge-forward)

# ---------- ssh -R, as the shared harness runs it: sshd, and ssh -N -R dialling it ----------
SSHD_PID=; SSH_PID=; KIND=tunnel; tunnel_base=$base
if [ "$SSH_R" = 1 ]; then
  ROLES+=(sshd sshd-session sshd-child ssh)
  # shellcheck source=tests/bench/ssh_r.sh
  . "$ROOT/tests/bench/ssh_r.sh"
  ssh_r_setup "$W/ssh" "$SSHD_PORT"
  ssh_r_client "$W/ssh" "$SSHD_PORT" "$SSHR_PORT" "$UP"
fi
ssh_up() {
  start "$W/sshd.log" /usr/sbin/sshd -D -e -f "$W/ssh/sshd_config"; SSHD_PID=$LAST_PID
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SSHD_PORT") 2>/dev/null && break; sleep 0.1; done
  start "$W/ssh.log" "${SSH_R_CLIENT[@]}"
  SSH_PID=$LAST_PID; KIND=ssh; base=http://127.0.0.1:$SSHR_PORT
  wait_http "$base/v1/secret/data/app" || { echo "bench-split: ssh -R did not come up" >&2; cat "$W"/ssh*.log >&2; exit 1; }
}
ssh_down() { stop "$SSH_PID" "$SSHD_PID"; PIDS=("${PIDS[0]}"); KIND=tunnel; base=$tunnel_base; }

role_pids() { # -> "role pid" lines: each parent, its --child=tls and its forwarding executable
  local side parent c g args
  if [ "$KIND" = ssh ]; then # the listener, its per-connection process, that one's child, the client
    echo "sshd $SSHD_PID"
    for c in $(ps -o pid= --ppid "$SSHD_PID"); do
      echo "sshd-session $c"
      for g in $(ps -o pid= --ppid "$c"); do echo "sshd-child $g"; done
    done
    echo "ssh $SSH_PID"
    return
  fi
  for side in broker:$BROKER_PID bridge:$BRIDGE_PID; do
    parent=${side#*:}
    echo "${side%%:*}-parent $parent"
    for c in $(ps -o pid= --ppid "$parent"); do
      args=$(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null || true)
      case $args in
      *--child=tls*) echo "${side%%:*}-tls $c" ;;
      *--child=forward*) echo "${side%%:*}-forward $c" ;;
      esac
    done
  done
}
cpu_ns() { # pid: every thread's CPU time (schedstat's first field)
  local t s=0 v
  for t in /proc/"$1"/task/*/schedstat; do read -r v _ <"$t" 2>/dev/null && s=$((s + v)); done
  echo "$s"
}
snapshot() { local r p; while read -r r p; do echo "$r $(cpu_ns "$p")"; done < <(role_pids); }
# One measurement: "label" and a command that prints the work done (requests, or bytes); appends
# "label role value" lines to $RES, value = µs per request (or s per GiB for bulk).
RES=$W/results
measure() { # build label unit cmd...
  local build=$1 label=$2 unit=$3; shift 3
  local before after work
  before=$(snapshot)
  work=$("$@")
  after=$(snapshot)
  if [ -z "$work" ] || [ "$work" = 0 ]; then echo "bench-split: no work done in $label" >&2; return 0; fi
  join <(sort <<<"$before") <(sort <<<"$after") | awk -v b="$build" -v l="$label" -v w="$work" -v u="$unit" '
    { d = $3 - $2; v = (u == "req") ? d / 1000 / w : d / 1e9 / (w / 1073741824); print b, l, $1, v; t += v }
    END { print b, l, "total", t }' >>"$RES"
  [ "$unit" = req ] && echo "$build $label req/s $(awk -v w="$work" -v d="$DUR" 'BEGIN{printf "%.0f", w/d}')" >>"$RES"
  return 0
}
PACE=()
if [ "$PACE_MS" != 0 ]; then
  printf 'function delay()\n  return %s\nend\n' "$PACE_MS" >"$W/pace.lua"; PACE=(-s "$W/pace.lua")
fi
wrk_requests() { # conns [wrk args...] -> completed requests
  taskset -c "$LG_CPU" wrk -t1 -c"$1" -d"${DUR}s" "${PACE[@]}" "${@:2}" "$base/v1/secret/data/app" 2>/dev/null |
    awk '/requests in/ {print $1}'
}
# Connections, TLS sessions and the daemons' buffers, before anything is measured.
warm_up() { taskset -c "$LG_CPU" wrk -t1 -c16 -d1s "$base/v1/secret/data/app" >/dev/null 2>&1 || true; }
bulk_bytes() { taskset -c "$LG_CPU" curl -sf "${curl_tls[@]}" -o /dev/null --max-time 120 -w '%{size_download}' "$base/big" || echo 0; }

builds=(A); [ -n "$BIN_B" ] && builds+=(B); [ "$SSH_R" = 1 ] && builds+=(S)
bin_of() { if [ "$1" = A ]; then echo "$BIN"; else echo "$BIN_B"; fi; }
flags_of() { if [ "$1" = A ]; then echo "$FLAGS_A"; else echo "$FLAGS_B"; fi; }
: >"$RES"
for round in $(seq "$ROUNDS"); do
  for b in "${builds[@]}"; do
    if [ "$b" = S ]; then ssh_up; else tunnel_up "$(bin_of "$b")" "$(flags_of "$b")"; fi
    warm_up
    for c in $CONNS; do measure "$b" "c=$c" req wrk_requests "$c"; done
    [ -n "$CLOSE_CONNS" ] && measure "$b" close req wrk_requests "$CLOSE_CONNS" -H "Connection: close"
    [ "$BULK_MB" -gt 0 ] && measure "$b" bulk GiB bulk_bytes
    if [ "$b" = S ]; then ssh_down; else tunnel_down; fi
    echo "# round $round build $b done" >&2
  done
done

counts_of() { # tunnel | ssh
  # Per process and request: syscalls entered, context switches (the process
  # left the CPU), and sched_wakeup of it (another task made it runnable).
  # perf stat counts only while a thread of the given pids runs, except the
  # wake-ups, which are counted in the waker: so those are read off the
  # tracepoint's target pid system-wide.
  # user and system CPU ticks of a process and its threads (/proc/PID/stat fields 14, 15)
  ut_st() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
  if [ "$1" = ssh ]; then ssh_up; else tunnel_up "$BIN" "$FLAGS_A"; fi
  warm_up
  role_pids >"$W/roles"
  {
    echo "# per request of each process, $([ "$1" = ssh ] && echo "ssh -R" || echo "build A") (wrk ${DUR}s): syscalls entered, context switches, wake-ups"
    echo "# by another task, and the share of its CPU time spent in the kernel (/proc/PID/stat)"
    printf "| process |"; for c in $CONNS; do printf " c=%s sys | cs | wake | kernel |" "$c"; done
    printf "\n|---|"; for _ in $CONNS; do printf -- "---:|---:|---:|---:|"; done; printf "\n"
  } >"$W/counts.head"
  for c in $CONNS; do
    spids=()
    while read -r _ pid; do
      perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" \
        -o "$W/stat-$c-$pid" -- sleep "$DUR" &
      spids+=($!)
    done <"$W/roles"
    perf record -q -e sched:sched_wakeup -a -o "$W/wake-$c.data" -- sleep "$DUR" >/dev/null 2>&1 &
    rpid=$!
    while read -r _ pid; do echo "$pid $(ut_st "$pid")"; done <"$W/roles" >"$W/ticks0-$c"
    reqs=$(wrk_requests "$c")
    while read -r _ pid; do echo "$pid $(ut_st "$pid")"; done <"$W/roles" >"$W/ticks1-$c"
    wait "${spids[@]}" "$rpid" || true
    perf script -i "$W/wake-$c.data" -F trace 2>/dev/null |
      sed -n 's/.* pid=\([0-9]*\) .*/\1/p' | sort | uniq -c >"$W/wakes-$c"
    echo "$reqs" >"$W/reqs-$c"
  done
  if [ "$1" = ssh ]; then ssh_down; else tunnel_down; fi
  {
    cat "$W/counts.head"
    while read -r role pid; do
      printf "| %s |" "$role"
      for c in $CONNS; do
        reqs=$(cat "$W/reqs-$c"); [ -n "$reqs" ] && [ "$reqs" != 0 ] || reqs=1
        # perf stat -x, lines: count,unit,event,...
        awk -F, -v r="$reqs" '$3 ~ /sys_enter/ { S = $1 } $3 ~ /context-switches/ { C = $1 }
          END { printf " %.2f | %.2f |", S / r, C / r }' "$W/stat-$c-$pid"
        awk -v p="$pid" -v r="$reqs" '$2 == p { w += $1 } END { printf " %.2f |", w / r }' "$W/wakes-$c"
        join <(sort "$W/ticks0-$c") <(sort "$W/ticks1-$c") | awk -v p="$pid" '$1 == p {
          u = $4 - $2; k = $5 - $3; if (u + k > 0) printf " %.0f %% |", 100 * k / (u + k); else printf " |" }'
      done
      printf "\n"
    done <"$W/roles"
    for c in $CONNS; do printf "# c=%s: %s requests\n" "$c" "$(cat "$W/reqs-$c")"; done
  }
}
if [ "$COUNTS" = 1 ]; then
  counts_of tunnel >"$W/counts.out"
  if [ "$SSH_R" = 1 ]; then counts_of ssh >>"$W/counts.out"; fi
  tee ${OUT:+"$OUT.counts"} <"$W/counts.out"
fi

if [ "$PERF" = 1 ]; then
  PERF_OUT=$ROOT/build/bench/split.perf.data; mkdir -p "$(dirname "$PERF_OUT")"
  tunnel_up "$BIN" "$FLAGS_A"
  warm_up
  role_pids >"$W/roles"
  perf record -q -e "${PERF_EVENT:-cpu-clock}" -C "$SUT_CPU" -g -o "$PERF_OUT" -- \
    taskset -c "$LG_CPU" wrk -t1 -c16 -d"${DUR}s" "$base/v1/secret/data/app" >/dev/null 2>&1
  tunnel_down
  while read -r role pid; do
    echo "## perf: $role (pid $pid), top symbols by self time, c=16"
    # A process with no samples prints nothing, and head ends perf early: neither is an error.
    perf report -i "$PERF_OUT" --pid "$pid" --no-children --sort sym --stdio -g none 2>/dev/null |
      awk -v n="${PERF_TOP:-25}" '!/^#/ && NF { print; if (++k >= n) exit }' || true
  done <"$W/roles"
fi

# ---------- table: medians per build, and B/A ----------
rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo '+dirty')"
{
  pace=; [ "$PACE_MS" != 0 ] && pace=", each connection pausing ${PACE_MS} ms before each request"
  echo "# bench-split rev $rev, $STREAM_MODE streams, wrk ${DUR}s x $ROUNDS rounds per build (median)$pace, SUT cpu $SUT_CPU, load $(cut -d' ' -f1 /proc/loadavg)"
  echo "# A = $BIN${FLAGS_A:+ $FLAGS_A}${BIN_B:+, B = $BIN_B}$([ "$SSH_R" = 1 ] && echo ", S = ssh -R (aes128-gcm)")${FLAGS_B:+ $FLAGS_B}; CPU µs per request at each connection count (close: c=$CLOSE_CONNS, Connection: close), CPU s per GiB in bulk"
  cols=(); for c in $CONNS; do cols+=("c=$c"); done; [ -n "$CLOSE_CONNS" ] && cols+=(close)
  [ "$BULK_MB" -gt 0 ] && cols+=(bulk)
  num=B den=A; [ "$SSH_R" = 1 ] && num=A den=S
  awk -v builds="${builds[*]}" -v num="$num" -v den="$den" -v cols="${cols[*]}" -v roles="${ROLES[*]} total req/s" '
    { k = $1 SUBSEP $2 SUBSEP $3; n[k]++; v[k, n[k]] = $4 }
    function med(k,   i, j, t, m, a) { m = n[k]; if (!m) return -1
      for (i = 1; i <= m; i++) a[i] = v[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
    BEGIN { nb = split(builds, B, " "); nc = split(cols, C, " "); nr = split(roles, R, " ") }
    END {
      printf "| process |"; for (c = 1; c <= nc; c++) for (b = 1; b <= nb; b++) printf " %s %s |", C[c], B[b]
      if (nb == 2) for (c = 1; c <= nc; c++) printf " %s %s/%s |", C[c], num, den
      printf "\n|---|"; for (c = 1; c <= nc * nb + (nb == 2 ? nc : 0); c++) printf "---:|"; printf "\n"
      for (r = 1; r <= nr; r++) {
        printf "| %s |", R[r]
        for (c = 1; c <= nc; c++) for (b = 1; b <= nb; b++) {
          x = med(B[b] SUBSEP C[c] SUBSEP R[r]); if (x < 0) printf " |"; else printf (R[r] == "req/s" ? " %.0f |" : (C[c] == "bulk" ? " %.2f |" : " %.1f |")), x }
        if (nb == 2) for (c = 1; c <= nc; c++) {
          a = med(den SUBSEP C[c] SUBSEP R[r]); bb = med(num SUBSEP C[c] SUBSEP R[r])
          if (a > 0 && bb >= 0) printf " %.2f |", bb / a; else printf " |" }
        printf "\n" }
    }' "$RES"
} | tee ${OUT:+"$OUT"}
