// --max-channels-per-connection: a connection past it gets a subscription error for the
// extra channel (socket.io: subscription_error (channel, 429); Pusher:
// pusher:subscription_error LimitReached 429), keeps the channels it has, may subscribe
// again after leaving one, and other connections are not affected. On socket.io, channels
// the app is still authorizing count too (Pusher clients get their signature before they
// subscribe, so herald never holds a Pusher channel in authorization).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startHerald, redisCli, laravelPayload, once } from './lib/herald.mjs';
import { until, subscribe } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { pusherClient, connected, subscribed, next, RawClient } from './pusher_fixtures.mjs';

let h;
const sockets = [];
const connect = (server, opts = {}) => {
  const socket = io(server.url, { forceNew: true, reconnection: false, transports: ['websocket'], ...opts });
  sockets.push(socket);
  return socket;
};
before(async () => { h = await startHerald(['--max-channels-per-connection', '3']); });
after(async () => { for (const s of sockets) s.close(); await h.stop(); });

const publish = (channel, event, data) =>
  redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data));

test('socket.io: the fourth channel is refused with 429, the first three keep working', async () => {
  const socket = connect(h);
  await once(socket, 'connect');
  const refused = once(socket, 'subscription_error');
  for (const c of ['a.1', 'a.2', 'a.3', 'a.4']) socket.emit('subscribe', { channel: c });
  assert.deepEqual(await refused, ['a.4', 429]);
  const got = once(socket, 'Ping');
  assert.equal(await publish('a.3', 'Ping', { n: 3 }), '1');
  assert.deepEqual((await got)[1], { n: 3, socket: null });
  assert.equal(await publish('a.4', 'Ping', { n: 4 }), '0');
  // Leaving one makes room.
  socket.emit('unsubscribe', { channel: 'a.1' });
  await subscribe(socket, 'a.4');
  assert.equal(await publish('a.4', 'Ping', { n: 4 }), '1');
  // Another socket is not limited by this one.
  const other = connect(h);
  await once(other, 'connect');
  await subscribe(other, 'a.1');
  assert.equal(await publish('a.1', 'Ping', { n: 1 }), '1');
  socket.close();
  other.close();
});

test('Pusher: pusher:subscription_error LimitReached 429 for the fourth, in Pusher\'s shape', async () => {
  const raw = RawClient.connect(h);
  await raw.established();
  for (const c of ['p.1', 'p.2', 'p.3']) {
    raw.send({ event: 'pusher:subscribe', data: { channel: c } });
    await raw.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === c);
  }
  raw.send({ event: 'pusher:subscribe', data: { channel: 'p.4' } });
  const err = await raw.expect('pusher:subscription_error');
  assert.equal(err.channel, 'p.4');
  assert.deepEqual(err.parsed, { type: 'LimitReached', error: 'Too many channels on this connection', status: 429 });
  // Subscribing again to a channel it has is not a new one.
  raw.send({ event: 'pusher:subscribe', data: { channel: 'p.2' } });
  await raw.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'p.2');
  raw.send({ event: 'pusher:unsubscribe', data: { channel: 'p.1' } });
  raw.send({ event: 'pusher:subscribe', data: { channel: 'p.4' } });
  await raw.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'p.4');
  raw.close();

  // pusher-js reports it on the channel.
  const c = await connected(pusherClient(h));
  for (const name of ['q.1', 'q.2', 'q.3']) await subscribed(c, name);
  const failed = next(c.subscribe('q.4'), 'pusher:subscription_error');
  assert.equal((await failed).data.status, 429);
  c.disconnect();
});

test('socket.io: channels the app is still authorizing count toward the limit', async () => {
  const app = await startAuthApp({ hold: true });
  // Recovery off: the arguments below are compared whole, without the offset it appends.
  const node = await startHerald(['--max-channels-per-connection', '3', '--auth-endpoint', app.endpoint, '--recovery-window', '0']);
  const socket = connect(node, { auth: { headers: { Authorization: 'Bearer 1' } } });
  try {
    await once(socket, 'connect');
    const errors = [];
    socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
    const authorized = ['private-chat.1', 'private-chat.2', 'private-chat.3'].map((c) => subscribe(socket, c));
    await until(() => app.held === 3, 'the app to be asked for three channels');
    // The app has answered none of them: the socket holds no channel yet, three in authorization.
    const refused = once(socket, 'subscription_error');
    socket.emit('subscribe', { channel: 'public.4' });
    assert.deepEqual(await refused, ['public.4', 429]);
    assert.equal(await redisCli(node.redisPort, 'PUBLISH', 'laravel_database_public.4', laravelPayload('E', {})), '0');
    app.release();
    await Promise.all(authorized);
    assert.deepEqual(errors, [['public.4', 429]], 'the three authorized channels were not refused');
    const got = once(socket, 'E');
    assert.equal(await redisCli(node.redisPort, 'PUBLISH', 'laravel_database_private-chat.3', laravelPayload('E', { n: 3 })), '1');
    assert.deepEqual(await got, ['private-chat.3', { n: 3, socket: null }]);
  } finally {
    socket.close();
    await node.stop();
    await app.close();
  }
});
