#!/usr/bin/env bash
# benches/backplane_cost.sh: what one publication costs redis-server (and herald) when it
# goes through herald's backplane (--cluster: the NUMBER script of src/broker/redis/history.rs
# per publication, EVALSHA pipelined) against a plain PUBLISH sent straight to redis-server
# (what the backplane sent before the script). Isolated: no WebSocket clients, one
# subscriber, a fixed number of publications.
#
# Arms, alternating every round, each on a fresh redis-server (and herald):
#   redis    redis-benchmark PUBLISH → redis-server; one redis-cli SUBSCRIBE on redis-server
#   cluster  redis-benchmark PUBLISH → herald --cluster redis://… (RESP port); one redis-cli
#            SUBSCRIBE on herald; herald numbers each publication in Redis and gets it back
#   single   the same against herald without --cluster (herald's cost without a backplane)
# The load: redis-benchmark -c $CLIENTS -P $PIPELINE -n $N PUBLISH laravel_database_bench.1
# <200-byte payload>. CPU (utime + stime, /proc/<pid>/stat, 10 ms ticks) of redis-server and
# herald is read before redis-benchmark starts and once the subscriber has received every
# publication (or has received nothing more for 3 s). Prints one line per run: round, arm,
# publications received, how many herald delivered on its node only (herald_cluster_local_only_total:
# more than its queue, 65,536, behind Redis; keep N below that to number every one), redis-server
# µs CPU per publication numbered, herald µs CPU per publication,
# redis-benchmark's requests/s; every run also goes to $OUT as JSON (with the count of
# herald's log warnings up to its stop), each herald's log beside it.
#
# Run (from the repository root, after cargo build --release):
#   benches/backplane_cost.sh                       # N=60000 CLIENTS=4 PIPELINE=16 ROUNDS=7
#   PIPELINE=1 CLIENTS=1 N=50000 benches/backplane_cost.sh   # one publication per round trip
# Env (defaults in brackets): HERALD [target/release/herald], ARMS ["redis cluster single"],
#   N [60000], CLIENTS [4], PIPELINE [16], ROUNDS [7], PORT [16701] (herald's RESP port;
#   its HTTP port PORT+1, redis-server PORT+2), OUT [target/backplane-cost.jsonl].
# Loopback only; every process it starts is stopped after its run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERALD=${HERALD:-$ROOT/target/release/herald}
ARMS=${ARMS:-redis cluster single}
N=${N:-60000}
CLIENTS=${CLIENTS:-4}
PIPELINE=${PIPELINE:-16}
ROUNDS=${ROUNDS:-7}
PORT=${PORT:-16701}
OUT=${OUT:-$ROOT/target/backplane-cost.jsonl}
HTTP=$((PORT + 1)) RPORT=$((PORT + 2))
CHANNEL=laravel_database_bench.1
PAYLOAD=$(printf '{"event":"App\\\\Events\\\\Bench","data":{"n":1,"pad":"%0132d"},"socket":null}' 0)
WORK=$(mktemp -d)
PIDS=()
stop_all() {
  local p
  local i # the last started first: the subscriber, then herald, then redis-server
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
: >"$OUT"

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
lines() { wc -l <"$WORK/sub.out"; }

echo "started $(date -u '+%F %T') UTC; load $(cut -d' ' -f1-3 /proc/loadavg); herald $(git -C "$ROOT" rev-parse --short HEAD); $(redis-server --version | cut -d' ' -f3)"
echo "redis-benchmark -c $CLIENTS -P $PIPELINE -n $N PUBLISH $CHANNEL <${#PAYLOAD} bytes>"
for r in $(seq "$ROUNDS"); do
  for arm in $ARMS; do
    redis_pid="" herald_pid="" target=$PORT
    if [ "$arm" != single ]; then
      redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --logfile "$WORK/redis.log" &
      redis_pid=$!; PIDS+=("$redis_pid"); wait_port "$RPORT"
    fi
    case $arm in
      redis) target=$RPORT ;;
      cluster|single)
        cluster=(); [ "$arm" = cluster ] && cluster=(--cluster "redis://127.0.0.1:$RPORT")
        NO_COLOR=1 "$HERALD" --http-bind "127.0.0.1:$HTTP" --redis-bind "127.0.0.1:$PORT" "${cluster[@]}" \
          --log info >"$WORK/herald.log" 2>&1 &
        herald_pid=$!; PIDS+=("$herald_pid"); wait_port "$PORT"
        if [ "$arm" = cluster ]; then
          for _ in $(seq 100); do [ "$(grep -c 'backplane connected' "$WORK/herald.log")" -ge 5 ] && break; sleep 0.1; done
        fi ;;
      *) echo "unknown arm $arm" >&2; exit 2 ;;
    esac
    : >"$WORK/sub.out"
    redis-cli -p "$target" SUBSCRIBE "$CHANNEL" >"$WORK/sub.out" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 100); do [ "$(lines)" -ge 3 ] && break; sleep 0.1; done
    sleep 0.5   # herald's backplane subscription follows the local one
    rb=0 hb=0 ra=0 ha=0
    [ -z "$redis_pid" ] || rb=$(cpu_ticks "$redis_pid")
    [ -z "$herald_pid" ] || hb=$(cpu_ticks "$herald_pid")
    rps=$(redis-benchmark -p "$target" -c "$CLIENTS" -P "$PIPELINE" -n "$N" -q PUBLISH "$CHANNEL" "$PAYLOAD" \
      | tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "requests") v = $i } END { print v }')
    want=$((3 * N + 3)) last=-1 still=0
    while :; do
      now=$(lines)
      [ "$now" -ge "$want" ] && break
      if [ "$now" = "$last" ]; then still=$((still + 1)); [ "$still" -ge 15 ] && break; else still=0; fi
      last=$now; sleep 0.2
    done
    [ -z "$redis_pid" ] || ra=$(cpu_ticks "$redis_pid")
    [ -z "$herald_pid" ] || ha=$(cpu_ticks "$herald_pid")
    got=$(( ($(lines) - 3) / 3 ))
    # Publications herald could not queue for Redis (more than its queue behind) are delivered
    # on the node only, never numbered: counted, and left out of redis-server's per-publication figure.
    local_only=0
    [ "$arm" != cluster ] || local_only=$(curl -s "http://127.0.0.1:$HTTP/metrics" \
      | awk '/^herald_cluster_local_only_total/ { v = $2 } END { print v + 0 }')
    warns=0; [ -z "$herald_pid" ] || warns=$(grep -cE ' (WARN|ERROR) ' "$WORK/herald.log" || true)
    stop_all
    [ -z "$herald_pid" ] || cp "$WORK/herald.log" "${OUT%.jsonl}.r$r-$arm.herald.log"
    line=$(python3 -c "import json; print(json.dumps(dict(round=$r, arm='$arm', n=$N, received=$got, clients=$CLIENTS,
pipeline=$PIPELINE, redis_cpu_ms=($ra - $rb) * 10, herald_cpu_ms=($ha - $hb) * 10, requests_per_s=float('${rps:-0}'),
local_only=$local_only, redis_us_per_pub=round(($ra - $rb) * 10000 / max($N - $local_only, 1), 2), herald_us_per_pub=round(($ha - $hb) * 10000 / $N, 2),
herald_log_warnings=$warns, load=open('/proc/loadavg').read().split()[0])))")
    echo "$line" >>"$OUT"
    echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin)
print(d["round"], d["arm"], d["received"], "received,", d["local_only"], "on the node only; redis", d["redis_us_per_pub"], "µs/pub; herald", d["herald_us_per_pub"], "µs/pub;", d["requests_per_s"], "req/s; load", d["load"])'
  done
done
echo "ended $(date -u '+%F %T') UTC; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for arm in dict.fromkeys(r["arm"] for r in rows):
    rs = [r for r in rows if r["arm"] == arm]
    for k in ("redis_us_per_pub", "herald_us_per_pub", "requests_per_s"):
        xs = [r[k] for r in rs]
        print(f"{arm:8} {k:18} median {statistics.median(xs):,.2f}  runs {', '.join(f'{x:,.2f}' for x in xs)}")
PY
