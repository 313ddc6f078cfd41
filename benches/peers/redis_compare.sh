#!/usr/bin/env bash
# herald next to a real redis-server, measured by the same redis-benchmark in the same run.
#
# Starts redis-server and a release build of herald on spare loopback ports, then for each
# scenario runs redis-benchmark against one and then the other, ROUNDS times, and prints the
# median requests/s of each with the ratio herald/redis (above 1.0: herald is faster):
#   - PUBLISH with no subscribers, -c 50, pipelines of 1 and 16;
#   - PUBLISH with 100 pattern subscribers (PSUBSCRIBE laravel_database_*) connected and reading;
#   - Laravel's broadcast EVAL script on two channels (what RedisBroadcaster sends), no subscribers;
#   - PING, -P 1: the round trip with the cheapest possible reply, i.e. how many unpipelined
#     requests per second redis-benchmark itself can drive on this machine (the ceiling that
#     any unpipelined figure, herald's or Redis's, runs into).
# Next to each rate it prints each server's own CPU time per request (user + system, from
# /proc/PID/stat around the run): the work the server did, less sensitive than req/s to
# what else runs on the machine.
#
# Usage: benches/peers/redis_compare.sh
#   env: REQUESTS=200000 (per run; SUB_REQUESTS=50000 with subscribers) ROUNDS=3 CLIENTS=50
#        REDIS_PORT=16400 HERALD_PORT=16401 HERALD_HTTP_PORT=16402 HERALD_BIN=target/release/herald
# Needs redis-server, redis-benchmark (Debian redis-server, redis-tools), python3, cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS=${REQUESTS:-200000}
SUB_REQUESTS=${SUB_REQUESTS:-50000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
REDIS_PORT=${REDIS_PORT:-16400}
HERALD_PORT=${HERALD_PORT:-16401}
HERALD_HTTP_PORT=${HERALD_HTTP_PORT:-16402}
SUBSCRIBERS=100

if [[ -z ${HERALD_BIN:-} ]]; then
  cargo build --release --quiet
  HERALD_BIN=target/release/herald
fi

work=$(mktemp -d)
pids=()
cleanup() {
  if [[ -s $work/herald.log ]]; then
    echo "herald logged:" >&2
    tail -20 "$work/herald.log" >&2
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --logfile "$work/redis.log" &
pids+=($!)
declare -A server_pid
server_pid[$REDIS_PORT]=$!
"$HERALD_BIN" --redis-bind "127.0.0.1:$HERALD_PORT" --http-bind "127.0.0.1:$HERALD_HTTP_PORT" \
  --log warn >"$work/herald.log" 2>&1 &
pids+=($!)
server_pid[$HERALD_PORT]=$!

for port in "$REDIS_PORT" "$HERALD_PORT"; do
  for _ in $(seq 100); do
    [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && continue 2
    sleep 0.1
  done
  echo "nothing answers PING on 127.0.0.1:$port" >&2
  cat "$work"/*.log >&2
  exit 1
done

PAYLOAD='{"event":"App\\Events\\OrderShipped","data":{"order":{"id":1234,"status":"shipped","total":"99.50"},"socket":null},"socket":null}'
SCRIPT=$'for i = 2, #ARGV do\n  redis.call(\'publish\', ARGV[i], ARGV[1])\nend'

# One redis-benchmark run: "<requests/s> <server CPU µs per request>". The rate is taken
# from the end of its CSV (the test name may hold quotes and newlines).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rps() {
  local port=$1 pipeline=$2 requests=$3
  shift 3
  local before after rate
  before=$(cpu_ticks "${server_pid[$port]}")
  rate=$(redis-benchmark -p "$port" -c "$CLIENTS" -n "$requests" -P "$pipeline" --csv "$@" |
    python3 -c 'import sys; t = sys.stdin.read().strip().split("\n", 1)[1]; print(float(t.rsplit("\",\"", 7)[1]))')
  after=$(cpu_ticks "${server_pid[$port]}")
  echo "$rate $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { print t * 1e6 / hz / n }')"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# 100 pattern subscribers in one process that read and discard; on SIGTERM it reports how
# many the server disconnected (over its output-buffer limit), which would void the figure.
subscribe() {
  local port=$1
  python3 - "$port" "$SUBSCRIBERS" "$work/subs-$port.out" <<'PY' &
import selectors, signal, socket, sys
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$18\r\nlaravel_database_*\r\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
closed = 0
def stop(*_):
    open(out, "w").write(f"{closed}\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(out + ".ready", "w").close()
while True:
    for key, _ in sel.select():
        try:
            data = key.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(key.fileobj)
            closed += 1
PY
  sub_pid=$!
  pids+=("$sub_pid")
  while [[ ! -f $work/subs-$port.out.ready ]]; do sleep 0.05; done
  sleep 0.2
}
unsubscribe() {
  local port=$1
  kill "$sub_pid"
  wait "$sub_pid" 2>/dev/null || true
  local closed
  closed=$(cat "$work/subs-$port.out")
  rm -f "$work/subs-$port.out" "$work/subs-$port.out.ready"
  if [[ $closed != 0 ]]; then
    echo "warning: the server on port $port disconnected $closed of $SUBSCRIBERS subscribers" >&2
  fi
}

rows=()
scenario() {
  local name=$1 pipeline=$2 subscribers=$3
  shift 3
  local r=() h=() rc=() hc=()
  for _ in $(seq "$ROUNDS"); do
    for port in "$REDIS_PORT" "$HERALD_PORT"; do
      local requests=$REQUESTS
      if ((subscribers)); then
        subscribe "$port"
        requests=$SUB_REQUESTS
      fi
      read -r value cpu < <(rps "$port" "$pipeline" "$requests" "$@")
      ((subscribers)) && unsubscribe "$port"
      if [[ $port == "$REDIS_PORT" ]]; then
        r+=("$value") rc+=("$cpu")
      else
        h+=("$value") hc+=("$cpu")
      fi
    done
  done
  local rm hm
  rm=$(median "${r[@]}")
  hm=$(median "${h[@]}")
  rows+=("$(printf '| %-44s | %12.0f | %12.0f | %5.2f | %6.2f | %6.2f |' "$name" "$rm" "$hm" \
    "$(awk -v h="$hm" -v r="$rm" 'BEGIN { print h / r }')" "$(median "${rc[@]}")" "$(median "${hc[@]}")")")
  echo "${rows[-1]}" >&2
}

echo "redis-server $(redis-server --version | grep -o 'v=[^ ]*'), herald $HERALD_BIN;" \
  "$REQUESTS requests ($SUB_REQUESTS with subscribers), $CLIENTS clients, median of $ROUNDS rounds" >&2
scenario "PUBLISH, no subscribers, -P 1" 1 0 PUBLISH laravel_database_orders "$PAYLOAD"
scenario "PUBLISH, no subscribers, -P 16" 16 0 PUBLISH laravel_database_orders "$PAYLOAD"
scenario "PUBLISH, 100 pattern subscribers, -P 1" 1 1 PUBLISH laravel_database_orders "$PAYLOAD"
scenario "PUBLISH, 100 pattern subscribers, -P 16" 16 1 PUBLISH laravel_database_orders "$PAYLOAD"
scenario "Laravel EVAL, 2 channels, -P 1" 1 0 EVAL "$SCRIPT" 0 "$PAYLOAD" \
  laravel_database_orders laravel_database_private-orders.1
scenario "Laravel EVAL, 2 channels, -P 16" 16 0 EVAL "$SCRIPT" 0 "$PAYLOAD" \
  laravel_database_orders laravel_database_private-orders.1
scenario "PING (round-trip ceiling), -P 1" 1 0 PING

echo
echo "| scenario                                     |  redis req/s | herald req/s | ratio | redis µs CPU/req | herald µs CPU/req |"
echo "|----------------------------------------------|-------------:|-------------:|------:|-------:|-------:|"
printf '%s\n' "${rows[@]}"
