#!/usr/bin/env bash
# make bench-bulk: single-stream bulk throughput only, the tunnel against nginx direct in the same
# run, with the same pinning as ../shared/bench/run.sh (everything under test on CPU $SUT_CPU, curl on
# CPU $LG_CPU). A quick loop for work on the bulk path; `make bench` stays the figure of record.
#
#   BULK_MB [1024] size of the file nginx serves from tmpfs; RUNS [5] curl runs per row (median)
#   STREAM_MODE [plain] plain | tls (wrappers speak TLS to the bridge's service certificate)
#   PERF [0] 1 = also record `perf record -e cpu-clock -a -C $SUT_CPU` during one more tunnel run and
#            print the top symbols (build/bench/bulk.perf.data stays for `perf report`)
#   BIN [build] SUT_CPU [0] LG_CPU [1]
# Ports: nginx 127.0.0.1:18200, service 127.0.0.1:18443, bridge link 127.0.0.1:19443.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build}; OUTDIR=${OUTDIR:-$ROOT/build/bench}
BULK_MB=${BULK_MB:-1024}; RUNS=${RUNS:-5}; PERF=${PERF:-0}; STREAM_MODE=${STREAM_MODE:-plain}
SUT_CPU=${SUT_CPU:-0}; LG_CPU=${LG_CPU:-1}
UP=18200; SVC=18443; LINK=19443
mkdir -p "$OUTDIR"
# A fresh machine has no nginx: install it as ../shared/bench/run.sh would (root only).
if ! command -v nginx >/dev/null && [ -x /usr/sbin/nginx ]; then PATH=$PATH:/usr/sbin; fi
if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing nginx-light for the upstream" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light; } >/dev/null
    systemctl disable --now nginx >/dev/null 2>&1 || true
  else
    echo "bench-bulk: needs nginx: apt-get install nginx-light" >&2; exit 1
  fi
fi
W=$(mktemp -d /tmp/ct-bulk.XXXXXX); SHM=$(mktemp -d /dev/shm/ct-bulk.XXXXXX); chmod 755 "$W" "$SHM"
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  rm -rf "$W" "$SHM"
}
trap cleanup EXIT; trap 'exit 130' INT TERM
start() { # name cmd... (own session, pinned to the SUT cpu)
  local name=$1; shift
  setsid taskset -c "$SUT_CPU" ${WRAP:-} "$@" >"$OUTDIR/bulk-$name.log" 2>&1 </dev/null &
  PIDS+=($!)
}
wait_http() { for _ in $(seq 30); do curl -sfk -o /dev/null --max-time 2 "$@" && return 0; sleep 0.1; done; return 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
bulk() { # curl args... -> median MiB/s over $RUNS
  local v=() i
  for i in $(seq "$RUNS"); do
    v+=("$(taskset -c "$LG_CPU" curl -sf -o /dev/null --max-time 120 -w '%{speed_download}' "$@" || echo 0)")
  done
  awk -v b="$(median "${v[@]}")" 'BEGIN{printf "%.0f", b/1048576}'
}

dd if=/dev/zero of="$SHM/big" bs=1M count="$BULK_MB" status=none; chmod 644 "$SHM/big"
cat >"$W/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off; client_body_temp_path $W/b; proxy_temp_path $W/p; fastcgi_temp_path $W/f;
  uwsgi_temp_path $W/u; scgi_temp_path $W/s; sendfile on; tcp_nopush on; tcp_nodelay on;
  server { listen 127.0.0.1:$UP; location = /big { default_type application/octet-stream; alias $SHM/big; } }
}
EOF
start nginx nginx -c "$W/nginx.conf" -e "$W/nginx-error.log"
wait_http "http://127.0.0.1:$UP/big" -r 0-0 || { echo "bench-bulk: nginx did not start" >&2; exit 1; }

"$ROOT/deploy/cloudtaser-certs" --out "$W/pki" --external-host localhost >/dev/null
P=$W/pki
stream_flags=(--allow-plaintext-streams); scheme=http; curl_tls=()
if [ "$STREAM_MODE" = tls ]; then
  stream_flags=(--service-cert "$P/service/tls.crt" --service-key "$P/service/tls.key"); scheme=https
  curl_tls=(--cacert "$P/ca/ca.crt" --resolve "cloudtaser-broker.cloudtaser-system.svc:$SVC:127.0.0.1")
fi
start broker "$BIN/cloudtaser-broker" --bridge-listen 127.0.0.1:$LINK --service-listen 127.0.0.1:$SVC \
  --cert "$P/broker/tls.crt" --key "$P/broker/tls.key" --ca-cert "$P/ca/ca.crt"
start bridge "$BIN/vault-bridge" --broker-address 127.0.0.1:$LINK --vault-addr "http://127.0.0.1:$UP" \
  --broker-name localhost --client-cert "$P/bridge/tls.crt" --client-key "$P/bridge/tls.key" --ca-cert "$P/ca/ca.crt" "${stream_flags[@]}" \
  --vault-health-interval 0  # nginx is not OpenBao: no health polling
host=127.0.0.1; [ "$STREAM_MODE" = tls ] && host=cloudtaser-broker.cloudtaser-system.svc
url="$scheme://$host:$SVC/big"
wait_http "${curl_tls[@]}" -r 0-0 "$url" || { echo "bench-bulk: tunnel did not come up" >&2; cat "$OUTDIR"/bulk-b*.log >&2; exit 1; }

# CPU time of everything under test (nginx and the daemons' process trees), in clock ticks: the
# figure that other work on the machine disturbs least.
sut_ticks() {
  local p all=() t=0
  for p in "${PIDS[@]}"; do all+=("$p"); mapfile -t -O "${#all[@]}" all < <(pgrep -s "$p"); done
  for p in $(printf '%s\n' "${all[@]}" | sort -u); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
direct=$(bulk "http://127.0.0.1:$UP/big")
t0=$(sut_ticks)
tunnel=$(bulk "${curl_tls[@]}" "$url")
t1=$(sut_ticks)
cpu_per_gib=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v mb="$BULK_MB" -v r="$RUNS" 'BEGIN{printf "%.2f", t / hz / (mb * r / 1024)}')
rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo '+dirty')"
printf '# bench-bulk rev %s, %s MiB, %s runs (median), SUT cpu %s, curl cpu %s, load %s\n' \
  "$rev" "$BULK_MB" "$RUNS" "$SUT_CPU" "$LG_CPU" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%-34s %8s MiB/s\n' "direct (curl -> nginx)" "$direct" "broker+bridge ($STREAM_MODE streams)" "$tunnel"
awk -v t="$tunnel" -v d="$direct" 'BEGIN{ if (d > 0) printf "%-34s %8.2f\n", "tunnel / direct", t/d }'
printf '%-34s %8s s (nginx + both daemons, all processes)\n' "CPU per GiB through the tunnel" "$cpu_per_gib"

if [ "$PERF" = 1 ]; then
  perf record -q -e cpu-clock -a -C "$SUT_CPU" --call-graph "${PERF_CG:-fp}" -o "$OUTDIR/bulk.perf.data" -- \
    taskset -c "$LG_CPU" curl -sf -o /dev/null "${curl_tls[@]}" "$url" 2>/dev/null
  perf report -i "$OUTDIR/bulk.perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
  perf report -i "$OUTDIR/bulk.perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
fi
if [ "${STAT:-0}" = 1 ]; then
  perf stat -e context-switches,cpu-clock,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_sendmsg -a -C "$SUT_CPU" -- \
    taskset -c "$LG_CPU" curl -sf -o /dev/null "${curl_tls[@]}" "$url" 2>&1 | grep -vE '^$|^ Performance'
fi
if [ "${SYSC:-0}" = 1 ]; then
  perf record -q -e syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_exit_read -a -C "$SUT_CPU" -o "$OUTDIR/bulk.sys.data" -- \
    taskset -c "$LG_CPU" curl -sf -o /dev/null "${curl_tls[@]}" "$url" 2>/dev/null
  ps -eo pid,args | grep -E 'cloudtaser|vault-bridge|nginx' | grep -v grep
  perf report -i "$OUTDIR/bulk.sys.data" --sort pid,event --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
  perf script -i "$OUTDIR/bulk.sys.data" -F pid,event,trace 2>/dev/null | awk '/sys_exit_read/ {r=$NF; b = (r ~ /^0x/) ? strtonum(r) : r; if (b < 0 || b > 1e12) k="EAGAIN/err"; else if (b == 0) k="0"; else if (b < 16384) k="<16K"; else if (b < 65536) k="<64K"; else k=">=64K"; c[$1" "k]++} END {for (x in c) print x, c[x]}' | sort
fi
