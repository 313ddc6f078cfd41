// Bad input on the socket.io endpoint gets the reference engine.io server's answer, and closes
// only the offending session. Raw fetch for HTTP, a raw WebSocket over `net` for frames.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { io } from 'socket.io-client';
import { startHerald, once, sleep } from './lib/herald.mjs';
import { rawUpgrade } from './lib/rawws.mjs';
import { until, within } from './lib/wait.mjs';

// Default heartbeats (25 s / 20 s): no session here dies of a paused event loop, and no ping
// answers a long-poll under test. The heartbeat test has its own herald.
let h;
before(async () => {
  h = await startHerald(['--max-http-buffer-size', '1000', '--allowed-origins', 'http://app.test,http://other.test']);
});
after(async () => { await h.stop(); });

const eio = (q) => `${h.url}/socket.io/?${q}`;

async function expectError(res, status, code, message) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.deepEqual(await res.json(), { code, message });
}

// A polling session; returns its sid and a URL for it.
async function pollingSession(v = 4, server = h) {
  const res = await fetch(`${server.url}/socket.io/?EIO=${v}&transport=polling`);
  const body = await res.text();
  const sid = /"sid":"([^"]+)"/.exec(body)[1];
  return { sid, url: `${server.url}/socket.io/?EIO=${v}&transport=polling&sid=${sid}`, body };
}

// Whether herald has forgotten a polling session (asked with a noop POST, which a live
// session answers `ok` without side effects).
async function gone(s) {
  const res = await fetch(s.url, { method: 'POST', body: '6' });
  if (res.status === 200) return false;
  assert.deepEqual([res.status, await res.json()], [400, { code: 1, message: 'Session ID unknown' }]);
  return true;
}

// For a step whose precondition herald cannot show — a request has reached it and waits —
// `attempt(gap)` leaves the request `gap` ms to get there and says whether it did; a missed
// precondition is retried with a longer gap. A herald that behaves wrongly fails every attempt.
async function withGrowingGap(what, attempt, gaps = [50, 500, 3000]) {
  for (const gap of gaps) if (await attempt(gap)) return;
  assert.fail(`${what}: not seen with gaps of ${gaps.join(', ')} ms`);
}

test('HTTP errors carry engine.io codes and messages', async () => {
  await expectError(await fetch(eio('EIO=4&transport=carrier-pigeon')), 400, 0, 'Transport unknown');
  await expectError(await fetch(eio('EIO=4')), 400, 0, 'Transport unknown');
  await expectError(await fetch(eio('EIO=4&transport=polling&sid=nope')), 400, 1, 'Session ID unknown');
  await expectError(await fetch(eio('EIO=4&transport=polling'), { method: 'POST', body: '40' }), 400, 2, 'Bad handshake method');
  await expectError(await fetch(eio('EIO=4&transport=websocket')), 400, 3, 'Bad request');
  // A WebSocket session cannot be polled.
  const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
  const sid = /"sid":"([^"]+)"/.exec(await ws.next())[1];
  await expectError(await fetch(eio(`EIO=4&transport=polling&sid=${sid}`)), 400, 3, 'Bad request');
  ws.end();
});

test('WebSocket upgrade errors are a bare 400 with the message', async () => {
  const r = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket&sid=nope');
  assert.equal(r.status, 400);
  assert.equal(r.body, 'Session ID unknown');
  const bad = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=nope');
  assert.equal(bad.status, 400);
  assert.equal(bad.body, 'Transport unknown');
});

test('a POST over max_http_buffer_size is a 413', async () => {
  const s = await pollingSession();
  const res = await fetch(s.url, { method: 'POST', body: '4' + 'x'.repeat(1200) });
  assert.equal(res.status, 413);
  assert.equal(await res.text(), '');
  // The session itself is still there.
  const ok = await fetch(s.url, { method: 'POST', body: '40' });
  assert.equal(await ok.text(), 'ok');
});

test('a WebSocket message over max_http_buffer_size closes with 1009', async () => {
  const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
  await ws.next();
  ws.send('4' + 'x'.repeat(1200));
  await ws.closedWithin();
  assert.equal(ws.closeCode, 1009);
});

test('a second concurrent GET is a 400 and closes the session', async () => {
  const s = await pollingSession();
  // Whichever herald sees second is refused and closes the session; the one waiting then
  // learns of the close.
  const answers = await within(Promise.all([fetch(s.url), fetch(s.url)].map(async (r) => {
    const res = await r;
    return [res.status, await res.text()];
  })), 'both GETs answered');
  const refused = answers.find(([status]) => status === 400);
  const waiting = answers.find(([status]) => status === 200);
  assert.ok(refused && waiting, JSON.stringify(answers));
  assert.equal(waiting[1], '1', 'the pending poll learns of the close');
  await expectError(await fetch(s.url), 400, 1, 'Session ID unknown');
});

test('a second concurrent POST is a 400 and closes the session', async () => {
  const s = await pollingSession();
  // A POST whose body never finishes holds the data request open.
  const u = new URL(s.url);
  const slow = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', headers: { 'content-length': '100' } });
  slow.on('error', () => {});
  slow.write('40');
  // Noop POSTs pass until herald is reading the slow one; then one is refused.
  await until(async () => (await fetch(s.url, { method: 'POST', body: '6' })).status === 400, 'a POST refused as concurrent');
  slow.destroy();
  await expectError(await fetch(s.url), 400, 1, 'Session ID unknown');
});

test('malformed packets close only the offending connection', async () => {
  const bystander = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(bystander, 'connect');
  for (const bad of ['9', '', '4x', '42["connect"]', '42{"a":1}', '41{"x":1}', '4' + '2["x"', 'b!!']) {
    const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
    await ws.next();
    ws.send('40');
    assert.match(await ws.next(), /^40\{"sid":"/);
    ws.send(bad);
    await ws.closedWithin();
  }
  // Over polling: the POST is answered, the session is gone.
  const s = await pollingSession();
  const post = await fetch(s.url, { method: 'POST', body: '40\x1e4{bad' });
  assert.equal(await post.text(), 'ok');
  await expectError(await fetch(s.url), 400, 1, 'Session ID unknown');
  // A v4 POST with a binary body is refused.
  const b = await pollingSession();
  const bin = await fetch(b.url, { method: 'POST', body: Buffer.from([0, 1, 255, 52]), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(bin.status, 400);
  assert.ok(bystander.connected, 'the other socket never noticed');
  bystander.close();
});

test('binary attachments are parsed and consumed; stray binary closes the connection', async () => {
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(socket, 'connect');
  socket.emit('upload', Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) });
  // Still alive and in sync: the next acked event is answered.
  await new Promise((resolve) => socket.emit('subscribe', { channel: 'after-binary' }, resolve));
  socket.close();
  const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
  await ws.next();
  ws.send(Buffer.from([1, 2, 3]), 2);
  await ws.closedWithin();
});

test('heartbeats: the server pings v4 clients, also after an upgrade, and silent clients are dropped', async () => {
  // The heartbeat is the subject: a short interval, and a timeout a busy machine meets.
  const fast = await startHerald(['--ping-interval-ms', '300', '--ping-timeout-ms', '1500']);
  try {
    const { ws } = await rawUpgrade(fast.httpPort, '/socket.io/?EIO=4&transport=websocket');
    assert.match(await ws.next(), /"pingInterval":300,"pingTimeout":1500,/);
    assert.equal(await ws.next(), '2', 'a ping after ping_interval');
    ws.send('3');
    assert.equal(await ws.next(), '2', 'and again after the pong');
    // No pong now: closed after ping_timeout.
    await ws.closedWithin();

    // After an upgrade the heartbeats continue on the WebSocket.
    const s = await pollingSession(4, fast);
    const up = (await rawUpgrade(fast.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`)).ws;
    up.send('2probe');
    assert.equal(await up.next(), '3probe');
    up.send('5');
    const nextPing = async () => { for (;;) { const m = await up.next(); if (m === '2' || m === null) return m; } };
    assert.equal(await nextPing(), '2');
    up.send('3');
    assert.equal(await nextPing(), '2');
    up.end();

    // v3: the client pings, the server answers; a v4 client must not ping.
    const v3 = (await rawUpgrade(fast.httpPort, '/socket.io/?EIO=3&transport=websocket')).ws;
    await v3.next();
    assert.equal(await v3.next(), '40');
    v3.send('2');
    assert.equal(await v3.next(), '3');
    await v3.closedWithin(); // silent for ping_interval + ping_timeout
    const wrong = (await rawUpgrade(fast.httpPort, '/socket.io/?EIO=4&transport=websocket')).ws;
    await wrong.next();
    wrong.send('2');
    await wrong.closedWithin();
  } finally {
    await fast.stop();
  }
});

test('EIO=3 polling: length-prefixed payloads and JSONP', async () => {
  const s = await pollingSession(3);
  assert.match(s.body, /^\d+:0\{"sid":"[\w-]{20}","upgrades":\["websocket"\],"pingInterval":25000,"pingTimeout":20000\}2:40$/);
  const post = await fetch(s.url, { method: 'POST', body: '1:2' + '21:42["subscribe",{"channel":"é"}]'.replace('21', String('42["subscribe",{"channel":"é"}]'.length)) });
  assert.equal(await post.text(), 'ok');
  // "é" is no channel name (edge_policy): the refusal's length counts characters, not bytes.
  assert.equal(await (await fetch(s.url)).text(), '1:332:42["subscription_error","é",400]');
  const j = await fetch(eio('EIO=3&transport=polling&j=4'));
  const body = await j.text();
  assert.match(body, /^___eio\[4\]\("\d+:0\{\\"sid\\":\\"[\w-]{20}\\".*2:40"\);$/);
  const sid = /\\"sid\\":\\"([\w-]+)\\"/.exec(body)[1];
  const jp = await fetch(eio(`EIO=3&transport=polling&j=4&sid=${sid}`), {
    method: 'POST', body: 'd=' + encodeURIComponent('1:2'), headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assert.equal(await jp.text(), 'ok');
  assert.equal(await (await fetch(eio(`EIO=3&transport=polling&j=4&sid=${sid}`))).text(), '___eio[4]("1:3");');
});

test('CORS: allowed origins are echoed with credentials, others refused on both transports', async () => {
  const pre = await fetch(eio('EIO=4&transport=polling'), {
    method: 'OPTIONS', headers: { Origin: 'http://app.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.test');
  assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
  assert.equal(pre.headers.get('access-control-allow-headers'), 'content-type');
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  const ok = await fetch(eio('EIO=4&transport=polling'), { headers: { Origin: 'http://other.test' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'http://other.test');
  assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');
  await expectError(await fetch(eio('EIO=4&transport=polling'), { headers: { Origin: 'http://evil.test' } }), 403, 4, 'Forbidden');
  const pre2 = await fetch(eio('EIO=4&transport=polling'), { method: 'OPTIONS', headers: { Origin: 'http://evil.test' } });
  assert.equal(pre2.status, 403);
  assert.equal(pre2.headers.get('access-control-allow-origin'), null);
  const ws = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket', { Origin: 'http://evil.test' });
  assert.equal(ws.status, 400);
  assert.equal(ws.body, 'Forbidden');
  const good = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket', { Origin: 'http://app.test' });
  assert.equal(good.status, 101);
  good.ws.end();
});

test('the upgrade by hand: 2probe/3probe, noop to the pending poll, 5, then WebSocket only', async () => {
  const s = await pollingSession();
  assert.equal(await (await fetch(s.url, { method: 'POST', body: '40' })).text(), 'ok');
  // The CONNECT reply with the recovery session id, then herald's first offset.
  assert.match(await (await fetch(s.url)).text(), /^40\{"sid":"[\w-]{20}","pid":"[\w-]+"\}\x1e42\["herald:offset","[^"]+"\]$/);
  // The noop is queued at the probe: a poll waiting then, or arriving after it, gets it.
  const pending = fetch(s.url).then((r) => r.text());
  const { ws } = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  ws.send('2probe');
  assert.equal(await ws.next(), '3probe');
  assert.equal(await within(pending, 'the pending GET'), '6', 'the pending GET is released with a noop');
  ws.send('5');
  ws.send('42["subscribe",{"channel":"upgraded"}]');
  ws.send('421["subscribe",{"channel":"upgraded2"}]');
  assert.equal(await ws.next(), '431[]', 'packets sent right after 5 are handled over the WebSocket');
  await expectError(await fetch(s.url), 400, 3, 'Bad request');
  // A second upgrade of the same session is accepted and closed, as engine.io does
  // (engineio_conformance.test.mjs).
  const again = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  assert.equal(again.status, 101);
  assert.equal(await again.ws.next(), null);
  ws.end();
});

test('a client that polls again during the upgrade is released with a noop when it completes', async () => {
  await withGrowingGap('a poll waiting when the upgrade completed', async (gap) => {
    const s = await pollingSession();
    assert.equal(await (await fetch(s.url, { method: 'POST', body: '40' })).text(), 'ok');
    await (await fetch(s.url)).text();
    const { ws } = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
    ws.send('2probe');
    assert.equal(await ws.next(), '3probe');
    assert.equal(await (await fetch(s.url)).text(), '6', 'the noop of the probe');
    const stray = fetch(s.url).then(async (r) => [r.status, await r.text()]);
    await sleep(gap); // for the stray poll to reach herald: nothing shows that it has
    ws.send('5');
    const [status, body] = await within(stray, 'the stray poll answered');
    ws.end();
    if (status === 400) return false; // it came after the upgrade: the precondition was missed
    assert.deepEqual([status, body], [200, '6']);
    return true;
  });
});

test('a failed probe leaves the session on polling', async () => {
  const s = await pollingSession();
  const { ws } = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${s.sid}`);
  ws.send('4garbage');
  await ws.closedWithin();
  const post = await fetch(s.url, { method: 'POST', body: '40' });
  assert.equal(await post.text(), 'ok');
  assert.match(await (await fetch(s.url)).text(), /^40\{"sid":/);
});

test('a long-poll the client abandons ends the session, as in the reference server', async () => {
  await withGrowingGap('the session ended by an abandoned poll', async (gap) => {
    const s = await pollingSession();
    const ac = new AbortController();
    const pending = fetch(s.url, { signal: ac.signal }).catch(() => 'aborted');
    await sleep(gap); // for the poll to reach herald: nothing shows that it has
    ac.abort();
    assert.equal(await pending, 'aborted');
    // Missed (the poll never reached herald) or wrong (herald kept the session): a live session.
    return until(() => gone(s), 'the session to end').then(() => true, () => false);
  });
});
