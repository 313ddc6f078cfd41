// Laravel Echo 2.5 with `broadcaster: 'socket.io'` against herald: public, private and presence
// channels authorized by a fixture that answers like Laravel 11's /broadcasting/auth, whispers,
// toOthers(), and the real Laravel redis broadcaster (php) end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startHerald, redisCli, laravelPayload, once, sleep } from './lib/herald.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { privateCa } from './lib/tls.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let h, app;
const open = [];
before(async () => {
  app = await startAuthApp();
  h = await startHerald(['--auth-endpoint', app.endpoint, '--client-event-rate', '5']);
});
after(async () => {
  for (const e of open) e.disconnect();
  await h.stop();
  await app.close();
});

// An Echo "tab" signed in as `user` (a bearer token, as an SPA sends it, or the session cookie).
async function tab({ user, cookie, client = io, transports = ['websocket'] } = {}) {
  const opts = { broadcaster: 'socket.io', host: h.url, client, transports, forceNew: true, reconnection: false };
  if (user) opts.auth = { headers: { Authorization: `Bearer ${user}` } };
  if (cookie) opts.extraHeaders = { Cookie: cookie };
  const echo = new Echo(opts);
  open.push(echo);
  if (!echo.connector.socket.connected) await once(echo.connector.socket, 'connect');
  return echo;
}

// Echo's subscribe has no acknowledgement: give herald (and the auth round trip) a moment.
const settle = () => sleep(250);

function collect(channel, method) {
  const got = [];
  channel[method]((x) => got.push(x));
  return got;
}

async function until(pred, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

const publish = (channel, event, data, socket = null) =>
  redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socket));

test('public channel: listen() receives a broadcast', async () => {
  const echo = await tab();
  const got = [];
  echo.channel('orders.1').listen('.OrderShipped', (e) => got.push(e));
  await settle();
  await publish('orders.1', 'OrderShipped', { id: 1 });
  await until(() => got.length === 1);
  assert.deepEqual(got, [{ id: 1, socket: null }]);
});

test('private channel allowed by the app: whispers reach the other member, not the sender', async () => {
  const before = app.requests.length;
  const a = await tab({ user: 1 });
  const b = await tab({ cookie: 'laravel_session=2; other=x' });
  const heardA = [], heardB = [];
  a.private('chat').listenForWhisper('typing', (e) => heardA.push(e));
  b.private('chat').listenForWhisper('typing', (e) => heardB.push(e));
  await settle();
  a.private('chat').whisper('typing', { name: 'Ann' });
  await until(() => heardB.length === 1);
  await sleep(100);
  assert.deepEqual(heardB, [{ name: 'Ann' }]);
  assert.deepEqual(heardA, []);

  const asked = app.requests.slice(before);
  assert.equal(asked.length, 2);
  const fromA = asked.find((r) => r.form.socket_id === a.socketId());
  assert.deepEqual(fromA.form, { channel_name: 'private-chat', socket_id: a.socketId() });
  assert.equal(fromA.headers['x-requested-with'], 'XMLHttpRequest');
  assert.equal(fromA.headers.authorization, 'Bearer 1');
  assert.match(fromA.headers['content-type'], /^application\/x-www-form-urlencoded/);
  const fromB = asked.find((r) => r.form.socket_id === b.socketId());
  assert.equal(fromB.headers.cookie, 'laravel_session=2; other=x', 'the handshake cookie is forwarded');
});

test('private channel refused by the app: subscription_error, no messages, no whispers', async () => {
  const guest = await tab();
  const bob = await tab({ user: 2 });
  const errors = [];
  guest.connector.socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
  bob.connector.socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
  const got = [];
  guest.private('orders.1').listen('.OrderShipped', (e) => got.push(e));
  bob.private('orders.1').listen('.OrderShipped', (e) => got.push(e));
  await until(() => errors.length === 2);
  assert.deepEqual(errors, [['private-orders.1', 403], ['private-orders.1', 403]]);
  await publish('private-orders.1', 'OrderShipped', { id: 1 });
  const whisperErrors = [];
  bob.connector.socket.on('client_event_error', (channel, e) => whisperErrors.push([channel, e.message]));
  bob.private('orders.1').whisper('typing', {});
  await until(() => whisperErrors.length === 1);
  assert.deepEqual(whisperErrors, [['private-orders.1', 'not subscribed to this channel']]);
  assert.deepEqual(got, []);
});

test('private channel: the owner receives, toOthers() skips the sender', async () => {
  const ann1 = await tab({ user: 1 });
  const ann2 = await tab({ user: 1 });
  const got1 = [], got2 = [];
  ann1.private('orders.1').listen('.OrderShipped', (e) => got1.push(e));
  ann2.private('orders.1').listen('.OrderShipped', (e) => got2.push(e));
  await settle();
  await publish('private-orders.1', 'OrderShipped', { id: 1 }, ann1.socketId());
  await until(() => got2.length === 1);
  await sleep(150);
  assert.deepEqual(got1, [], 'the socket named by X-Socket-ID is left out');
  assert.deepEqual(got2, [{ id: 1, socket: ann1.socketId() }]);
});

test('presence: here/joining/leaving count a user with two tabs once', async () => {
  const annA = await tab({ user: 1 });
  const hereA = collect(annA.join('room'), 'here');
  const joiningA = collect(annA.join('room'), 'joining');
  const leavingA = collect(annA.join('room'), 'leaving');
  await until(() => hereA.length === 1);
  assert.deepEqual(hereA[0], [{ id: 1, name: 'Ann' }]);

  const bob = await tab({ user: 2 });
  const hereBob = collect(bob.join('room'), 'here');
  const joiningBob = collect(bob.join('room'), 'joining');
  const leavingBob = collect(bob.join('room'), 'leaving');
  await until(() => hereBob.length === 1 && joiningA.length === 1);
  assert.deepEqual(hereBob[0].sort((x, y) => x.id - y.id), [{ id: 1, name: 'Ann' }, { id: 2, name: 'Bob' }]);
  assert.deepEqual(joiningA, [{ id: 2, name: 'Bob' }]);

  // Ann opens a second tab: she is already here, so nobody hears of her joining.
  const annB = await tab({ user: 1 });
  const hereB = collect(annB.join('room'), 'here');
  await until(() => hereB.length === 1);
  assert.equal(hereB[0].length, 2);
  await sleep(150);
  assert.deepEqual(joiningBob, []);

  // One of Ann's tabs leaves: she is still here.
  annA.leave('room');
  await sleep(200);
  assert.deepEqual(leavingBob, []);
  // Her last tab disconnects: now she leaves.
  annB.disconnect();
  await until(() => leavingBob.length === 1);
  assert.deepEqual(leavingBob, [{ id: 1, name: 'Ann' }]);
  assert.deepEqual(leavingA, []);

  // Whispers on presence channels go to the other members.
  const heard = [];
  const cy = await tab({ user: 3 });
  cy.join('room').listenForWhisper('wave', (e) => heard.push(e));
  await settle();
  bob.join('room').whisper('wave', { from: 'Bob' });
  await until(() => heard.length === 1);
  assert.deepEqual(heard, [{ from: 'Bob' }]);
});

test('client events are rate limited per connection', async () => {
  const a = await tab({ user: 1 });
  const b = await tab({ user: 2 });
  const heard = [], errors = [];
  b.private('chat').listenForWhisper('burst', (e) => heard.push(e.n));
  a.connector.socket.on('client_event_error', (channel, e) => errors.push([channel, e.event, e.message]));
  a.private('chat');
  await settle();
  for (let n = 0; n < 8; n++) a.private('chat').whisper('burst', { n });
  await until(() => errors.length === 3);
  await sleep(100);
  assert.deepEqual(heard, [0, 1, 2, 3, 4], '--client-event-rate 5: five per second pass');
  assert.deepEqual(errors[0], ['private-chat', 'client-burst', 'client event rate limit exceeded']);
  // Only client-* names, only on private/presence channels.
  a.connector.socket.emit('client event', { channel: 'private-chat', event: 'App\\Events\\Fake', data: {} });
  a.connector.socket.emit('client event', { channel: 'orders.1', event: 'client-x', data: {} });
  await until(() => errors.length === 5);
  assert.equal(errors[3][2], 'client event names start with client-');
  assert.equal(errors[4][2], 'client events are allowed on private and presence channels only');
});

test('Echo over socket.io-client 2 (EIO=3, what laravel-echo-server served) on both transports', async () => {
  for (const transports of [['websocket'], ['polling']]) {
    const a = await tab({ user: 1, client: ioV2, transports });
    const b = await tab({ user: 2, client: ioV2, transports });
    const here = collect(b.join('room'), 'here');
    const heard = [];
    b.private('chat').listenForWhisper('hi', (e) => heard.push(e));
    a.private('chat');
    await settle();
    a.private('chat').whisper('hi', { t: transports[0] });
    await until(() => heard.length === 1 && here.length === 1);
    assert.deepEqual(heard, [{ t: transports[0] }]);
    a.disconnect();
    b.disconnect();
  }
});

const broadcast = (client, ...args) => new Promise((resolve, reject) => execFile('php', [
  path.join(root, 'tests/php/broadcast.php'), '--port', String(h.redisPort), '--client', client, ...args,
], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve())));

for (const client of ['phpredis', 'predis']) {
  test(`end to end: Laravel's RedisBroadcaster (${client}) → herald → Echo, toOthers() too`, async () => {
    const echo = await tab({ user: 1 });
    const other = await tab({ user: 1 });
    const pub = [], priv = [], otherPriv = [];
    echo.channel('orders.1').listen('OrderShipped', (e) => pub.push(e));
    echo.private('orders.1').listen('OrderShipped', (e) => priv.push(e));
    other.private('orders.1').listen('OrderShipped', (e) => otherPriv.push(e));
    await settle();
    await broadcast(client, '--channel', 'orders.1', '--channel', 'private-orders.1',
      '--event', 'App\\Events\\OrderShipped', '--data', '{"id":7,"total":"9.50"}');
    await until(() => pub.length === 1 && priv.length === 1 && otherPriv.length === 1);
    assert.deepEqual(pub, [{ id: 7, total: '9.50' }]);
    assert.deepEqual(priv, pub);
    // X-Socket-ID → Broadcast::toOthers() → "socket" in the envelope: that tab is skipped.
    await broadcast(client, '--channel', 'private-orders.1', '--event', 'App\\Events\\OrderShipped',
      '--data', '{"id":8}', '--socket', echo.socketId());
    await until(() => otherPriv.length === 2);
    await sleep(150);
    assert.equal(priv.length, 1);
    assert.deepEqual(otherPriv[1], { id: 8, socket: echo.socketId() });
  });
}

test('a slow auth endpoint is bounded by --auth-timeout-ms; no endpoint refuses private channels', async () => {
  const slowApp = await startAuthApp({ delayMs: 1500 });
  const slow = await startHerald(['--auth-endpoint', slowApp.endpoint, '--auth-timeout-ms', '200']);
  const none = await startHerald([]);
  try {
    for (const [server, status] of [[slow, 504], [none, 500]]) {
      const echo = new Echo({ broadcaster: 'socket.io', host: server.url, client: io, transports: ['websocket'], forceNew: true, reconnection: false, auth: { headers: { Authorization: 'Bearer 1' } } });
      const socket = echo.connector.socket;
      const started = Date.now();
      const err = once(socket, 'subscription_error', 3000);
      echo.private('chat');
      assert.deepEqual(await err, ['private-chat', status]);
      assert.ok(Date.now() - started < 1000, 'answered before the app would have');
      echo.disconnect();
    }
  } finally {
    await slow.stop();
    await none.stop();
    await slowApp.close();
  }
});

test('leaving a private channel while the app is still authorizing it joins nothing', async () => {
  const slowApp = await startAuthApp({ delayMs: 400 });
  const slow = await startHerald(['--auth-endpoint', slowApp.endpoint]);
  try {
    const echo = new Echo({ broadcaster: 'socket.io', host: slow.url, client: io, transports: ['websocket'], forceNew: true, reconnection: false, auth: { headers: { Authorization: 'Bearer 1' } } });
    await once(echo.connector.socket, 'connect');
    const got = [];
    echo.private('chat').listen('.E', (e) => got.push(e));
    await sleep(100);
    assert.equal(slowApp.requests.length, 1, 'the app is being asked');
    echo.leave('chat');
    await sleep(700);
    const receivers = await redisCli(slow.redisPort, 'PUBLISH', 'laravel_database_private-chat', laravelPayload('E', { n: 1 }));
    assert.equal(receivers, '0', 'the late "allowed" answer joined nothing');
    await sleep(100);
    assert.deepEqual(got, []);
    echo.disconnect();
  } finally {
    await slow.stop();
    await slowApp.close();
  }
});

test('unsubscribe stops delivery; disconnect leaves every channel', async () => {
  const echo = await tab();
  const got = [];
  echo.channel('orders.5').listen('.E', (e) => got.push(e));
  await settle();
  assert.equal(await publish('orders.5', 'E', { n: 1 }), '1');
  await until(() => got.length === 1);
  echo.leaveChannel('orders.5');
  await settle();
  assert.equal(await publish('orders.5', 'E', { n: 2 }), '0');
  const other = await tab();
  other.channel('orders.6');
  await settle();
  assert.equal(await publish('orders.6', 'E', {}), '1');
  other.disconnect();
  await settle();
  assert.equal(await publish('orders.6', 'E', {}), '0');
});

test('a redirect from the auth endpoint refuses the channel; herald never follows it', async () => {
  const sso = await startHerald(['--auth-endpoint', app.endpoint.replace('/broadcasting/auth', '/sso/broadcasting/auth')]);
  try {
    const echo = new Echo({ broadcaster: 'socket.io', host: sso.url, client: io, transports: ['websocket'], forceNew: true, reconnection: false });
    await once(echo.connector.socket, 'connect');
    const err = once(echo.connector.socket, 'subscription_error');
    echo.private('chat');
    assert.deepEqual(await err, ['private-chat', 302]);
    assert.equal(app.requests.some((r) => r.url === '/login'), false);
    echo.disconnect();
  } finally {
    await sso.stop();
  }
});

test('an HTTPS auth endpoint with a private CA (--auth-ca-file)', async () => {
  const { dir, caFile, tls } = privateCa();
  const tlsApp = await startAuthApp({ tls });
  const trusting = await startHerald(['--auth-endpoint', tlsApp.endpoint, '--auth-ca-file', caFile]);
  const untrusting = await startHerald(['--auth-endpoint', tlsApp.endpoint]);
  try {
    const connect = (server) => new Echo({ broadcaster: 'socket.io', host: server.url, client: io, transports: ['websocket'], forceNew: true, reconnection: false, auth: { headers: { Authorization: 'Bearer 2' } } });
    const ok = connect(trusting);
    const here = await new Promise((resolve) => ok.join('room').here(resolve));
    assert.deepEqual(here, [{ id: 2, name: 'Bob' }]);
    ok.disconnect();
    const refused = connect(untrusting);
    const err = once(refused.connector.socket, 'subscription_error');
    refused.join('room');
    assert.deepEqual(await err, ['presence-room', 502], 'a certificate nobody vouches for is not trusted');
    refused.disconnect();
  } finally {
    await trusting.stop();
    await untrusting.stop();
    await tlsApp.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
