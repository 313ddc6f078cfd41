// Issue 10's "done when": one herald, exposed on 0.0.0.0 with a configured Pusher app, is
// attacked at the same time in each way issue 10 lists against its browser-facing port, while a normal Laravel Echo tab
// (socket.io connector, socket.io-client 4, from 127.0.0.1) on a public, a private and a
// presence channel and a pusher-js client on the configured app keep receiving a numbered
// stream published over RESP every 20 ms: every broadcast, in order, none missing; /healthz
// answers every probe within its deadline meanwhile. Each attacker comes from its own loopback
// address (127.0.0.2, …) so that --max-connections-per-ip applies to it and not to the normal
// clients, and each must see the refusal it should:
//
//   127.0.0.2  slow-loris: half request heads; past the per-IP cap 503 at once, the rest
//              closed at the header timeout
//   127.0.0.3  socket.io subscribers of the public channel that stop reading: dropped at the
//              outbox hard limit (the write timeout is far away), the normal client loses nothing
//   127.0.0.4  30,000 auth.headers (431, the app never asked); 1,000 private subscribes from one
//              socket (the app sees at most burst + rate x elapsed of them, the rest get 429)
//   127.0.0.5  a ~1 MB channel name and 300 names of 64 KiB (subscription_error 400)
//   127.0.0.6  oversized whispers flooded into the normal client's presence channel
//              (client_event_error; the normal client gets none, proven by a marker broadcast)
//   127.0.0.7  Engine.IO handshakes that never CONNECT: past --socketio-max-unconnected 403
//              (polling) and 400 (WebSocket); expired at the connect timeout, room again
//   127.0.0.8  pusher:  the built-in `herald-key` on the exposed port: 4001, and the HTTP API
//              signed with the well-known secret: 404
// At the end herald is still running, the /metrics counters of the refusals moved by exactly
// what the attackers saw, and the normal clients' streams are complete.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { startHerald, sleep } from './lib/herald.mjs';
import { DEADLINE_MS, within, until, once, inbox, ackSubscribes, acked, subscribe } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { pusherClient, connected, sdk, APP as DEV_APP } from './pusher_fixtures.mjs';

// The limits under attack, small so that each is reached within seconds.
const PER_IP = 16;
const HEADER_TIMEOUT_MS = 5000;
// Above the largest refusal an attacker gets back (subscription_error names its ~1 MB channel).
const OUTBOX_HARD = 2 * 1024 * 1024;
const AUTH_BURST = 20;
const AUTH_RATE = 5;
const MAX_UNCONNECTED = 8;
const CONNECT_TIMEOUT_MS = 3000;
const MAX_MESSAGE = 10240; // --max-message-size's default, Pusher's 10 KB
const MAX_HTTP_BUFFER = 1000000; // --max-http-buffer-size's default
// /healthz must answer each probe within this, whatever the attackers do.
const HEALTHZ_DEADLINE_MS = 2000;
// The stream: a public broadcast padded so that a subscriber that stops reading fills its
// kernel buffers and herald's outbox within seconds, and a small private one, every 20 ms.
const TICK_MS = 20;
const PAD = 'x'.repeat(32 * 1024);

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
});

// One HTTP request on its own connection from `localAddress` (no pooled keep-alive socket that
// the header timeout could close under a request).
function get(port, pathAndQuery, { localAddress = '127.0.0.1', ms = DEADLINE_MS } = {}) {
  return within(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathAndQuery, localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  }), `GET ${pathAndQuery} from ${localAddress}`, ms);
}

async function metrics(h) {
  const { body } = await get(h.httpPort, '/metrics');
  return Object.fromEntries([...body.matchAll(/^(herald_\w+) (\d+)$/gm)].map(([, k, v]) => [k, Number(v)]));
}

// PUBLISH over one raw RESP connection, pipelined, as Laravel's redis broadcaster sends them.
function respPublisher(port) {
  const sock = net.connect(port, '127.0.0.1');
  const replies = inbox();
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      replies.add(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
  });
  cleanup.push(async () => sock.destroy());
  return {
    replies,
    publish(channel, event, data) {
      const args = ['PUBLISH', `laravel_database_${channel}`, JSON.stringify({ event, data, socket: null })];
      sock.write(`*3\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    },
  };
}

// A socket.io-client 4 socket (as Echo drives it, websocket transport) from `localAddress`.
async function attacker(h, localAddress, opts = {}) {
  const socket = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false, localAddress, ...opts });
  cleanup.push(async () => socket.disconnect());
  socket.refusals = [];
  socket.on('subscription_error', (channel, status) => socket.refusals.push([channel, status]));
  if (!socket.connected) await once(socket, 'connect');
  return socket;
}

// Attackers that get ready one by one and then start together: `arrive()` resolves once
// `open()` is called; `allIn` once all `n` have arrived.
function startingGate(n) {
  let arrived = 0, allIn, open;
  const go = new Promise((r) => { open = r; });
  return {
    allIn: new Promise((r) => { allIn = r; }),
    open,
    arrive() {
      arrived += 1;
      if (arrived === n) allIn();
      return go;
    },
  };
}

// --- The attacks. Each resolves with what it saw, having asserted the refusals. ----------------

// Half a request head on socket after socket from one address: PER_IP are held (and closed at
// the header timeout), every further one is answered 503 at once.
async function slowLoris(h) {
  const open = (i) => new Promise((resolve, reject) => {
    // Taken before connecting: herald's timer cannot start earlier, whatever else this process
    // is busy with before it runs the connect callback.
    const openedAt = Date.now();
    const sock = net.connect({ host: '127.0.0.1', port: h.httpPort, localAddress: '127.0.0.2' });
    const s = { sock, data: '', openedAt, closedAt: 0 };
    sock.setEncoding('latin1');
    sock.on('data', (d) => { s.data += d; });
    sock.on('error', () => {});
    sock.on('close', () => { s.closedAt = Date.now(); });
    sock.on('connect', () => {
      sock.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Loris-${i}: `);
      resolve(s);
    });
    sock.once('error', reject);
    cleanup.push(async () => sock.destroy());
  });
  const held = [];
  for (let i = 0; i < PER_IP; i++) held.push(await open(i));
  const extra = [];
  for (let i = 0; i < 8; i++) extra.push(await open(PER_IP + i));
  // Past the cap: a 503 at once, and the connection closed.
  for (const s of extra) {
    await until(() => s.closedAt, 'a loris past the per-IP cap to be refused and closed');
    assert.match(s.data, /^HTTP\/1\.1 503 Service Unavailable\r\n/, 'the loris past the cap is answered 503');
    assert.match(s.data, /\r\nconnection: close\r\n/i);
  }
  // Those held had been admitted before (the refused came after them): nothing said to them
  // yet; herald closes each at the header timeout, never answering it 503.
  for (const s of held) assert.equal(s.data, '', 'a held loris is told nothing before its header timeout');
  for (const s of held) {
    await until(() => s.closedAt, 'herald to close a held loris at the header timeout', HEADER_TIMEOUT_MS + DEADLINE_MS);
    const lived = s.closedAt - s.openedAt;
    assert.ok(lived >= HEADER_TIMEOUT_MS - 100, `a held loris closed after ${lived} ms, before the header timeout`);
    assert.doesNotMatch(s.data, / 503 /);
  }
  return { refused: extra.length, timedOut: held.length };
}

// Subscribers of the public channel whose sockets stop reading: herald drops them at the outbox
// hard limit while the stream runs. The drop is seen in /metrics (a paused socket reads nothing,
// not even its close); once resumed each reads what the kernel held and then its disconnect.
async function slowReaders(h, gate, before) {
  const n = 4;
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const s = await attacker(h, '127.0.0.3');
    await subscribe(s, 'hostile');
    sockets.push(s);
  }
  await gate.arrive();
  for (const s of sockets) {
    const { transport } = s.io.engine;
    assert.equal(transport.name, 'websocket');
    transport.ws._socket.pause();
  }
  await until(async () => (await metrics(h)).herald_slow_consumers_dropped_total >= before + n,
    `herald to drop the ${n} subscribers that stopped reading`, 30000);
  const gone = sockets.map((s) => once(s, 'disconnect'));
  for (const s of sockets) s.io.engine.transport.ws._socket.resume();
  for (const [reason] of await Promise.all(gone)) assert.match(reason, /^transport (close|error)$/);
  return { dropped: n };
}

// 30,000 auth.headers on one subscribe: 431, and the app is never asked.
async function hugeAuthHeaders(h, gate, app) {
  const many = Object.fromEntries(Array.from({ length: 30000 }, (_, i) => [`X-H${i}`, 'v']));
  many.Authorization = 'Bearer 3';
  const s = await attacker(h, '127.0.0.4');
  await gate.arrive();
  await subscribe(s, 'private-chat.big', { auth: { headers: many } });
  assert.deepEqual(s.refusals, [['private-chat.big', 431]]);
  assert.equal(app.requests.filter((r) => r.form.channel_name === 'private-chat.big').length, 0);
  return { tooLarge: 1 };
}

// 1,000 private subscribes from one socket, all at once: the app sees at most the auth burst and
// its refill; every other subscribe is refused with 429 without reaching it (by the auth
// shield's bucket, or by the connection's subscribe bucket before it).
async function authFlood(h, gate, app) {
  const s = await attacker(h, '127.0.0.4');
  await gate.arrive();
  const start = Date.now();
  const acks = [];
  for (let i = 0; i < 1000; i++) {
    acks.push(subscribe(s, `private-chat.flood${i}`, { auth: { headers: { Authorization: 'Bearer 3' } } }, 60000));
  }
  await Promise.all(acks);
  const elapsed = (Date.now() - start) / 1000;
  const reached = app.requests.filter((r) => /^private-chat\.flood\d+$/.test(r.form.channel_name)).length;
  assert.ok(reached >= AUTH_BURST, `the burst passes: ${reached}`);
  assert.ok(reached <= AUTH_BURST + AUTH_RATE * elapsed + 1,
    `the app was asked ${reached} times in ${elapsed} s (burst ${AUTH_BURST}, rate ${AUTH_RATE}/s)`);
  assert.equal(s.refusals.length, 1000 - reached);
  assert.ok(s.refusals.every(([, status]) => status === 429), 'every refusal is 429');
  return { rateLimited: 1000 - reached };
}

// Channel names far over the 200-byte rule: one as large as an Engine.IO message may be, then 300
// of 64 KiB; each is refused with subscription_error 400 (which names the channel: one at a time,
// so that the echoes of the names do not pile up in the attacker's outbox).
async function hugeChannelNames(h, gate) {
  const s = await attacker(h, '127.0.0.5');
  await gate.arrive();
  const envelope = '421234["subscribe",{"channel":""}]'.length; // with an ack id
  const names = [`a${'m'.repeat(MAX_HTTP_BUFFER - envelope - 1)}`];
  for (let i = 0; i < 300; i++) names.push(`n${i}.${'k'.repeat(64 * 1024)}`);
  for (const [i, name] of names.entries()) {
    await within(new Promise((resolve) => s.emit('subscribe', { channel: name }, resolve)),
      `herald's ack of subscribe number ${i} (${name.length} bytes)`);
    const [channel, status] = s.refusals[i] || [];
    assert.ok(channel === name && status === 400, `a ${name.length}-byte name refused with 400, got ${status}`);
  }
  assert.equal(s.refusals.length, names.length);
  assert.ok(s.connected, 'the socket that sent them is still connected');
  return {};
}

// Whispers over --max-message-size, flooded into the normal client's presence channel: each is
// refused to the sender. Ordered marker: once herald has acked a later packet of the sender, every
// whisper before it was relayed or refused, so a broadcast published then reaches the normal client
// after any relayed whisper. Then a small whisper of the sender does reach the normal client.
async function whisperFlood(h, gate, whispers, publishMarker) {
  const s = await attacker(h, '127.0.0.6');
  const errors = inbox();
  s.on('client_event_error', (channel, detail) => errors.add([channel, detail]));
  const channel = 'presence-room.hostile';
  const auth = { headers: { Authorization: 'Bearer 2' } };
  await subscribe(s, channel, { auth });
  assert.deepEqual(s.refusals, []);
  await gate.arrive();
  const big = 'w'.repeat(MAX_MESSAGE + 1);
  const flood = 50;
  for (let i = 0; i < flood; i++) s.emit('client event', { channel, event: 'client-flood', data: { i, big } });
  await subscribe(s, channel, { auth }); // already joined: acked at once, after the whispers
  publishMarker();
  const heard = await whispers.before((w) => w.kind === 'marker', 'the marker broadcast at the normal client');
  assert.deepEqual(heard, [], 'the normal client received none of the oversized whispers');
  const refused = await errors.count(flood, `${flood} client_event_error`);
  assert.equal(refused.length, flood);
  assert.deepEqual(refused[0], [channel, { event: 'client-flood', message: 'client event data is too large' }]);
  assert.ok(refused.every(([c, d]) => c === channel && d.message === 'client event data is too large'),
    'every oversized whisper refused as too large');
  s.emit('client event', { channel, event: 'client-small', data: { ok: true } });
  await whispers.waitFor((w) => w.kind === 'small', 'a small whisper of the same sender at the normal client');
  assert.deepEqual(whispers.items.map((w) => w.kind), ['marker', 'small']);
  return {};
}

// Engine.IO handshakes that never CONNECT: MAX_UNCONNECTED are opened, then refused as
// socket.io's allowRequest refuses (403 polling, 400 WebSocket); they expire at the connect
// timeout and a handshake is accepted again.
async function unconnected(h) {
  const handshake = () => get(h.httpPort, '/socket.io/?EIO=4&transport=polling', { localAddress: '127.0.0.7' });
  const openedAt = Date.now();
  for (let i = 0; i < MAX_UNCONNECTED; i++) {
    const res = await handshake();
    assert.equal(res.status, 200, `unconnected handshake ${i}`);
    assert.match(res.body, /^0\{"sid"/);
  }
  const refused = await handshake();
  assert.equal(refused.status, 403);
  assert.deepEqual(JSON.parse(refused.body), { code: 4, message: 'Forbidden' });
  const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/socket.io/?EIO=4&transport=websocket`, { localAddress: '127.0.0.7' });
  cleanup.push(async () => ws.terminate());
  ws.on('error', () => {});
  const [, res] = await once(ws, 'unexpected-response');
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => { body += c; });
  await once(res, 'end');
  assert.equal(res.statusCode, 400);
  assert.equal(body, 'Forbidden');
  // Time is the subject here: past the connect timeout the sessions are gone and a handshake
  // is accepted again (each early attempt is one more refusal, counted).
  await sleep(Math.max(0, openedAt + CONNECT_TIMEOUT_MS - Date.now()));
  let refusedLate = 0;
  await until(async () => {
    const again = await handshake();
    if (again.status === 200) return true;
    refusedLate += 1;
    await sleep(200);
    return false;
  }, 'a handshake accepted once the unconnected sessions expired');
  return { handshakesRefused: 2 + refusedLate };
}

// The built-in development app on an exposed port: pusher-js's key `herald-key` is refused as
// Pusher refuses an unknown key, and the HTTP API signed with its secret answers 404.
async function wellKnownSecret(h) {
  const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/app/${DEV_APP.key}?protocol=7&client=js&version=8.6.0`,
    { localAddress: '127.0.0.8' });
  cleanup.push(async () => ws.terminate());
  ws.on('error', () => {});
  const messages = [];
  ws.on('message', (m) => messages.push(m.toString()));
  const closed = new Promise((resolve) => ws.on('close', resolve));
  await until(() => messages.length, `herald's first message to a connection with ${DEV_APP.key}`);
  assert.equal(messages[0], '{"event":"pusher:error","data":"{\\"code\\":4001,\\"message\\":\\"App key not in this cluster\\"}"}');
  assert.equal(await within(closed, `the close of the connection with ${DEV_APP.key}`), 4001);
  assert.equal(messages.length, 1);
  await assert.rejects(sdk(h, DEV_APP).trigger('hostile', 'N', { n: -1 }), (e) => e.status === 404);
  return {};
}

// --- The run. ------------------------------------------------------------------------------------

test('under every attack at once, a normal Echo tab and a pusher-js client get every broadcast, in order', async (t) => {
  const app = await startAuthApp();
  cleanup.push(() => app.close());
  // A configured Pusher app in the file; the built-in one is served only on loopback.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-hostile-'));
  cleanup.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const shop = { appId: 'shop', key: 'shop-key', secret: crypto.randomBytes(16).toString('hex') };
  fs.writeFileSync(path.join(dir, 'herald.toml'), `[[apps]]\nid = "${shop.appId}"\nkey = "${shop.key}"\nsecret = "${shop.secret}"\n`);
  const h = await startHerald([
    '--http-bind', '0.0.0.0:0', '--config', path.join(dir, 'herald.toml'),
    '--auth-endpoint', app.endpoint,
    '--max-connections-per-ip', String(PER_IP),
    '--http-header-timeout-ms', String(HEADER_TIMEOUT_MS),
    '--outbox-hard-limit', String(OUTBOX_HARD), '--outbox-soft-limit', '0',
    // Far away: a slow reader must be dropped by the outbox limit, not by this.
    '--write-timeout-ms', '120000',
    '--auth-burst', String(AUTH_BURST), '--auth-rate', String(AUTH_RATE),
    '--socketio-max-unconnected', String(MAX_UNCONNECTED),
    '--socketio-connect-timeout-ms', String(CONNECT_TIMEOUT_MS),
  ]);
  cleanup.push(() => h.stop());
  const start = await metrics(h);

  // The normal clients, from 127.0.0.1.
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false, auth: { headers: { Authorization: 'Bearer 1' } },
  });
  cleanup.push(async () => echo.disconnect());
  const socket = ackSubscribes(echo.connector.socket);
  if (!socket.connected) await once(socket, 'connect');
  const echoPublic = inbox(), echoPrivate = inbox(), whispers = inbox(), echoErrors = [];
  socket.on('subscription_error', (...args) => echoErrors.push(args));
  echo.channel('hostile').listen('.N', (e) => echoPublic.add(e.n));
  echo.private('chat.hostile').listen('.N', (e) => echoPrivate.add(e.n));
  echo.join('room.hostile')
    .listenForWhisper('flood', (e) => whispers.add({ kind: 'flood', i: e.i }))
    .listenForWhisper('small', () => whispers.add({ kind: 'small' }))
    .listen('.Marker', () => whispers.add({ kind: 'marker' }));
  await Promise.all(['hostile', 'private-chat.hostile', 'presence-room.hostile'].map((c) => acked(socket, c)));
  assert.deepEqual(echoErrors, []);

  const pusher = pusherClient(h, { app: shop });
  cleanup.push(async () => pusher.disconnect());
  await connected(pusher);
  const pusherPublic = inbox(), pusherPrivate = inbox();
  const subscribed = (channel) => within(new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', reject);
  }), `pusher-js subscribed to ${channel.name}`);
  const pubChannel = pusher.subscribe('hostile');
  const privChannel = pusher.subscribe('private-chat.hostile');
  pubChannel.bind('N', (d) => pusherPublic.add(d.n));
  privChannel.bind('N', (d) => pusherPrivate.add(d.n));
  await Promise.all([subscribed(pubChannel), subscribed(privChannel)]);

  // The stream, and /healthz probed all along.
  const resp = respPublisher(h.redisPort);
  let sent = 0;
  const ticker = setInterval(() => {
    resp.publish('hostile', 'N', { n: sent, pad: PAD });
    resp.publish('private-chat.hostile', 'N', { n: sent });
    sent += 1;
  }, TICK_MS);
  let probing = true;
  const probes = [];
  const prober = (async () => {
    while (probing) {
      const asked = Date.now();
      const res = await get(h.httpPort, '/healthz', { ms: HEALTHZ_DEADLINE_MS })
        .catch((e) => ({ status: e.message }));
      probes.push({ status: res.status, ms: Date.now() - asked });
      await sleep(100);
    }
  })();

  // Every attack at once. The socket.io attackers connect (and join) first, then all start
  // together: the Engine.IO attack fills the unconnected-session cap, which refuses every new
  // handshake until its sessions expire.
  const socketioAttacks = {
    slowReaders: (gate) => slowReaders(h, gate, start.herald_slow_consumers_dropped_total),
    hugeAuthHeaders: (gate) => hugeAuthHeaders(h, gate, app),
    authFlood: (gate) => authFlood(h, gate, app),
    hugeChannelNames: (gate) => hugeChannelNames(h, gate),
    whisperFlood: (gate) => whisperFlood(h, gate, whispers, () => resp.publish('presence-room.hostile', 'Marker', {})),
  };
  const gate = startingGate(Object.keys(socketioAttacks).length);
  let results;
  let begun;
  const took = {};
  try {
    const timed = async (name, run) => {
      const result = await run();
      took[name] = Date.now() - begun;
      return [name, result];
    };
    const socketio = Object.entries(socketioAttacks).map(([name, run]) => timed(name, () => run(gate)));
    await Promise.race([within(gate.allIn, 'the socket.io attackers to be connected'), Promise.all(socketio)]);
    begun = Date.now();
    gate.open();
    const others = Object.entries({ slowLoris, unconnected, wellKnownSecret }).map(([name, run]) => timed(name, () => run(h)));
    results = Object.fromEntries(await Promise.all([...socketio, ...others]));
  } finally {
    clearInterval(ticker);
    probing = false;
    await prober;
  }

  // The stream is complete and in order at both normal clients, and RESP answered every PUBLISH.
  const all = [...Array(sent).keys()];
  const complete = async (box, what) => assert.deepEqual(await box.count(sent, `${sent} broadcasts at ${what}`), all, what);
  await complete(echoPublic, 'the Echo tab, public');
  await complete(echoPrivate, 'the Echo tab, private');
  await complete(pusherPublic, 'pusher-js, public');
  await complete(pusherPrivate, 'pusher-js, private');
  await resp.replies.count(2 * sent + 1, 'a reply to every PUBLISH (the stream and the marker)');
  assert.ok(socket.connected, 'the Echo tab is still connected');
  assert.equal(pusher.connection.state, 'connected');
  assert.ok(sent >= 100, `the stream ran (${sent} ticks)`);

  // /healthz answered every probe in time.
  const late = probes.filter((p) => p.status !== 200 || p.ms >= HEALTHZ_DEADLINE_MS);
  assert.deepEqual(late, [], `/healthz probes late or failed (of ${probes.length})`);
  assert.ok(probes.length >= 20, `/healthz was probed ${probes.length} times`);

  t.diagnostic(`${sent} ticks; /healthz: ${probes.length} probes, slowest ${Math.max(...probes.map((p) => p.ms))} ms; `
    + `attacks done after (ms): ${JSON.stringify(took)}; results: ${JSON.stringify(results)}`);

  // herald is still running and counted every refusal.
  assert.equal(h.proc.exitCode, null, 'herald is still running');
  const end = await metrics(h);
  const moved = (name) => end[name] - start[name];
  assert.equal(moved('herald_http_connections_refused_total'), results.slowLoris.refused);
  assert.ok(moved('herald_http_timeouts_total') >= results.slowLoris.timedOut, 'the held lorises counted as timeouts');
  assert.equal(moved('herald_slow_consumers_dropped_total'), results.slowReaders.dropped, 'only the slow readers dropped');
  assert.equal(moved('herald_auth_headers_too_large_total'), results.hugeAuthHeaders.tooLarge);
  assert.equal(moved('herald_auth_rate_limited_total') + moved('herald_subscribe_rate_limited_total'),
    results.authFlood.rateLimited);
  assert.equal(moved('herald_socketio_handshakes_refused_total'), results.unconnected.handshakesRefused);
});
