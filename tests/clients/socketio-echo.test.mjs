// Laravel Echo 2.5 with `broadcaster: 'socket.io'` against herald: public, private and presence
// channels authorized by a fixture that answers like Laravel 11's /broadcasting/auth, whispers,
// toOthers() (by hand, and through Laravel's own X-Socket-ID handling), and the real Laravel redis
// broadcaster (php) end to end.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startHerald, redisCli, laravelPayload, once, metric } from './lib/herald.mjs';
import { inbox, until, within, ackSubscribes, acked } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { startLaravelApp } from './fixtures/laravel-app.mjs';
import { privateCa } from './lib/tls.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let h, app;
let open = [];
before(async () => {
  app = await startAuthApp();
  h = await startHerald(['--auth-endpoint', app.endpoint, '--client-event-rate', '5']);
});
// Every test starts on a herald with no socket.io session left by an earlier one: a tab still
// joined to a presence channel would change the next test's member lists.
afterEach(async () => {
  for (const e of open) e.disconnect();
  open = [];
  await until(async () => await metric(h, 'herald_ws_connections') === 0
    && await metric(h, 'herald_socketio_polling_sessions') === 0, 'herald to close the tabs of the test');
});
after(async () => {
  await h.stop();
  await app.close();
});

// An Echo "tab" signed in as `user` (a bearer token, as an SPA sends it, or the session cookie).
// Its subscribes carry an ack id (Echo's own packets, plus the id), so `joined` can wait until
// herald has joined the channel or told the refusal.
async function tab({ user, cookie, client = io, transports = ['websocket'], server = h } = {}) {
  const opts = { broadcaster: 'socket.io', host: server.url, client, transports, forceNew: true, reconnection: false };
  if (user) opts.auth = { headers: { Authorization: `Bearer ${user}` } };
  if (cookie) opts.extraHeaders = { Cookie: cookie };
  const echo = new Echo(opts);
  open.push(echo);
  ackSubscribes(echo.connector.socket);
  if (!echo.connector.socket.connected) await once(echo.connector.socket, 'connect');
  return echo;
}

// Herald has handled the tab's subscribe to `channel` (its full name: `private-chat`).
const joined = (echo, channel) => acked(echo.connector.socket, channel);
// Herald has handled the tab's unsubscribe (Echo's leave()).
const left = (echo, channel) => acked(echo.connector.socket, channel, 'unsubscribe');

const publish = (channel, event, data, socket = null) =>
  redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socket));

const MARKER = (item) => item === 'marker';

test('public channel: listen() receives a broadcast', async () => {
  const echo = await tab();
  const got = inbox();
  echo.channel('orders.1').listen('.OrderShipped', got.add);
  await joined(echo, 'orders.1');
  assert.equal(await publish('orders.1', 'OrderShipped', { id: 1 }), '1');
  assert.deepEqual(await got.count(1), [{ id: 1, socket: null }]);
});

test('private channel allowed by the app: whispers reach the other member, not the sender', async () => {
  const a = await tab({ user: 1 });
  const b = await tab({ cookie: 'laravel_session=2; other=x' });
  const heardA = inbox(), heardB = inbox();
  a.private('chat.whisper').listenForWhisper('typing', heardA.add);
  b.private('chat.whisper').listenForWhisper('typing', heardB.add);
  await Promise.all([joined(a, 'private-chat.whisper'), joined(b, 'private-chat.whisper')]);
  a.private('chat.whisper').whisper('typing', { name: 'Ann' });
  assert.deepEqual(await heardB.count(1), [{ name: 'Ann' }]);
  // B answers only once it heard A: herald handled A's whisper before B's, so an echo to A
  // would have reached A first.
  b.private('chat.whisper').whisper('typing', { name: 'Bob' });
  assert.deepEqual(await heardA.before((e) => e.name === 'Bob', 'B\'s whisper'), [], 'the sender gets nothing back');

  const asked = app.requests.filter((r) => r.form.channel_name === 'private-chat.whisper');
  assert.equal(asked.length, 2);
  const fromA = asked.find((r) => r.form.socket_id === a.socketId());
  assert.deepEqual(fromA.form, { channel_name: 'private-chat.whisper', socket_id: a.socketId() });
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
  guest.private('orders.1');
  bob.private('orders.1');
  // herald acks a subscribe after it has told the refusal.
  await Promise.all([joined(guest, 'private-orders.1'), joined(bob, 'private-orders.1')]);
  assert.deepEqual(errors, [['private-orders.1', 403], ['private-orders.1', 403]]);
  assert.equal(await publish('private-orders.1', 'OrderShipped', { id: 1 }), '0', 'nobody joined');
  const whisperErrors = inbox();
  bob.connector.socket.on('client_event_error', (channel, e) => whisperErrors.add([channel, e.message]));
  bob.private('orders.1').whisper('typing', {});
  assert.deepEqual(await whisperErrors.count(1), [['private-orders.1', 'not subscribed to this channel']]);
});

test('private channel: the owner receives, toOthers() skips the sender', async () => {
  const ann1 = await tab({ user: 1 });
  const ann2 = await tab({ user: 1 });
  const got1 = inbox(), got2 = inbox();
  ann1.private('orders.1').listen('.OrderShipped', got1.add).listen('.Marker', () => got1.add('marker'));
  ann2.private('orders.1').listen('.OrderShipped', got2.add);
  await Promise.all([joined(ann1, 'private-orders.1'), joined(ann2, 'private-orders.1')]);
  await publish('private-orders.1', 'OrderShipped', { id: 1 }, ann1.socketId());
  await publish('private-orders.1', 'Marker', {});
  assert.deepEqual(await got1.before(MARKER), [], 'the socket named by X-Socket-ID is left out');
  assert.deepEqual(await got2.count(1), [{ id: 1, socket: ann1.socketId() }]);
});

for (const client of ['phpredis', 'predis']) {
  test(`toOthers() through Laravel (${client}): the X-Socket-ID of the request that fired the event leaves its tab out`, async () => {
    const laravel = await startLaravelApp(h.redisPort, client);
    try {
      const sender = await tab({ user: 1 });
      const otherTab = await tab({ user: 1 });
      const sent = inbox(), other = inbox();
      sender.private('orders.1').listen('OrderShipped', sent.add);
      otherTab.private('orders.1').listen('OrderShipped', other.add);
      await Promise.all([joined(sender, 'private-orders.1'), joined(otherTab, 'private-orders.1')]);
      // What Echo's HTTP interceptors do: the tab's socket id in X-Socket-ID.
      assert.equal(await laravel.ship(1, sender.socketId()), sender.socketId(), 'Laravel took the header');
      assert.deepEqual(await other.count(1), [{ id: 1, socket: sender.socketId() }]);
      // The same route without the header broadcasts to everyone: it is the marker.
      assert.equal(await laravel.ship(1), null);
      assert.deepEqual(await sent.before((e) => e.socket === null, 'the broadcast to everyone'), [],
        'the tab that made the request does not get its own event');
    } finally {
      await laravel.close();
    }
  });
}

test('presence: here/joining/leaving count a user with two tabs once', async () => {
  const room = 'room.count';
  const annA = await tab({ user: 1 });
  const hereA = inbox(), joiningA = inbox();
  annA.join(room).here(hereA.add).joining(joiningA.add);
  assert.deepEqual(await hereA.count(1), [[{ id: 1, name: 'Ann' }]]);

  // Bob's view of the room, in order, with the markers published to it.
  const bob = await tab({ user: 2 });
  const hereBob = inbox(), seenByBob = inbox();
  bob.join(room).here(hereBob.add)
    .joining((u) => seenByBob.add(['joining', u]))
    .leaving((u) => seenByBob.add(['leaving', u]))
    .listen('.Marker', (e) => seenByBob.add(['marker', e.n]));
  const [bobHere] = await hereBob.count(1);
  assert.deepEqual(bobHere.sort((x, y) => x.id - y.id), [{ id: 1, name: 'Ann' }, { id: 2, name: 'Bob' }]);
  assert.deepEqual(await joiningA.count(1), [{ id: 2, name: 'Bob' }]);

  // Ann opens a second tab: she is already here, so nobody hears of her joining.
  const annB = await tab({ user: 1 });
  const hereB = inbox();
  annB.join(room).here(hereB.add);
  assert.equal((await hereB.count(1))[0].length, 2);
  await publish(`presence-${room}`, 'Marker', { n: 1 });
  const marker = (n) => (item) => item[0] === 'marker' && item[1] === n;
  assert.deepEqual(await seenByBob.before(marker(1)), [], 'no joining for a second tab');

  // One of Ann's tabs leaves: she is still here.
  annA.leave(room);
  await left(annA, `presence-${room}`);
  await publish(`presence-${room}`, 'Marker', { n: 2 });
  assert.deepEqual(await seenByBob.before(marker(2)), [['marker', 1]], 'no leaving while a tab remains');
  // Her last tab disconnects: now she leaves.
  annB.disconnect();
  await seenByBob.count(3);
  assert.deepEqual(seenByBob.items, [['marker', 1], ['marker', 2], ['leaving', { id: 1, name: 'Ann' }]]);

  // Whispers on presence channels go to the other members.
  const heard = inbox();
  const cy = await tab({ user: 3 });
  cy.join(room).listenForWhisper('wave', heard.add);
  await joined(cy, `presence-${room}`);
  bob.join(room).whisper('wave', { from: 'Bob' });
  assert.deepEqual(await heard.count(1), [{ from: 'Bob' }]);
});

test('client events are rate limited per connection', async () => {
  const a = await tab({ user: 1 });
  const b = await tab({ user: 2 });
  const heard = inbox(), errors = inbox();
  b.private('chat.rate').listenForWhisper('burst', (e) => heard.add(e.n)).listen('.Marker', () => heard.add('marker'));
  a.connector.socket.on('client_event_error', (channel, e) => errors.add([channel, e.event, e.message]));
  a.private('chat.rate');
  await Promise.all([joined(a, 'private-chat.rate'), joined(b, 'private-chat.rate')]);
  for (let n = 0; n < 8; n++) a.private('chat.rate').whisper('burst', { n });
  await errors.count(3);
  // herald has refused the last three: what it relayed of the eight is before the marker.
  await publish('private-chat.rate', 'Marker', {});
  assert.deepEqual(await heard.before(MARKER), [0, 1, 2, 3, 4], '--client-event-rate 5: five per second pass');
  assert.deepEqual(errors.items[0], ['private-chat.rate', 'client-burst', 'client event rate limit exceeded']);
  // Only client-* names, only on private/presence channels.
  a.connector.socket.emit('client event', { channel: 'private-chat.rate', event: 'App\\Events\\Fake', data: {} });
  a.connector.socket.emit('client event', { channel: 'orders.1', event: 'client-x', data: {} });
  await errors.count(5);
  assert.equal(errors.items[3][2], 'client event names start with client-');
  assert.equal(errors.items[4][2], 'client events are allowed on private and presence channels only');
});

test('Echo over socket.io-client 2 (EIO=3, what laravel-echo-server served) on both transports', async () => {
  for (const transports of [['websocket'], ['polling']]) {
    const name = `v2-${transports[0]}`;
    const a = await tab({ user: 1, client: ioV2, transports });
    const b = await tab({ user: 2, client: ioV2, transports });
    const here = inbox(), heard = inbox();
    b.join(`room.${name}`).here(here.add);
    b.private(`chat.${name}`).listenForWhisper('hi', heard.add);
    a.private(`chat.${name}`);
    await Promise.all([joined(a, `private-chat.${name}`), joined(b, `private-chat.${name}`)]);
    a.private(`chat.${name}`).whisper('hi', { t: transports[0] });
    assert.deepEqual(await heard.count(1), [{ t: transports[0] }]);
    assert.deepEqual(await here.count(1), [[{ id: 2, name: 'Bob' }]]);
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
    const pub = inbox(), priv = inbox(), otherPriv = inbox();
    echo.channel('orders.1').listen('OrderShipped', pub.add);
    echo.private('orders.1').listen('OrderShipped', priv.add).listen('Marker', () => priv.add('marker'));
    other.private('orders.1').listen('OrderShipped', otherPriv.add);
    await Promise.all([joined(echo, 'orders.1'), joined(echo, 'private-orders.1'), joined(other, 'private-orders.1')]);
    await broadcast(client, '--channel', 'orders.1', '--channel', 'private-orders.1',
      '--event', 'App\\Events\\OrderShipped', '--data', '{"id":7,"total":"9.50"}');
    assert.deepEqual(await pub.count(1), [{ id: 7, total: '9.50' }]);
    assert.deepEqual(await priv.count(1), [{ id: 7, total: '9.50' }]);
    await otherPriv.count(1);
    // "socket" in the envelope (what toOthers() puts there): that tab is skipped.
    await broadcast(client, '--channel', 'private-orders.1', '--event', 'App\\Events\\OrderShipped',
      '--data', '{"id":8}', '--socket', echo.socketId());
    assert.deepEqual((await otherPriv.count(2))[1], { id: 8, socket: echo.socketId() });
    await broadcast(client, '--channel', 'private-orders.1', '--event', 'App\\Events\\Marker', '--data', '{}');
    assert.deepEqual(await priv.before(MARKER), [{ id: 7, total: '9.50' }]);
  });
}

test('an auth endpoint that does not answer is bounded by --auth-timeout-ms; no endpoint refuses private channels', async () => {
  const stuckApp = await startAuthApp({ hold: true });
  const stuck = await startHerald(['--auth-endpoint', stuckApp.endpoint, '--auth-timeout-ms', '200']);
  const none = await startHerald([]);
  try {
    // The held app never answers: a 504 can only come from herald's own timeout.
    for (const [server, status] of [[stuck, 504], [none, 500]]) {
      const echo = await tab({ user: 1, server });
      const err = once(echo.connector.socket, 'subscription_error');
      echo.private('chat');
      assert.deepEqual(await err, ['private-chat', status]);
    }
    assert.equal(stuckApp.requests.length, 1, 'the app was asked');
  } finally {
    stuckApp.release();
    await stuck.stop();
    await none.stop();
    await stuckApp.close();
  }
});

test('leaving a private channel while the app is still authorizing it joins nothing', async () => {
  const slowApp = await startAuthApp({ hold: true });
  const slow = await startHerald(['--auth-endpoint', slowApp.endpoint]);
  try {
    const echo = await tab({ user: 1, server: slow });
    echo.private('chat');
    await until(() => slowApp.held === 1, 'the app to be asked');
    echo.leave('chat');
    await left(echo, 'private-chat');
    slowApp.release();
    // herald acks the subscribe once it has the app's (late) answer.
    await joined(echo, 'private-chat');
    const receivers = await redisCli(slow.redisPort, 'PUBLISH', 'laravel_database_private-chat', laravelPayload('E', { n: 1 }));
    assert.equal(receivers, '0', 'the late "allowed" answer joined nothing');
  } finally {
    await slow.stop();
    await slowApp.close();
  }
});

test('unsubscribe stops delivery; disconnect leaves every channel', async () => {
  const echo = await tab();
  const got = inbox();
  echo.channel('orders.5').listen('.E', got.add);
  await joined(echo, 'orders.5');
  assert.equal(await publish('orders.5', 'E', { n: 1 }), '1');
  await got.count(1);
  echo.leaveChannel('orders.5');
  await left(echo, 'orders.5');
  assert.equal(await publish('orders.5', 'E', { n: 2 }), '0');
  const other = await tab();
  other.channel('orders.6');
  await joined(other, 'orders.6');
  assert.equal(await publish('orders.6', 'E', {}), '1');
  other.disconnect();
  // A disconnect has no acknowledgement: wait until herald has let the channel go.
  await until(async () => await publish('orders.6', 'E', {}) === '0', 'orders.6 to have no receiver');
});

test('a redirect from the auth endpoint refuses the channel; herald never follows it', async () => {
  const sso = await startHerald(['--auth-endpoint', app.endpoint.replace('/broadcasting/auth', '/sso/broadcasting/auth')]);
  try {
    const echo = await tab({ server: sso });
    const err = once(echo.connector.socket, 'subscription_error');
    echo.private('chat');
    assert.deepEqual(await err, ['private-chat', 302]);
    assert.equal(app.requests.some((r) => r.url === '/login'), false);
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
    const ok = await tab({ user: 2, server: trusting });
    const here = await within(new Promise((resolve) => ok.join('room').here(resolve)), 'presence:subscribed');
    assert.deepEqual(here, [{ id: 2, name: 'Bob' }]);
    const refused = await tab({ user: 2, server: untrusting });
    const err = once(refused.connector.socket, 'subscription_error');
    refused.join('room');
    assert.deepEqual(await err, ['presence-room', 502], 'a certificate nobody vouches for is not trusted');
  } finally {
    await trusting.stop();
    await untrusting.stop();
    await tlsApp.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
