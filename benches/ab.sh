#!/usr/bin/env bash
# benches/ab.sh: two herald binaries (BEFORE and AFTER a change) measured in the same run,
# arms alternating every round, so that a shared, busy machine weighs on both alike.
# Used for TLS (what --tls-cert costs, and whether the TLS code costs anything with TLS off)
# and for the release profile (LTO, one codegen unit): see docs/benchmarks.md.
#
# Each round runs, for each protocol of $PROTOCOLS, each arm of $ARMS (in reverse order every
# other round):
#   before      BEFORE over ws://          after       AFTER over ws://
#   after-tls   AFTER over wss:// (--tls-cert/--tls-key; herald-bench --tls-ca)
# with 1,000 subscribers on one channel, 200 publications/s over RESP, 5 s measured after
# 2 s of warm-up (herald-bench run … -n 1000 -c 1 -r 200 -d 5 --warmup 2 --sources 4), and
# prints: round, protocol, arm, herald µs CPU per delivery, p50 ms, p99 ms, lost, failed.
# With RESP_REQUESTS > 0, each round also runs, for the arms without TLS, redis-benchmark
# against herald's RESP port (PUBLISH of a 200-byte payload, no subscribers, -c 50 -P 16,
# RESP_REQUESTS requests) and prints: round, resp, arm, requests/s, herald µs CPU per request.
# Every report goes to $OUT (one JSON object a line); at the end, and with --report (from
# $OUT alone), the medians of each arm and, round by round, each arm's ratio to before.
#
# Run (from anywhere; the binaries are copied aside first, e.g. /tmp/herald-before):
#   BEFORE=/tmp/herald-before AFTER=target/release/herald BENCH=target/release/herald-bench \
#     ARMS="before after" PROTOCOLS="pusher sio4" RESP_REQUESTS=1000000 ROUNDS=6 benches/ab.sh
#   BEFORE=… AFTER=… BENCH=… CERT=leaf.pem KEY=leaf.key CA=ca.pem benches/ab.sh   # TLS, as measured
# Env: BEFORE, AFTER (herald binaries), BENCH (herald-bench; the same one for every arm),
#   ARMS ["before after after-tls"], PROTOCOLS [pusher], ROUNDS [3], RESP_REQUESTS [0],
#   CERT, KEY, CA (PEM, a leaf for 127.0.0.1 and its CA; only with after-tls),
#   OUT [/tmp/ab.jsonl]. Loopback only (ports 16601, 16602); each herald is stopped after its run.
set -u
OUT=${OUT:-/tmp/ab.jsonl}
report() { # medians per protocol and arm, and the median over rounds of each arm's ratio to before
  python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def val(r):
    if r["protocol"] == "resp": return r.get("requests_per_s"), r.get("herald_cpu_us_per_request")
    d = r.get("report") or {}
    return d.get("server_cpu_us_per_delivery"), None
for proto in dict.fromkeys(r["protocol"] for r in rows):
    what = ["requests/s", "herald µs CPU/request"] if proto == "resp" else ["herald µs CPU/delivery"]
    for k, name in enumerate(what):
        base = {r["round"]: val(r)[k] for r in rows if r["protocol"] == proto and r["arm"] == "before"}
        for arm in dict.fromkeys(r["arm"] for r in rows if r["protocol"] == proto):
            rs = [r for r in rows if r["protocol"] == proto and r["arm"] == arm and val(r)[k] is not None]
            xs = [val(r)[k] for r in rs]
            if not xs: continue
            ratios = [val(r)[k] / base[r["round"]] for r in rs if base.get(r["round"])]
            ratio = f"; {arm}/before by round: median {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})" if arm != "before" and ratios else ""
            print(f"{proto} {arm} {name}: median {statistics.median(xs):,.3f} of {', '.join(f'{x:,.3f}' for x in xs)}{ratio}")
PY
}
if [ "${1:-}" = --report ]; then report; exit 0; fi
: "${BEFORE:?a herald binary without the change}" "${AFTER:?a herald binary with it}" "${BENCH:?herald-bench}"
ARMS=${ARMS:-before after after-tls}
PROTOCOLS=${PROTOCOLS:-pusher}
ROUNDS=${ROUNDS:-3}
RESP_REQUESTS=${RESP_REQUESTS:-0}
case " $ARMS " in *" after-tls "*) : "${CERT:?}" "${KEY:?}" "${CA:?}" ;; esac
PAYLOAD=$(printf '{"event":"App\\\\Events\\\\Bench","data":{"n":1,"pad":"%0132d"},"socket":null}' 0)
: > "$OUT"
echo "started $(date -u '+%F %T') UTC; load $(cut -d' ' -f1-3 /proc/loadavg)"

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
start() { # binary, extra herald args…: sets pid once herald's RESP port answers
  local bin=$1; shift
  "$bin" --http-bind 127.0.0.1:16601 --redis-bind 127.0.0.1:16602 --log warn "$@" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/16602) 2>/dev/null && break; sleep 0.1; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null; }

for r in $(seq 1 "$ROUNDS"); do
  # The order of the arms is reversed every other round (ABBA), so that neither always runs first.
  order=$ARMS
  [ $((r % 2)) = 0 ] && order=$(echo "$ARMS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for proto in $PROTOCOLS; do
    for arm in $order; do
      bin=$AFTER; [ "$arm" = before ] && bin=$BEFORE
      extra=(); bextra=()
      if [ "$arm" = after-tls ]; then extra=(--tls-cert "$CERT" --tls-key "$KEY"); bextra=(--tls-ca "$CA"); fi
      start "$bin" "${extra[@]}"
      line=$("$BENCH" run --server 127.0.0.1:16601 --redis 127.0.0.1:16602 --protocol "$proto" -n 1000 -c 1 \
        -r 200 -d 5 --warmup 2 --sources 4 --server-pid "$pid" --label "$arm" "${bextra[@]}" 2>/dev/null | grep '^{')
      stop
      echo "{\"round\":$r,\"protocol\":\"$proto\",\"arm\":\"$arm\",\"report\":${line:-null}}" >> "$OUT"
      echo "$r $proto $arm $(echo "${line:-null}" | python3 -c 'import json,sys; d=json.load(sys.stdin) or {}
print(round(d["server_cpu_us_per_delivery"],3), d["p50_ms"], d["p99_ms"], d["lost"], d["failed"]) if d else print("no report")')"
    done
  done
  [ "$RESP_REQUESTS" -gt 0 ] || continue
  for arm in $order; do
    [ "$arm" = after-tls ] && continue
    bin=$AFTER; [ "$arm" = before ] && bin=$BEFORE
    start "$bin"
    t0=$(cpu_ticks "$pid")
    rps=$(redis-benchmark -p 16602 -c 50 -P 16 -n "$RESP_REQUESTS" -q PUBLISH laravel_database_bench.1 "$PAYLOAD" \
      | tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "requests") v = $i } END { print v }')
    t1=$(cpu_ticks "$pid")
    stop
    us=$(python3 -c "print(round(($t1 - $t0) * 10000 / $RESP_REQUESTS, 3))")
    echo "{\"round\":$r,\"protocol\":\"resp\",\"arm\":\"$arm\",\"requests_per_s\":${rps:-null},\"herald_cpu_us_per_request\":$us}" >> "$OUT"
    echo "$r resp $arm $rps $us"
  done
done
echo "ended $(date -u '+%F %T') UTC; load $(cut -d' ' -f1-3 /proc/loadavg)"
report
