// --subscribe-burst / --subscribe-rate: how fast one WebSocket connection may subscribe to
// channels it is not on (each subscription makes the node work; in a cluster, Redis round
// trips). Past the burst a subscription is refused with 429 (socket.io: subscription_error
// (channel, 429); Pusher: pusher:subscription_error LimitReached 429) and counted in
// herald_subscribe_rate_limited_total; it succeeds again once a token came back (the rate),
// subscribing again to a channel it is on costs nothing, and other connections are not
// affected. Both edges apply the one policy (src/edge_policy.rs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startHerald, metric, once } from './lib/herald.mjs';
import { until, subscribe } from './lib/wait.mjs';
import { RawClient } from './pusher_fixtures.mjs';

const BURST = 5;
let h;
before(async () => { h = await startHerald(['--subscribe-burst', String(BURST), '--subscribe-rate', '2']); });
after(async () => { await h.stop(); });

// Refusals the clients were told, summed over the tests: what the metric must say.
let told = 0;

test('Pusher: past the burst a new subscription is refused with 429 until a token comes back', async () => {
  const raw = RawClient.connect(h);
  await raw.established();
  // Subscribing and leaving at once, as a flood would: each is a new subscription.
  const answer = async (c) => {
    raw.send({ event: 'pusher:subscribe', data: { channel: c } });
    const m = await raw.expect((x) => x.channel === c
      && ['pusher_internal:subscription_succeeded', 'pusher:subscription_error'].includes(x.event));
    return m.event === 'pusher:subscription_error' ? m.parsed : 'ok';
  };
  for (let i = 1; i < BURST; i++) {
    assert.equal(await answer(`p.${i}`), 'ok');
    raw.send({ event: 'pusher:unsubscribe', data: { channel: `p.${i}` } });
  }
  assert.equal(await answer('p.kept'), 'ok', 'the last of the burst');
  assert.deepEqual(await answer('p.over'), {
    type: 'LimitReached', error: 'Too many subscriptions per second on this connection', status: 429,
  });
  told += 1;
  assert.equal(await answer('p.kept'), 'ok', 'a channel it is on costs nothing');
  const other = RawClient.connect(h);
  await other.established();
  other.send({ event: 'pusher:subscribe', data: { channel: 'p.over' } });
  await other.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'p.over');
  other.close();
  await until(async () => {
    const got = await answer('p.over');
    if (got !== 'ok') told += 1;
    return got === 'ok';
  }, 'a token to come back');
  raw.close();
});

test('socket.io: past the burst a new subscription is refused with 429 until a token comes back', async () => {
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  try {
    await once(socket, 'connect');
    const errors = [];
    socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
    // An error comes before its subscription's ack: the ack is the ordered marker.
    const answer = async (c) => {
      const before = errors.length;
      await subscribe(socket, c);
      return errors.length === before ? 'ok' : errors.slice(before);
    };
    for (let i = 1; i < BURST; i++) {
      assert.equal(await answer(`s.${i}`), 'ok');
      socket.emit('unsubscribe', { channel: `s.${i}` });
    }
    assert.equal(await answer('s.kept'), 'ok', 'the last of the burst');
    assert.deepEqual(await answer('s.over'), [['s.over', 429]]);
    told += 1;
    assert.equal(await answer('s.kept'), 'ok', 'a channel it is on costs nothing');
    await until(async () => {
      const got = await answer('s.over');
      if (got !== 'ok') told += 1;
      return got === 'ok';
    }, 'a token to come back');
  } finally {
    socket.close();
  }
  assert.equal(await metric(h, 'herald_subscribe_rate_limited_total'), told, 'each refusal counted');
});
