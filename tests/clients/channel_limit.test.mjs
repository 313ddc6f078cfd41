// --max-channels-per-connection: a connection past it gets a subscription error for the
// extra channel (socket.io: subscription_error (channel, 429); Pusher:
// pusher:subscription_error LimitReached 429), keeps the channels it has, may subscribe
// again after leaving one, and other connections are not affected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startHerald, redisCli, laravelPayload, once } from './lib/herald.mjs';
import { pusherClient, connected, subscribed, next, RawClient } from './pusher_fixtures.mjs';

let h;
before(async () => { h = await startHerald(['--max-channels-per-connection', '3']); });
after(async () => { await h.stop(); });

const publish = (channel, event, data) =>
  redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data));

test('socket.io: the fourth channel is refused with 429, the first three keep working', async () => {
  const socket = io(h.url, { transports: ['websocket'] });
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
  await new Promise((resolve) => socket.emit('subscribe', { channel: 'a.4' }, resolve));
  assert.equal(await publish('a.4', 'Ping', { n: 4 }), '1');
  // Another socket is not limited by this one.
  const other = io(h.url, { transports: ['websocket'] });
  await once(other, 'connect');
  await new Promise((resolve) => other.emit('subscribe', { channel: 'a.1' }, resolve));
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
