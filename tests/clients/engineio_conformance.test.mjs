// Three Engine.IO behaviours as the reference engine.io server has them, which socket.io's own
// conformance suites check (scripts/protocol-suites.sh runs those): a handshake without a usable
// `EIO` is refused, a client's close over polling ends its pending poll with a noop, and a second
// WebSocket for a session that is upgrading or upgraded is accepted and closed. And the suite's
// three invalid-format closes, which there share a set-up with a ping left unanswered. Raw fetch
// for HTTP and a raw WebSocket over `net`, so the bytes are herald's own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald } from './lib/herald.mjs';
import { rawUpgrade } from './lib/rawws.mjs';
import { within } from './lib/wait.mjs';

// Default heartbeats (25 s / 20 s): no ping answers a long-poll under test. socket.io recovery
// off: the suites expect a server without it (no pid in CONNECT, no herald:offset after it).
let h;
before(async () => { h = await startHerald(['--recovery-window', '0']); });
after(async () => { await h.stop(); });

const eio = (q) => `${h.url}/socket.io/?${q}`;

async function expectError(res, status, code, message) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(await res.text(), JSON.stringify({ code, message }));
}

async function pollingSession() {
  const res = await fetch(eio('EIO=4&transport=polling'));
  const sid = /"sid":"([^"]+)"/.exec(await res.text())[1];
  return { sid, url: eio(`EIO=4&transport=polling&sid=${sid}`) };
}

// Upgrade a polling session to a raw WebSocket; `complete: false` stops after the probe.
async function upgrade(s, { complete = true } = {}) {
  const { status, ws } = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  assert.equal(status, 101);
  ws.send('2probe');
  assert.equal(await ws.next(), '3probe');
  if (complete) ws.send('5');
  return ws;
}

// A WebSocket herald turns away: the handshake succeeds (101), then a close frame and the end of
// the connection, and not one Engine.IO packet.
async function expectTurnedAway(path) {
  const r = await rawUpgrade(h.httpPort, path);
  assert.equal(r.status, 101, `${path}: accepted, as engine.io accepts it (got ${r.status} ${r.body ?? ''})`);
  assert.equal(await r.ws.next(), null, 'no packet, only the close');
  assert.equal(r.ws.closeCode, 1000);
  await r.ws.closedWithin();
}

test('a handshake without EIO=4 (or 3) is refused with code 5, as engine.io refuses it', async () => {
  for (const q of ['transport=polling', 'EIO=abc&transport=polling', 'EIO=5&transport=polling', 'EIO=&transport=polling']) {
    await expectError(await fetch(eio(q)), 400, 5, 'Unsupported protocol version');
  }
  // On a WebSocket: engine.io's bare 400 with the message.
  const ws = await rawUpgrade(h.httpPort, '/socket.io/?transport=websocket');
  assert.equal(ws.status, 400);
  assert.equal(ws.body, 'Unsupported protocol version');
  // Both generations herald speaks still open.
  for (const v of ['3', '4']) {
    const res = await fetch(eio(`EIO=${v}&transport=polling`));
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^(\d+:)?0\{"sid":/);
  }
});

test('a close POSTed while a poll waits answers the poll with a noop, then the session is gone', async () => {
  // The poll must reach herald before the close. herald cannot show that it did; a close that
  // overtook the poll (which then finds no session) is tried again with a longer head start. A
  // herald that answers the waiting poll otherwise fails every attempt.
  for (const gap of [50, 500, 3000]) {
    const s = await pollingSession();
    const poll = fetch(s.url);
    await new Promise((r) => setTimeout(r, gap));
    const close = await fetch(s.url, { method: 'POST', body: '1' });
    assert.equal(close.status, 200);
    assert.equal(await close.text(), 'ok');
    const res = await within(poll, 'the waiting poll answered');
    if (res.status === 400) {
      await expectError(res, 400, 1, 'Session ID unknown'); // the close came first
      continue;
    }
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=UTF-8');
    assert.equal(await res.text(), '6');
    await expectError(await fetch(s.url), 400, 1, 'Session ID unknown');
    return;
  }
  assert.fail('the poll never reached herald before the close');
});

test('a close POSTed with no poll waiting ends the session', async () => {
  const s = await pollingSession();
  const close = await fetch(s.url, { method: 'POST', body: '1' });
  assert.equal(await close.text(), 'ok');
  await expectError(await fetch(s.url), 400, 1, 'Session ID unknown');
});

test('a second WebSocket for an upgraded session is accepted and closed; the first goes on', async () => {
  const s = await pollingSession();
  const first = await upgrade(s);
  await expectTurnedAway(`/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  // Polling is over for the session: engine.io's transport mismatch.
  await expectError(await fetch(s.url), 400, 3, 'Bad request');
  first.send('40');
  // The noop herald queued at the probe for a poll that never came arrives first.
  assert.equal(await first.next(), '6');
  assert.match(await first.next(), /^40\{"sid":"[\w-]{20}"\}$/, 'the upgraded session still answers');
  first.end();
});

test('a second WebSocket while the first probes is accepted and closed; the upgrade completes', async () => {
  const s = await pollingSession();
  const first = await upgrade(s, { complete: false });
  await expectTurnedAway(`/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  // The probe's noop releases polling (the `6` herald queues for the pending or next poll).
  assert.equal(await (await fetch(s.url)).text(), '6');
  first.send('5');
  first.send('40');
  assert.match(await first.next(), /^40\{"sid":"[\w-]{20}"\}$/);
  first.end();
});

test('a WebSocket upgrade naming the polling transport is accepted and closed', async () => {
  const s = await pollingSession();
  await expectTurnedAway(`/socket.io/?EIO=4&transport=polling&sid=${s.sid}`);
  // The session itself is untouched.
  const post = await fetch(s.url, { method: 'POST', body: '40' });
  assert.equal(await post.text(), 'ok');
  assert.match(await (await fetch(s.url)).text(), /^40\{"sid":"/);
});

test('the socket.io suite\'s invalid formats close the connection at once', async () => {
  // Default heartbeats (a 25 s ping interval): a close within the deadline is the packet's doing.
  for (const bad of ['4abc', '42{}', '42abc["message-with-ack",1,"2",{"3":[false]}]']) {
    const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
    assert.match(await ws.next(), /^0\{"sid":/);
    ws.send('40');
    assert.match(await ws.next(), /^40\{"sid":"/);
    ws.send(bad);
    assert.equal(await ws.next(), null, `${bad}: closed with nothing sent`);
    await ws.closedWithin();
  }
});
