#!/usr/bin/env bash
# Runs socket.io's own conformance suites against herald:
#
#   scripts/protocol-suites.sh <suite-dir> [<suite-dir>]
#
# A <suite-dir> is the `test-suite/` directory of https://github.com/socketio/engine.io-protocol
# or of https://github.com/socketio/socket.io-protocol (clone either; their code is not copied
# into this repository). The script installs the suite's npm dependencies in that directory
# (`npm ci`: mocha, chai, node-fetch, ws), starts target/debug/herald (or $HERALD_BIN; run
# `cargo build` first) on localhost:3000 with the timings the suites expect (ping interval
# 300 ms, ping timeout 200 ms, maxPayload 1000000, connectTimeout 1000 ms), runs the suite
# with mocha and prints each test as pass, FAIL, or n/a: a test of the suite's demo server's
# application logic rather than of the protocol (an Engine.IO echo, an `auth` event, a
# `/custom` namespace), named with the reason. Exit status: non-zero if a protocol test failed.
#
# Paths: the socket.io suite speaks to /socket.io/, herald's path. The engine.io suite speaks
# to /engine.io/ (a bare engine.io server's default); the script runs a copy of its
# test-suite.js, `herald-test-suite.js` written beside it in the suite directory, with
# `/engine.io/` replaced by `/socket.io/` and nothing else changed. (No proxy: the requests
# reach herald as the suite makes them.)
#
# Retries: a protocol test that failed is run again, up to $RETRIES (default 4) more times, and
# the output says at which try it passed or failed. Two tests leave a margin of milliseconds:
# the ping-timeout test polls exactly pingInterval + pingTimeout after the handshake, and the
# forced-close test sends its poll and its close at once on two new connections, which a
# multi-threaded server may take in either order (the poll then finds the session closed, as
# with engine.io when the close comes first). On a busy machine either can fail a try; a
# failure that is herald's fails every try.
#
# Not part of CI (the suites live on GitHub only). Port 3000 must be free.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
herald="${HERALD_BIN:-$root/target/debug/herald}"
RETRIES="${RETRIES:-4}"

if (($# == 0)); then
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
[[ -x $herald ]] || { echo "no herald binary at $herald: run cargo build first" >&2; exit 2; }
if (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null; then
  echo "port 3000 is in use: the suites expect the server under test there" >&2
  exit 2
fi

# Tests of the demo servers' application logic, with why each does not apply to herald.
# The engine.io suite's demo echoes every message back; herald is a socket.io server (a bare
# Engine.IO message `4hello` is an invalid Socket.IO packet to it, which closes the session,
# as socket.io closes it). The socket.io suite's demo emits an `auth` event with the CONNECT
# payload, echoes `message` as `message-back`, acknowledges `message-with-ack` and serves a
# `/custom` namespace: herald's events are Laravel Echo's, and its one namespace is `/`.
ECHO="expects the demo server to echo Engine.IO messages back (application logic)"
UPGRADE_ECHO="ends by expecting the demo's echo; the same upgrade test without the echo is in the socket.io suite"
AUTH='expects the demo app to emit `auth` with the CONNECT payload'
CUSTOM='expects the demo app'"'"'s `/custom` namespace'
MESSAGE_BACK='expects the demo app to echo `message` as `message-back` or acknowledge `message-with-ack`'
AUTH_SETUP='its setup waits for the demo app'"'"'s `auth` event and takes herald'"'"'s first ping for it, which it never answers, so herald closes at the ping timeout before the second ping the test waits for (herald does keep the session after `41` and pings it)'
SETUP_NOTE='its setup takes herald'"'"'s first ping for the demo'"'"'s `auth` event and never answers it, so herald'"'"'s ping timeout would close the connection too; tests/clients/engineio_conformance.test.mjs checks these three closes with no ping due'
export NOTES
NOTES=$(cat <<JSON
{
  "Socket.IO protocol message should close the connection upon invalid format (unknown packet type)": "$SETUP_NOTE",
  "Socket.IO protocol message should close the connection upon invalid format (invalid payload format)": "$SETUP_NOTE",
  "Socket.IO protocol message should close the connection upon invalid format (invalid ack id)": "$SETUP_NOTE"
}
JSON
)
export NOT_APPLICABLE
NOT_APPLICABLE=$(cat <<JSON
{
  "Engine.IO protocol message HTTP long-polling sends and receives a payload containing one plain text packet": "$ECHO",
  "Engine.IO protocol message HTTP long-polling sends and receives a payload containing several plain text packets": "$ECHO",
  "Engine.IO protocol message HTTP long-polling sends and receives a payload containing plain text and binary packets": "$ECHO",
  "Engine.IO protocol message WebSocket sends and receives a plain text packet": "$ECHO",
  "Engine.IO protocol message WebSocket sends and receives a binary packet": "$ECHO",
  "Engine.IO protocol upgrade successfully upgrades from HTTP long-polling to WebSocket": "$UPGRADE_ECHO",
  "Engine.IO protocol upgrade ignores HTTP requests with same sid after upgrade": "$UPGRADE_ECHO",
  "Engine.IO protocol upgrade ignores WebSocket connection with same sid after upgrade": "$UPGRADE_ECHO",
  "Socket.IO protocol connect should allow connection to the main namespace": "$AUTH",
  "Socket.IO protocol connect should allow connection to the main namespace with a payload": "$AUTH",
  "Socket.IO protocol connect should allow connection to a custom namespace": "$CUSTOM",
  "Socket.IO protocol connect should allow connection to a custom namespace with a payload": "$CUSTOM",
  "Socket.IO protocol disconnect should disconnect from the main namespace": "$AUTH_SETUP",
  "Socket.IO protocol disconnect should connect then disconnect from a custom namespace": "$CUSTOM",
  "Socket.IO protocol message should send a plain-text packet": "$MESSAGE_BACK",
  "Socket.IO protocol message should send a packet with binary attachments": "$MESSAGE_BACK",
  "Socket.IO protocol message should send a plain-text packet with an ack": "$MESSAGE_BACK",
  "Socket.IO protocol message should send a packet with binary attachments and an ack": "$MESSAGE_BACK"
}
JSON
)

# Reads mocha's JSON reports. `retry FIRST`: a --grep for the protocol tests that failed.
# `report FIRST AGAIN`: every test's verdict, a test of FIRST that failed taken from AGAIN.
classify="$(mktemp --suffix=.cjs)"
cat >"$classify" <<'JS'
const fs = require('fs');
const na = JSON.parse(process.env.NOT_APPLICABLE);
const notes = JSON.parse(process.env.NOTES);
const read = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const failedIn = (r) => new Map(r.failures.map((t) => [t.fullTitle, t.err.message]));
const [mode, firstFile, againFile] = process.argv.slice(2);
const first = read(firstFile);
const failures = failedIn(first);
const retry = first.tests.filter((t) => (failures.has(t.fullTitle) || t.pending) && na[t.fullTitle] === undefined);
if (mode === 'retry') {
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  console.log(retry.map((t) => `^${escape(t.fullTitle)}$`).join('|'));
  process.exit(0);
}
const again = read(againFile);
const againFailures = failedIn(again);
const count = { pass: 0, FAIL: 0, 'n/a': 0 };
const lines = [];
for (const t of first.tests) {
  let failed = failures.has(t.fullTitle) || t.pending;
  let message = failures.get(t.fullTitle);
  let note = '';
  const rerun = failed && again.tests.find((a) => a.fullTitle === t.fullTitle);
  if (rerun) {
    failed = againFailures.has(t.fullTitle) || rerun.pending;
    message = againFailures.get(t.fullTitle);
    note = ` (${failed ? 'failed' : 'passed'} at try ${rerun.currentRetry + 2})`;
  }
  const verdict = na[t.fullTitle] !== undefined ? 'n/a' : failed ? 'FAIL' : 'pass';
  count[verdict]++;
  let line = `  ${verdict.padEnd(4)} ${t.fullTitle}${note}`;
  if (verdict === 'n/a') line += `\n         (${na[t.fullTitle]}; here it ${failed ? 'fails' : 'passes'})`;
  if (verdict === 'pass' && notes[t.fullTitle]) line += `\n         (note: ${notes[t.fullTitle]})`;
  if (verdict === 'FAIL') line += `\n         ${message}`;
  lines.push(line);
}
console.log(lines.join('\n'));
console.log(`  ${count.pass} passed, ${count.FAIL} failed, ${count['n/a']} not applicable (of ${first.tests.length})`);
process.exit(count.FAIL ? 1 : 0);
JS

pid=
stop_herald() {
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap 'stop_herald; rm -f "$classify"' EXIT

failed=0
for dir in "$@"; do
  dir="$(cd "$dir" && pwd)"
  [[ -f $dir/test-suite.js && -f $dir/package.json ]] || {
    echo "$dir: not a test-suite/ directory of engine.io-protocol or socket.io-protocol" >&2
    exit 2
  }
  name="$(node -p "require('$dir/package.json').name")"
  echo "==> $name ($dir)"
  [[ -d $dir/node_modules ]] || (cd "$dir" && npm ci --no-audit --no-fund >/dev/null)
  suite=test-suite.js
  if grep -q '/engine\.io/' "$dir/test-suite.js"; then
    sed 's#/engine\.io/#/socket.io/#g' "$dir/test-suite.js" >"$dir/herald-test-suite.js"
    suite=herald-test-suite.js
  fi

  log="$(mktemp)"
  "$herald" --http-bind 127.0.0.1:3000 --redis-bind 127.0.0.1:0 \
    --ping-interval-ms 300 --ping-timeout-ms 200 --max-http-buffer-size 1000000 \
    --socketio-connect-timeout-ms 1000 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:3000/healthz >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:3000/healthz >/dev/null || { cat "$log" >&2; echo "herald did not start" >&2; exit 2; }

  # First every test once; then the protocol tests that failed, with retries.
  first="$(mktemp)" again="$(mktemp)"
  (cd "$dir" && npx mocha --reporter json "$suite" >"$first" 2>/dev/null) || true
  retry="$(node "$classify" retry "$first")"
  echo '{"tests":[],"failures":[]}' >"$again"
  if [[ -n $retry ]]; then
    (cd "$dir" && npx mocha --reporter json --retries "$RETRIES" --grep "$retry" "$suite" >"$again" 2>/dev/null) || true
  fi
  stop_herald
  node "$classify" report "$first" "$again" || failed=1
  rm -f "$first" "$again" "$log"
done
exit "$failed"
