#!/usr/bin/env bash
# benches/cluster.sh: herald as several nodes over a Redis backplane (--cluster), on one machine.
#
# What it measures (figures in docs/benchmarks.md, "Several nodes over Redis"):
#   1. Scaling: the same herald-bench load (default: Pusher clients, 5,000 connections on
#      10 channels, RESP PUBLISH at each rate of $RATES) against
#        single  one herald without --cluster (no Redis),
#        c1      one herald with --cluster,
#        c2, c4  2 and 4 herald processes sharing one HTTP and one RESP port (SO_REUSEPORT)
#      all --cluster nodes over one redis-server. Deliveries/s, lost, p50/p99 latency.
#      Each point is repeated $REPEATS times, the order of the configurations rotated
#      every round; every run starts fresh processes (and a fresh redis-server).
#   2. Backplane cost: CPU (utime+stime from /proc/<pid>/stat) of the herald processes
#      (summed, herald-bench's window: warm-up + measured + 2.5 s) and of redis-server
#      (read by this script before and after the whole herald-bench run; redis-server
#      has nothing to do while subscribers connect) per publication and per delivery.
#   3. With --big: $BIG_CONNS (60,000) WebSocket connections across 4 herald processes
#      sharing one port, herald-bench's subscribers split over $BIG_PROCS processes and
#      $BIG_SOURCES source addresses; connections established/failed, RSS and connections
#      per herald process, and whether one broadcast (1 publish/s, one channel) reached all.
#
# Run (from the repository root, after `cargo build --release`):
#   benches/cluster.sh            # 1 and 2
#   benches/cluster.sh --big      # 1, 2 and 3
#   benches/cluster.sh --big-only # 3 only
#   benches/cluster.sh --report   # print the tables again from $OUT/results.jsonl
#   benches/cluster.sh --chart    # draw $CHART from $OUT/results.jsonl with benches/cluster_chart.py
#                                 # (matplotlib, e.g. in a venv: python3 -m venv V &&
#                                 #  V/bin/pip install matplotlib; PYTHON=V/bin/python)
# Settings from the environment (defaults in brackets): HERALD [target/release/herald],
#   HERALD_BENCH [target/release/herald-bench], REDIS_SERVER [/usr/bin/redis-server],
#   OUT [target/cluster-bench], PROTOCOL [pusher], CONNS [5000], CHANNELS [10],
#   RATES ["200 500 1000"], CONFIGS ["single c1 c2 c4"], REPEATS [3], DURATION [5],
#   WARMUP [2], SOURCES [8], PROCS [1] (herald-bench's subscriber processes, one thread
#   each, in the scaling runs), PORT [16301] (HTTP; RESP is PORT+78, redis-server PORT+79),
#   NICE [10] (the whole run, herald, redis-server and herald-bench alike, runs under it),
#   BENCH_NICE [$NICE] (herald-bench's niceness; below NICE needs root or CAP_SYS_NICE:
#   BENCH_NICE=0 gives its reader the CPU it needs, see docs/benchmarks.md),
#   BIG_CONNS [60000], BIG_PROCS [4], BIG_SOURCES [16], BIG_PORT [16001],
#   BIG_MAX_CONNECTIONS [19000] (herald's --max-connections in the big run),
#   PYTHON [python3] (runs benches/cluster_chart.py for --chart), CHART [docs/cluster.png].
# Everything runs on loopback. Every process it starts is stopped when it ends (also on
# Ctrl-C); results are rewritten, never appended to, so it can be run again as is.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERALD=${HERALD:-$ROOT/target/release/herald}
HERALD_BENCH=${HERALD_BENCH:-$ROOT/target/release/herald-bench}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
OUT=${OUT:-$ROOT/target/cluster-bench}
PROTOCOL=${PROTOCOL:-pusher}
CONNS=${CONNS:-5000}
CHANNELS=${CHANNELS:-10}
RATES=${RATES:-200 500 1000}
CONFIGS=${CONFIGS:-single c1 c2 c4}
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
SOURCES=${SOURCES:-8}
PROCS=${PROCS:-1}
PORT=${PORT:-16301}
NICE=${NICE:-10}
BENCH_NICE=${BENCH_NICE:-$NICE}
BIG_CONNS=${BIG_CONNS:-60000}
BIG_PROCS=${BIG_PROCS:-4}
BIG_SOURCES=${BIG_SOURCES:-16}
BIG_PORT=${BIG_PORT:-16001}
BIG_MAX_CONNECTIONS=${BIG_MAX_CONNECTIONS:-19000}
PYTHON=${PYTHON:-python3}
CHART=${CHART:-$ROOT/docs/cluster.png}

SCALE=1 BIG=0 REPORT_ONLY=0 CHART_ONLY=0
for a in "$@"; do
  case $a in
    --big) BIG=1 ;;
    --big-only) BIG=1 SCALE=0 ;;
    --report) REPORT_ONLY=1 ;;
    --chart) CHART_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

if [ "$CHART_ONLY" = 1 ]; then
  machine=()
  [ -e "$OUT/machine.txt" ] && machine=("$OUT/machine.txt")
  exec "$PYTHON" "$ROOT/benches/cluster_chart.py" "$OUT/results.jsonl" "$CHART" "${machine[@]}"
fi

for b in "$HERALD" "$HERALD_BENCH" "$REDIS_SERVER"; do
  [ -x "$b" ] || { echo "missing: $b (cargo build --release?)" >&2; exit 1; }
done

# One process may hold at most the hard limit of open files: take all of it.
ulimit -n "$(ulimit -Hn)"
renice -n "$NICE" $$ >/dev/null

STARTED=()
stop_wait() { # pid: up to 5 s to exit after SIGTERM, then SIGKILL
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
stop_all() {
  # redis-server last: a herald that loses Redis while it shuts down logs it as a warning.
  local p redis=${REDIS_PID:-}
  for p in "${STARTED[@]}"; do [ "$p" = "$redis" ] || kill "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do [ "$p" = "$redis" ] || stop_wait "$p"; done
  if [ -n "$redis" ]; then kill "$redis" 2>/dev/null || true; stop_wait "$redis"; fi
  STARTED=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# CPU time of a process in ms (utime + stime, clock ticks of 1/100 s).
cpu_ms() { awk '{ sub(/.*\) /, ""); print ($12 + $13) * 10 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
port_free() { ! ss -ltnH "( sport = :$1 )" | grep -q .; }
wait_log() { # file, text, count, what
  for _ in $(seq 100); do
    local c; c=$(grep -c "$2" "$1" 2>/dev/null) || true
    [ "${c:-0}" -ge "$3" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $4 ($1):" >&2; tail -5 "$1" >&2; return 1
}

REDIS_PID="" HERALD_PIDS=()
# start_servers <config> <http port> [extra herald args…]; logs to $RUN.*.log
start_servers() {
  local config=$1 http=$2 resp=$(($2 + 78)) rport=$(($2 + 79)) n cluster=() i
  shift 2
  for p in "$http" "$resp" "$rport"; do
    port_free "$p" || { echo "port $p is in use: set PORT / BIG_PORT" >&2; exit 1; }
  done
  REDIS_PID="" HERALD_PIDS=()
  case $config in
    single) n=1 ;;
    c*) n=${config#c}
        "$REDIS_SERVER" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
          --daemonize no --logfile "$RUN.redis.log" &
        REDIS_PID=$!; STARTED+=("$REDIS_PID")
        wait_log "$RUN.redis.log" "Ready to accept connections" 1 redis-server
        cluster=(--cluster "redis://127.0.0.1:$rport") ;;
  esac
  for i in $(seq "$n"); do
    NO_COLOR=1 "$HERALD" --http-bind "127.0.0.1:$http" --redis-bind "127.0.0.1:$resp" \
      "${cluster[@]}" "$@" >"$RUN.herald$i.log" 2>&1 &
    HERALD_PIDS+=($!); STARTED+=($!)
  done
  for i in $(seq "$n"); do
    wait_log "$RUN.herald$i.log" "HTTP and WebSocket listening" 1 "herald $i"
    # The publisher and every subscriber connection of the backplane.
    [ ${#cluster[@]} -eq 0 ] || wait_log "$RUN.herald$i.log" "backplane connected" 5 "herald $i's backplane"
  done
}

# Sampled every 0.5 s into $1 while it exists, for each herald: pid, RSS KiB, open files
# beyond those it had when the sampler started (its client connections, give or take a few).
sampler() {
  local out=$1 p; shift
  local base=()
  for p in "$@"; do base+=("$(fds "$p")"); done
  : >"$out"
  while [ -e "$out" ]; do
    local line="" i=0
    for p in "$@"; do
      line+="$p $(rss_kib "$p" 2>/dev/null || echo 0) $(( $(fds "$p") - ${base[$i]} )) "; i=$((i + 1))
    done
    [ -e "$out" ] && echo "$line" >>"$out"
    sleep 0.5
  done
}

errors_in_logs() { # counts WARN/ERROR lines in the heralds' logs of this run
  cat "$RUN".herald*.log 2>/dev/null | grep -cE ' (WARN|ERROR) ' || true
}

# One measured run: config, rate, repeat.
scale_run() {
  local config=$1 rate=$2 rep=$3
  RUN=$OUT/logs/$config-r$rate-$rep
  start_servers "$config" "$PORT"
  local pids=() p
  for p in "${HERALD_PIDS[@]}"; do pids+=(--server-pid "$p"); done
  local redis_before=0 redis_after=0 hb=() ha=()
  [ -z "$REDIS_PID" ] || redis_before=$(cpu_ms "$REDIS_PID")
  for p in "${HERALD_PIDS[@]}"; do hb+=("$(cpu_ms "$p")"); done
  sampler "$RUN.samples" "${HERALD_PIDS[@]}" &
  local sp=$!; STARTED+=("$sp")
  local bench_nice=()
  [ "$BENCH_NICE" = "$NICE" ] || bench_nice=(nice -n "$((BENCH_NICE - NICE))")
  local cmd=("${bench_nice[@]}" "$HERALD_BENCH" run --server "127.0.0.1:$PORT" --redis "127.0.0.1:$((PORT + 78))"
    --protocol "$PROTOCOL" --mode publish -n "$CONNS" -c "$CHANNELS" -r "$rate" -d "$DURATION"
    --warmup "$WARMUP" --procs "$PROCS" --sources "$SOURCES" --label "$config" "${pids[@]}")
  echo "+ ${cmd[*]}" >"$RUN.bench.err"
  "${cmd[@]}" >"$RUN.bench.json" 2>>"$RUN.bench.err" || true
  [ -z "$REDIS_PID" ] || redis_after=$(cpu_ms "$REDIS_PID")
  for p in "${HERALD_PIDS[@]}"; do ha+=("$(cpu_ms "$p")"); done
  rm -f "$RUN.samples.tmp"; mv "$RUN.samples" "$RUN.samples.tmp"; wait "$sp" 2>/dev/null || true; rm -f "$RUN.samples"
  local per_proc_cpu="" per_proc_conns i
  for i in "${!hb[@]}"; do per_proc_cpu+="$(( ${ha[$i]} - ${hb[$i]} )),"; done
  # Connections each herald held at the busiest sample.
  per_proc_conns=$(awk '{ for (i = 3; i <= NF; i += 3) if ($i > m[i]) m[i] = $i }
    END { s = ""; for (i = 3; i <= NF; i += 3) s = s m[i] ","; print s }' "$RUN.samples.tmp")
  stop_all
  local errs; errs=$(errors_in_logs)
  python3 - "$RUN.bench.json" "$config" "$rate" "$rep" "$((redis_after - redis_before))" \
    "${per_proc_cpu%,}" "${per_proc_conns%,}" "$errs" "$WARMUP" "${cmd[*]}" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
f, config, rate, rep, redis_ms, cpu, conns, errs, warmup, cmd = sys.argv[1:]
try:
    r = json.loads(open(f).read().strip().splitlines()[-1])
except Exception:
    r = {"error": "no report"}
r.update(kind="scale", config=config, rate=int(rate), repeat=int(rep), redis_cpu_ms=int(redis_ms),
         warmup_s=int(warmup),
         herald_cpu_ms_per_proc=[int(x) for x in cpu.split(",") if x],
         conns_per_proc=[int(x) for x in conns.split(",") if x], log_warnings=int(errs), cmd=cmd)
print(json.dumps(r))
EOF
  tail -1 "$RUN.bench.err" | sed "s/^/  /"
}

big_run() {
  RUN=$OUT/logs/big
  start_servers c4 "$BIG_PORT" --max-connections "$BIG_MAX_CONNECTIONS"
  local pids=() p
  for p in "${HERALD_PIDS[@]}"; do pids+=(--server-pid "$p"); done
  local rss0=()
  for p in "${HERALD_PIDS[@]}"; do rss0+=("$(rss_kib "$p")"); done
  sampler "$RUN.samples" "${HERALD_PIDS[@]}" &
  local sp=$!; STARTED+=("$sp")
  local bench_nice=()
  [ "$BENCH_NICE" = "$NICE" ] || bench_nice=(nice -n "$((BENCH_NICE - NICE))")
  local cmd=("${bench_nice[@]}" "$HERALD_BENCH" run --server "127.0.0.1:$BIG_PORT" --redis "127.0.0.1:$((BIG_PORT + 78))"
    --protocol "$PROTOCOL" --mode publish -n "$BIG_CONNS" -c 1 -r 1 -d 3 --warmup 1
    --procs "$BIG_PROCS" --sources "$BIG_SOURCES" --label big "${pids[@]}")
  echo "+ ${cmd[*]}" >"$RUN.bench.err"
  # Once every subscriber process is ready: the established connections of the port, by process.
  ( for _ in $(seq 1500); do
      [ "$(grep -c 'subscribers ready' "$RUN.bench.err")" -ge "$BIG_PROCS" ] && break; sleep 0.2
    done
    sleep 0.3; ss -tnpH state established "( sport = :$BIG_PORT )" >"$RUN.ss" ) &
  local ssp=$!; STARTED+=("$ssp")
  local t0=$SECONDS
  "${cmd[@]}" >"$RUN.bench.json" 2>>"$RUN.bench.err" || true
  local secs=$((SECONDS - t0))
  rm -f "$RUN.samples.tmp"; mv "$RUN.samples" "$RUN.samples.tmp"; wait "$sp" 2>/dev/null || true; rm -f "$RUN.samples"
  wait "$ssp" 2>/dev/null || true
  local by_ss=""
  for p in "${HERALD_PIDS[@]}"; do by_ss+="$(grep -c "pid=$p," "$RUN.ss" || true),"; done
  local peak
  peak=$(awk '{ for (i = 2; i <= NF; i += 3) { if ($i > r[i]) r[i] = $i; if ($(i+1) > c[i]) c[i] = $(i+1) } }
    END { s = ""; for (i = 2; i <= NF; i += 3) s = s r[i] ":" c[i] ","; print s }' "$RUN.samples.tmp")
  stop_all
  local errs; errs=$(errors_in_logs)
  python3 - "$RUN.bench.json" "${rss0[*]}" "${peak%,}" "$errs" "$secs" "${by_ss%,}" "${cmd[*]}" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
f, rss0, peak, errs, secs, by_ss, cmd = sys.argv[1:]
try:
    r = json.loads(open(f).read().strip().splitlines()[-1])
except Exception:
    r = {"error": "no report"}
r.update(kind="big", rss_kib_start=[int(x) for x in rss0.split()],
         rss_kib_peak=[int(x.split(":")[0]) for x in peak.split(",") if x],
         conns_peak=[int(x.split(":")[1]) for x in peak.split(",") if x],
         conns_ss=[int(x) for x in by_ss.split(",") if x], log_warnings=int(errs), wall_s=int(secs), cmd=cmd)
print(json.dumps(r))
EOF
  tail -1 "$RUN.bench.err" | sed "s/^/  /"
}

report() {
  python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs): return statistics.median(xs) if xs else float("nan")
def spread(xs, fmt): return f"{fmt(min(xs))}–{fmt(max(xs))}" if xs else ""
f0 = lambda x: f"{x:,.0f}"; f1 = lambda x: f"{x:,.1f}"; f2 = lambda x: f"{x:,.2f}"
names = {"single": "1 process, no --cluster", "c1": "1 process, --cluster",
         "c2": "2 processes, --cluster", "c4": "4 processes, --cluster"}
scale = [r for r in rows if r.get("kind") == "scale" and "error" not in r]
configs = [c for c in ["single", "c1", "c2", "c4"] if any(r["config"] == c for r in scale)]
rates = sorted({r["rate"] for r in scale})
if scale:
    print("### Deliveries/s and latency (median of runs, min–max in brackets)\n")
    print("| publishes/s | nodes | runs | deliveries/s | expected/s | lost (sum) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in rates:
        for c in configs:
            rs = [r for r in scale if r["rate"] == rate and r["config"] == c]
            if not rs: continue
            d = [r["deliveries_per_s"] for r in rs]; p99 = [r["p99_ms"] for r in rs]
            p50 = [r["p50_ms"] for r in rs]
            exp = med([r["expected"] / r["duration_s"] for r in rs])
            print(f"| {rate:,} | {names[c]} | {len(rs)} | {f0(med(d))} ({spread(d, f0)}) | {f0(exp)} "
                  f"| {sum(r['lost'] for r in rs):,} | {f1(med(p50))} ({spread(p50, f1)}) | {f1(med(p99))} ({spread(p99, f1)}) |")
    print("\n### CPU per publication and per delivery (median, min–max)\n")
    print("| publishes/s | nodes | herald CPU s (sum) | redis-server CPU s | herald µs/publication | redis-server µs/publication | herald µs/delivery | bench µs/delivery |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in rates:
        for c in configs:
            rs = [r for r in scale if r["rate"] == rate and r["config"] == c]
            if not rs: continue
            pubs = [r["published"] * (r["duration_s"] + r["warmup_s"]) / r["duration_s"] for r in rs]  # warm-up included
            hs = [r["server_cpu_ms"] / 1000 for r in rs]
            rd = [r["redis_cpu_ms"] / 1000 for r in rs]
            hp = [r["server_cpu_ms"] * 1000 / p for r, p in zip(rs, pubs)]
            rp = [r["redis_cpu_ms"] * 1000 / p for r, p in zip(rs, pubs)]
            hd = [r["server_cpu_us_per_delivery"] for r in rs]
            bd = [r["bench_cpu_us_per_delivery"] for r in rs]
            redis = (f"{f2(med(rd))} ({spread(rd, f2)})", f"{f1(med(rp))} ({spread(rp, f1)})") if c != "single" else ("—", "—")
            print(f"| {rate:,} | {names[c]} | {f2(med(hs))} ({spread(hs, f2)}) | {redis[0]} | {f1(med(hp))} ({spread(hp, f1)}) "
                  f"| {redis[1]} | {f2(med(hd))} ({spread(hd, f2)}) | {f2(med(bd))} ({spread(bd, f2)}) |")
    print("\n### Connections per process (busiest sample of each run), warnings in herald logs\n")
    for c in configs:
        rs = [r for r in scale if r["config"] == c]
        print(f"- {names[c]}: " + "; ".join("/".join(str(x) for x in r["conns_per_proc"]) for r in rs)
              + f" — log warnings: {sum(r['log_warnings'] for r in rs)}")
    bad = [r for r in rows if r.get("kind") == "scale" and "error" in r]
    if bad: print(f"\n{len(bad)} runs gave no report: " + ", ".join(f"{r['config']}@{r['rate']}#{r['repeat']}" for r in bad))
for r in rows:
    if r.get("kind") != "big": continue
    print("\n### Big run\n")
    if "error" in r: print("no report:", r["cmd"]); continue
    print(f"{r['connections']:,} connected, {r['failed']:,} failed ({r['connect_per_s']:,.0f}/s); "
          f"expected {r['expected']:,}, received {r['received']:,}, lost {r['lost']:,}; "
          f"p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} max {r['max_ms']:.1f} ms; wall {r['wall_s']} s; log warnings {r['log_warnings']}")
    print("| herald process | connections (ss, all subscribers ready) | open files beyond start (peak) | RSS at start KiB | RSS peak KiB | KiB/connection |")
    print("|---|---|---|---|---|---|")
    for i, (s, c, a, b) in enumerate(zip(r["conns_ss"], r["conns_peak"], r["rss_kib_start"], r["rss_kib_peak"])):
        print(f"| {i+1} | {s:,} | {c:,} | {a:,} | {b:,} | {(b - a) / s if s else 0:.2f} |")
    print(f"| all | {sum(r['conns_ss']):,} | {sum(r['conns_peak']):,} | {sum(r['rss_kib_start']):,} | {sum(r['rss_kib_peak']):,} | |")
EOF
}

if [ "$REPORT_ONLY" = 1 ]; then report; exit 0; fi

rm -rf "$OUT"; mkdir -p "$OUT/logs"; : >"$OUT/results.jsonl"
{
  echo "started $(date -u '+%F %T') UTC; load: $(cut -d' ' -f1-3 /proc/loadavg); nice $NICE"
  echo "herald $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); $("$REDIS_SERVER" --version)"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
} | tee "$OUT/machine.txt"

if [ "$SCALE" = 1 ]; then
  read -ra configs <<<"$CONFIGS"
  for rep in $(seq "$REPEATS"); do
    for rate in $RATES; do
      # Rotate the order of the configurations every round.
      k=$(( (rep - 1) % ${#configs[@]} ))
      for c in "${configs[@]:$k}" "${configs[@]:0:$k}"; do
        echo "round $rep, $rate/s, $c ($(cut -d' ' -f1 /proc/loadavg))"
        scale_run "$c" "$rate" "$rep"
      done
    done
  done
fi
if [ "$BIG" = 1 ]; then
  echo "big: $BIG_CONNS connections over 4 processes ($(cut -d' ' -f1 /proc/loadavg))"
  big_run
fi
echo "ended $(date -u '+%F %T') UTC; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
report | tee "$OUT/report.md"
