// /metrics beyond plain counters: the auth endpoint's latency as a Prometheus histogram
// (herald_auth_request_seconds: buckets, sum, count) after real Echo subscriptions it
// authorized (one held back 300 ms by the fixture app), each Pusher app's open
// connections (herald_pusher_app_connections{app="…"}) following pusher-js clients, and
// herald_delivery_seconds: one observation per write that carried a publication's frame, on
// every kind of connection (pusher-js, socket.io-client, a redis-cli subscriber), none for
// a write of replies only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, redisCli, laravelPayload } from './lib/herald.mjs';
import { redisCliSubscriber } from './lib/redis-cli.mjs';
import { until, once, ackSubscribes, acked, inbox, subscribe } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { pusherClient, connected, subscribed, sdk } from './pusher_fixtures.mjs';

let h, app;
before(async () => {
  app = await startAuthApp({ delayMs: 300 });
  h = await startHerald(['--auth-endpoint', app.endpoint]);
});
after(async () => {
  await h?.stop();
  await app?.close();
});

// Every sample of /metrics, by its name with labels as written.
async function samples() {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  return new Map(text.split('\n').filter((l) => l && !l.startsWith('#'))
    .map((l) => { const i = l.lastIndexOf(' '); return [l.slice(0, i), Number(l.slice(i + 1))]; }));
}

test('the auth endpoint\'s latency is a histogram: each request counted in its bucket, its time in the sum', async () => {
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false, auth: { headers: { Authorization: 'Bearer 1' } },
  });
  try {
    const socket = ackSubscribes(echo.connector.socket);
    if (!socket.connected) await once(socket, 'connect');
    echo.private('orders.1');
    await acked(socket, 'private-orders.1');
    const m = await samples();
    assert.equal(m.get('herald_auth_request_seconds_count'), 1);
    assert.equal(m.get('herald_auth_request_seconds_bucket{le="0.25"}'), 0, 'held 300 ms: not within 0.25 s');
    assert.equal(m.get('herald_auth_request_seconds_bucket{le="0.5"}'), 1);
    assert.equal(m.get('herald_auth_request_seconds_bucket{le="+Inf"}'), 1);
    assert.ok(m.get('herald_auth_request_seconds_sum') >= 0.3, `sum ${m.get('herald_auth_request_seconds_sum')}`);
  } finally {
    echo.disconnect();
  }
});

test('each Pusher app\'s open connections, labelled by app', async () => {
  const open = async () => (await samples()).get('herald_pusher_app_connections{app="herald"}');
  assert.equal(await open(), 0);
  const a = await connected(pusherClient(h));
  const b = await connected(pusherClient(h));
  assert.equal(await open(), 2);
  a.disconnect();
  b.disconnect();
  await until(async () => await open() === 0, 'the gauge to fall back to 0');
});

test('each write that carries a publication is timed, on every kind of connection; replies are not', async () => {
  const count = async () => (await samples()).get('herald_delivery_seconds_count');
  const got = { pusher: inbox(), sio: inbox(), resp: inbox() };
  const p = await connected(pusherClient(h));
  (await subscribed(p, 'orders')).bind('Shipped', got.pusher.add);
  const s = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false });
  await once(s, 'connect');
  await subscribe(s, 'orders');
  s.on('Shipped', (_channel, data) => got.sio.add(data));
  const r = await redisCliSubscriber(h.redisPort, 'SUBSCRIBE', ['laravel_database_orders'], got.resp.add);
  try {
    const before = await count();
    const by = await samples();
    for (const protocol of ['socketio', 'pusher', 'resp']) {
      assert.equal(by.get(`herald_connections{protocol="${protocol}"}`), 1, protocol);
    }
    for (let n = 1; n <= 3; n++) {
      await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders', laravelPayload('Shipped', { n }));
      for (const box of Object.values(got)) await box.count(n, `publication ${n} on each connection`);
    }
    const pong = new Promise((resolve) => p.connection.bind('message', (m) => m.event === 'pusher:pong' && resolve()));
    p.send_event('pusher:ping', {});
    await pong;
    assert.equal(await redisCli(h.redisPort, 'PING'), 'PONG');
    const m = await samples();
    assert.equal(m.get('herald_delivery_seconds_count') - before, 9, '3 publications, 3 connections, one write each');
    assert.ok(m.get('herald_delivery_seconds_bucket{le="10"}') === m.get('herald_delivery_seconds_count'));
    assert.ok(m.get('herald_delivery_seconds_sum') < 9 * 10);
    for (const protocol of ['socketio', 'pusher', 'resp']) {
      const name = `herald_protocol_deliveries_total{protocol="${protocol}"}`;
      assert.equal(m.get(name) - by.get(name), 3, name);
    }
    const app = (name) => m.get(`herald_pusher_app_${name}{app="herald"}`) - by.get(`herald_pusher_app_${name}{app="herald"}`);
    assert.equal(app('deliveries_total'), 3);
    assert.equal(app('api_events_total'), 0, 'published over RESP, not the HTTP API');
    await sdk(h).triggerBatch([{ channel: 'orders', name: 'Shipped', data: { n: 4 } }, { channel: 'other', name: 'Shipped', data: {} }]);
    const api = (await samples()).get('herald_pusher_app_api_events_total{app="herald"}');
    assert.equal(api - by.get('herald_pusher_app_api_events_total{app="herald"}'), 2, 'one per event published by the HTTP API');
  } finally {
    p.disconnect();
    s.disconnect();
    r.close();
  }
});
