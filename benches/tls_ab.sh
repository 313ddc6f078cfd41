#!/usr/bin/env bash
# benches/tls_ab.sh: what TLS costs herald, and whether a change costs anything with TLS off.
# Three arms per round, alternating: BEFORE (a herald binary without the change) over ws://,
# AFTER over ws://, AFTER over wss:// (--tls-cert/--tls-key, herald-bench --tls-ca). Pusher,
# 1,000 subscribers on one channel, 200 publications/s over RESP, 5 s measured after 2 s of
# warm-up. Prints one line per run: round, arm, herald µs CPU per delivery, p50 ms, p99 ms,
# lost, failed; every JSON report goes to $OUT.
# Env: BEFORE, AFTER (herald binaries), BENCH (herald-bench built with --tls-ca),
#   CERT, KEY, CA (PEM; a leaf for 127.0.0.1 and its CA), ROUNDS [3], OUT [/tmp/tls-ab.jsonl].
# Loopback only; each herald is stopped after its run.
set -u
: "${BEFORE:?a herald binary without the change}" "${AFTER:?a herald binary with it}"
: "${BENCH:?herald-bench}" "${CERT:?}" "${KEY:?}" "${CA:?}"
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/tls-ab.jsonl}
: > "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for arm in before-plain after-plain after-tls; do
    bin=$AFTER; [ "$arm" = before-plain ] && bin=$BEFORE
    extra=(); bextra=()
    if [ "$arm" = after-tls ]; then extra=(--tls-cert "$CERT" --tls-key "$KEY"); bextra=(--tls-ca "$CA"); fi
    "$bin" --http-bind 127.0.0.1:16601 --redis-bind 127.0.0.1:16602 --log warn "${extra[@]}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/16602) 2>/dev/null && break; sleep 0.1; done
    line=$("$BENCH" run --server 127.0.0.1:16601 --redis 127.0.0.1:16602 --protocol pusher -n 1000 -c 1 \
      -r 200 -d 5 --warmup 2 --sources 4 --server-pid "$pid" --label "$arm" "${bextra[@]}" 2>/dev/null | grep '^{')
    kill "$pid"; wait "$pid" 2>/dev/null
    echo "{\"round\":$r,\"arm\":\"$arm\",\"report\":$line}" >> "$OUT"
    echo "$r $arm $(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["server_cpu_us_per_delivery"],3), d["p50_ms"], d["p99_ms"], d["lost"], d["failed"])')"
  done
done
