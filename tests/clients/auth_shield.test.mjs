// What a socket.io client can make herald send the Laravel app's /broadcasting/auth, and the
// limits on sessions that never join: socket.io-client 4 (and raw HTTP / raw WebSocket where a
// real client never misbehaves) against herald, with a stand-in app that records every request
// it receives, how many it holds at once, and answers like Laravel's RedisBroadcaster.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { io } from 'socket.io-client';
import { startHerald, once, sleep } from './lib/herald.mjs';
import { rawUpgrade } from './lib/rawws.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

// The app: `private-ok.*` is allowed, `private-no.*` refused (403), `presence-room` names the
// user of the session cookie `laravel_session=<id>`. `delayMs` holds each answer that long.
async function startApp({ delayMs = 0 } = {}) {
  const app = { requests: [], inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      const form = Object.fromEntries(new URLSearchParams(body));
      app.requests.push({ headers: req.headers, rawHeaders: req.rawHeaders, form });
      app.inFlight += 1;
      app.maxInFlight = Math.max(app.maxInFlight, app.inFlight);
      if (delayMs) await sleep(delayMs);
      app.inFlight -= 1;
      const channel = form.channel_name || '';
      const user = /laravel_session=(\d+)/.exec(req.headers.cookie || '')?.[1];
      const json = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (channel.startsWith('private-ok.')) return json(200, true);
      if (channel === 'presence-room' && user) {
        return json(200, { channel_data: { user_id: Number(user), user_info: { id: Number(user) } } });
      }
      return json(403, { message: '' });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  app.endpoint = `http://127.0.0.1:${server.address().port}/broadcasting/auth`;
  app.to = (channel) => app.requests.filter((r) => r.form.channel_name === channel);
  cleanup.push(() => new Promise((r) => { server.closeAllConnections(); server.close(r); }));
  return app;
}

async function herald(args) {
  const h = await startHerald(args);
  cleanup.push(() => h.stop());
  return h;
}

async function client(h, opts = {}) {
  const socket = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false, ...opts });
  cleanup.push(() => socket.disconnect());
  const errors = [];
  socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
  socket.errors = errors;
  if (!socket.connected) await once(socket, 'connect', 10000);
  return socket;
}

// Subscribe and wait for herald's acknowledgement, which comes after the app's answer (or
// herald's refusal): the subscription_error, if any, has arrived by then.
function subscribe(socket, channel, headers, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ack for ${channel}`)), ms);
    const payload = headers ? { channel, auth: { headers } } : { channel };
    socket.emit('subscribe', payload, () => { clearTimeout(t); resolve(); });
  });
}

const errorFor = (socket, channel) => socket.errors.filter(([c]) => c === channel).map(([, s]) => s);

async function until(pred, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what} not met in time`);
    await sleep(20);
  }
}

test('the app receives exactly the allowlist and herald\'s own X-Forwarded-For with the client\'s address', async () => {
  const app = await startApp();
  const h = await herald(['--auth-endpoint', app.endpoint, '--auth-forward-header', 'X-Tenant']);
  const spoof = {
    'X-Forwarded-For': '6.6.6.6', Forwarded: 'for=6.6.6.6', 'X-Real-IP': '6.6.6.6',
    'X-HTTP-Method-Override': 'DELETE', 'X-Forwarded-Host': 'evil.test', 'X-Other': 'o',
  };
  const socket = await client(h, {
    extraHeaders: { Cookie: 'laravel_session=1', 'X-Tenant': 'from-handshake', ...spoof },
    auth: { headers: { 'X-CSRF-TOKEN': 'csrf', 'X-Forwarded-For': '7.7.7.7', Host: 'evil.test', ...spoof } },
  });
  await subscribe(socket, 'private-ok.1', {
    Authorization: 'Bearer 1', 'X-XSRF-TOKEN': 'xsrf', 'X-Tenant': 'from-subscription',
    'Content-Type': 'text/plain', 'X-Forwarded-For': '8.8.8.8', ...spoof,
  });
  assert.deepEqual(socket.errors, []);
  const [req] = app.to('private-ok.1');
  const { host, 'content-length': length, ...headers } = req.headers;
  assert.equal(host, new URL(app.endpoint).host);
  assert.ok(Number(length) > 0);
  assert.deepEqual(headers, {
    accept: 'application/json',
    authorization: 'Bearer 1',
    'content-type': 'application/x-www-form-urlencoded',
    cookie: 'laravel_session=1',
    'x-csrf-token': 'csrf',
    'x-forwarded-for': '127.0.0.1',
    'x-requested-with': 'XMLHttpRequest',
    'x-tenant': 'from-subscription',
    'x-xsrf-token': 'xsrf',
  });
  assert.equal(req.rawHeaders.filter((v, i) => i % 2 === 0 && /^x-forwarded-for$/i.test(v)).length, 1);
  assert.equal(req.form.socket_id, socket.id);
});

test('30,000 auth headers: refused with 431, /healthz answers meanwhile, the socket keeps working', async () => {
  const app = await startApp();
  const h = await herald(['--auth-endpoint', app.endpoint]);
  const many = Object.fromEntries(Array.from({ length: 30000 }, (_, i) => [`X-H${i}`, 'v']));
  many.Cookie = 'laravel_session=1';
  // /healthz is asked over and over while herald reads the headers; each answer in time.
  let probing = true;
  let slowest = 0;
  let probes = 0;
  const prober = (async () => {
    while (probing) {
      const t = Date.now();
      try {
        const res = await fetch(`${h.url}/healthz`, { signal: AbortSignal.timeout(5000) });
        await res.text();
        if (res.status !== 200) slowest = Infinity;
      } catch {
        slowest = Infinity;
        return;
      }
      slowest = Math.max(slowest, Date.now() - t);
      probes += 1;
    }
  })();
  let socket;
  try {
    socket = await client(h, { extraHeaders: { Cookie: 'laravel_session=1' } });
    const before = probes;
    await subscribe(socket, 'private-ok.1', many);
    assert.deepEqual(errorFor(socket, 'private-ok.1'), [431]);
    // The same many at CONNECT: every private subscription of that socket is refused.
    const big = await client(h, { auth: { headers: many } });
    await subscribe(big, 'private-ok.2');
    assert.deepEqual(errorFor(big, 'private-ok.2'), [431]);
    await until(() => probes > before + 2 || slowest === Infinity, 10000, 'healthz probes');
  } finally {
    probing = false;
    await prober;
  }
  assert.ok(slowest < 2000, `/healthz took ${slowest} ms`);
  assert.equal(app.requests.length, 0, 'nothing reached the app');
  // No slot leaked, nothing panicked: the same socket subscribes normally now.
  await subscribe(socket, 'private-ok.1');
  assert.deepEqual(errorFor(socket, 'private-ok.1'), [431]);
  assert.equal(app.to('private-ok.1').length, 1);
  const metrics = await (await fetch(`${h.url}/metrics`)).text();
  assert.match(metrics, /^herald_auth_headers_too_large_total 2$/m);
});

test('1,000 private subscribes from one socket reach the app at most burst + rate x elapsed times', async () => {
  const app = await startApp();
  // The subscribe bucket (subscribe_rate.test.mjs) off: this is the auth shield's own.
  const h = await herald(['--auth-endpoint', app.endpoint, '--auth-burst', '20', '--auth-rate', '5', '--subscribe-burst', '0']);
  const socket = await client(h);
  const start = Date.now();
  const acks = [];
  for (let i = 0; i < 1000; i++) acks.push(subscribe(socket, `private-ok.${i}`, undefined, 60000));
  await Promise.all(acks);
  const elapsed = (Date.now() - start) / 1000;
  const reached = app.requests.length;
  assert.ok(reached >= 20, `the burst passes: ${reached}`);
  assert.ok(reached <= 20 + 5 * elapsed + 1, `${reached} requests in ${elapsed} s`);
  // A page's dozen channels at once all pass.
  for (let i = 0; i < 12; i++) assert.deepEqual(errorFor(socket, `private-ok.${i}`), []);
  assert.equal(socket.errors.length, 1000 - reached);
  assert.ok(socket.errors.every(([, status]) => status === 429));
  const metrics = await (await fetch(`${h.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`^herald_auth_rate_limited_total ${1000 - reached}$`, 'm'));
});

test('a refused channel retried at once gets the refusal again without reaching the app', async () => {
  const app = await startApp();
  const h = await herald(['--auth-endpoint', app.endpoint, '--auth-refusal-cache-ms', '3000']);
  const socket = await client(h);
  await subscribe(socket, 'private-no.1');
  const refusedBy = Date.now();
  for (let i = 0; i < 5; i++) await subscribe(socket, 'private-no.1');
  assert.deepEqual(errorFor(socket, 'private-no.1'), [403, 403, 403, 403, 403, 403]);
  assert.equal(app.to('private-no.1').length, 1);
  // Another connection is asked about separately.
  const other = await client(h);
  await subscribe(other, 'private-no.1');
  assert.equal(app.to('private-no.1').length, 2);
  // Time is the subject here: once the refusal is older than 3 s the app is asked again.
  await sleep(Math.max(0, refusedBy + 3500 - Date.now()));
  await subscribe(socket, 'private-no.1');
  assert.equal(app.to('private-no.1').length, 3);
});

test('a slow app never has more than --auth-max-in-flight requests; the rest are refused with 503', async () => {
  const app = await startApp({ delayMs: 1000 });
  const h = await herald(['--auth-endpoint', app.endpoint, '--auth-max-in-flight', '2', '--auth-timeout-ms', '1500']);
  const sockets = await Promise.all([client(h), client(h), client(h)]);
  await Promise.all(sockets.flatMap((s, i) =>
    [0, 1, 2, 3].map((j) => subscribe(s, `private-ok.${i}-${j}`, undefined, 20000))));
  assert.equal(app.maxInFlight, 2);
  const statuses = sockets.flatMap((s) => s.errors.map(([, status]) => status));
  assert.ok(statuses.length >= 1 && statuses.every((s) => s === 503), `refusals: ${statuses}`);
  assert.equal(app.requests.length + statuses.length, 12);
});

// A WebSocket frame from the client (masked), as raw bytes.
function frame(text) {
  const payload = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i & 3]))]);
}

test('an Engine.IO session that never CONNECTs is closed in time, and the cap refuses new ones meanwhile', async () => {
  const h = await herald(['--socketio-connect-timeout-ms', '1500', '--socketio-max-unconnected', '1', '--ping-interval-ms', '400']);
  const started = Date.now();
  const { ws } = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
  assert.match(await ws.next(), /^0\{"sid"/);
  // The cap: polling and WebSocket handshakes are refused as engine.io's allowRequest does.
  const refused = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(refused.status, 403);
  assert.deepEqual(await refused.json(), { code: 4, message: 'Forbidden' });
  const refusedWs = await rawUpgrade(h.httpPort, '/socket.io/?EIO=4&transport=websocket');
  assert.equal(refusedWs.status, 400);
  assert.equal(refusedWs.body, 'Forbidden');
  // Heartbeats are answered, CONNECT never comes: closed at the connect timeout.
  for (;;) {
    const m = await ws.next(5000);
    if (m === null) break;
    if (m === '2') ws.send('3');
    assert.ok(Date.now() - started < 10000, 'still open after 10 s');
  }
  const lived = Date.now() - started;
  assert.ok(lived >= 1300, `closed after ${lived} ms`);
  // Its place is free again; a session that connects does not hold one.
  const again = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(again.status, 200);
  const sid = /"sid":"([^"]+)"/.exec(await again.text())[1];
  const url = `${h.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal(await (await fetch(url, { method: 'POST', body: '40' })).text(), 'ok');
  const third = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(third.status, 200);
  await third.text();
  const metrics = await (await fetch(`${h.url}/metrics`)).text();
  assert.match(metrics, /^herald_socketio_handshakes_refused_total 2$/m);
  // v3 sessions are connected from the start and never count.
  const v3 = await fetch(`${h.url}/socket.io/?EIO=3&transport=polling`);
  assert.equal(v3.status, 200);
});

test('a partial frame after the upgrade\'s 5 closes the session within the deadline and frees its rooms', async () => {
  const app = await startApp();
  const h = await herald(['--auth-endpoint', app.endpoint, '--ping-timeout-ms', '1500']);
  const observer = await client(h, { extraHeaders: { Cookie: 'laravel_session=2' } });
  const joined = [];
  const left = [];
  observer.on('presence:joining', (_c, m) => joined.push(m.user_id));
  observer.on('presence:leaving', (_c, m) => left.push(m.user_id));
  await subscribe(observer, 'presence-room');
  // The zombie: user 1 on polling, in the presence room.
  const cookie = { Cookie: 'laravel_session=1' };
  const hs = await (await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, { headers: cookie })).text();
  const sid = /"sid":"([^"]+)"/.exec(hs)[1];
  const url = `${h.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal(await (await fetch(url, { method: 'POST', body: '40', headers: cookie })).text(), 'ok');
  assert.match(await (await fetch(url, { headers: cookie })).text(), /^40\{"sid"/);
  const sub = '42["subscribe",{"channel":"presence-room"}]';
  assert.equal(await (await fetch(url, { method: 'POST', body: sub, headers: cookie })).text(), 'ok');
  await until(() => joined.includes(1), 10000, 'the zombie joining');
  const { ws } = await rawUpgrade(h.httpPort, `/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.send('2probe');
  assert.equal(await ws.next(), '3probe');
  // `5`, then the first three bytes of the next frame, and silence.
  const upgradedAt = Date.now();
  ws.sock.write(Buffer.concat([frame('5'), frame('42["x"]').subarray(0, 3)]));
  await ws.closedWithin(10000);
  await until(() => left.includes(1), 10000, 'presence:leaving of the zombie');
  const took = Date.now() - upgradedAt;
  assert.ok(took >= 1300, `closed after ${took} ms`);
  const gone = await fetch(url);
  assert.deepEqual(await gone.json(), { code: 1, message: 'Session ID unknown' });
});
