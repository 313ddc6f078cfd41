#!/usr/bin/env bash
# benches/cluster_probe.sh: where a benches/cluster.sh run waits, sampled from outside.
#
# Runs beside benches/cluster.sh (same PORT) until the file $OUT_FILE.stop exists or it is
# killed, and every $EVERY seconds (0.25) appends to $OUT_FILE one line per sample:
#   t=<unix s> run=<procs_running from /proc/stat> load1=<loadavg>
#   sub_recvq=<bytes>  bytes waiting in herald-bench's receive queues (sockets to PORT):
#                      delivered by herald, not yet read by herald-bench
#   sub_sendq=<bytes>  bytes in herald's send queues on those sockets (written, not yet in
#                      the reader's queue: its window is full)
#   bp_recvq=<bytes>   bytes from redis-server waiting in herald's backplane sockets (PORT+79)
#   bp_sendq=<bytes>   bytes redis-server has queued to herald in the kernel
#   pub_recvq=<bytes>  bytes of the publisher's RESP connection (PORT+78) herald has not read
#   sub_rcvd=<bytes>   bytes herald-bench's sockets to PORT have received so far (tcp_info
#                      bytes_received, summed: with sub_recvq, Little's law gives the
#                      mean time a delivered byte waits for herald-bench to read it)
# and, per process of herald, herald-bench and redis-server, one line
#   task <comm> <pid> <threads> <cpu ns> <run-queue wait ns> <timeslices>
# summed over its threads from /proc/<pid>/task/*/schedstat (cumulative: the last sample
# of a pid minus its first is what it ran, and waited runnable, during the run).
#
# Usage: benches/cluster_probe.sh OUT_FILE [PORT]   (PORT as benches/cluster.sh, 16301)
#        EVERY [0.25] from the environment. Reads /proc and `ss` only; loopback only.
# e.g.   benches/cluster_probe.sh /tmp/c4.probe & p=$!
#        CONFIGS=c4 RATES=500 REPEATS=1 benches/cluster.sh; touch /tmp/c4.probe.stop; wait $p
#        python3 benches/cluster_probe.py /tmp/c4.probe
# Cost: `ss -ti` over 5,000 sockets is not free; on a busy 2-core machine a sample took
# 0.5-1.5 s (2-8 samples in a 5-s window) and the probe's CPU is taken from the run, so
# compare probed runs with probed runs only. "run" counts every runnable task of the machine.
set -euo pipefail
OUT_FILE=$1 PORT=${2:-16301} EVERY=${EVERY:-0.25}
RESP=$((PORT + 78)) RPORT=$((PORT + 79))
rm -f "$OUT_FILE.stop"; : >"$OUT_FILE"
while [ ! -e "$OUT_FILE.stop" ]; do
  # One pass over the established sockets: Recv-Q and Send-Q summed by what they are.
  queues=$(ss -tnH state established 2>/dev/null | awk -v p=":$PORT" -v r=":$RPORT" -v q=":$RESP" '
    function port(a) { sub(/.*:/, ":", a); return a }
    { l = port($3); f = port($4)
      if (f == p) sr += $1; else if (l == p) hs += $2
      else if (f == r) br += $1; else if (l == r) bs += $2
      else if (l == q) pr += $1 }
    END { printf "sub_recvq=%d sub_sendq=%d bp_recvq=%d bp_sendq=%d pub_recvq=%d", sr, hs, br, bs, pr }')
  rcvd=$(ss -tinH state established "( dport = :$PORT )" 2>/dev/null | awk '
    { for (i = 1; i <= NF; i++) if ($i ~ /^bytes_received:/) { split($i, a, ":"); s += a[2] } }
    END { printf "%.0f", s }')
  {
    echo "t=$(date +%s.%N) run=$(awk '/^procs_running/ { print $2 }' /proc/stat)" \
      "load1=$(cut -d' ' -f1 /proc/loadavg) $queues sub_rcvd=$rcvd"
    # This run's processes only (others may run herald elsewhere): those naming its ports.
    for pid in $(pgrep -f "127\.0\.0\.1:($PORT|$RPORT)( |\$)"); do
      comm=$(cat /proc/"$pid"/comm 2>/dev/null) || continue
      case $comm in herald|herald-bench|redis-server) ;; *) continue ;; esac
      awk -v pid="$pid" -v comm="$comm" \
        '{ c += $1; w += $2; n += $3; t++ }
        END { if (t) printf "task %s %s %d %.0f %.0f %.0f\n", comm, pid, t, c, w, n }' \
        /proc/"$pid"/task/*/schedstat 2>/dev/null || true
    done
  } >>"$OUT_FILE"
  sleep "$EVERY"
done
rm -f "$OUT_FILE.stop"
