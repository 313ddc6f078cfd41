// socket.io-client 4 (Engine.IO 4) and 2 (Engine.IO 3) against herald, on every transport:
// WebSocket only, polling only, and the default polling → WebSocket upgrade. Publications go
// in over RESP with redis-cli, as Laravel's redis broadcaster sends them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startHerald, redisCli, laravelPayload, once } from './lib/herald.mjs';

let h;
before(async () => { h = await startHerald(); });
after(async () => { await h.stop(); });

// Subscribe and wait for herald's ACK, so a publication cannot race the join.
function subscribe(socket, channel) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no ack for subscribe')), 5000);
    socket.emit('subscribe', { channel }, () => { clearTimeout(t); resolve(); });
  });
}

async function publish(channel, event, data, socketId = null) {
  return Number(await redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socketId)));
}

const clients = [
  ['socket.io-client 4', (opts) => io(h.url, { forceNew: true, reconnection: false, ...opts }), 4],
  ['socket.io-client 2', (opts) => ioV2(h.url, { forceNew: true, reconnection: false, ...opts }), 3],
];

for (const [name, connect, eio] of clients) {
  test(`${name}: WebSocket only receives a publication`, async () => {
    const socket = connect({ transports: ['websocket'] });
    await once(socket, 'connect');
    assert.equal(socket.io.engine.transport.name, 'websocket');
    assert.match(socket.id, /^[\w-]{20}$/);
    if (eio === 3) assert.equal(socket.id, socket.io.engine.id, 'v2 names the socket after the session');
    else assert.notEqual(socket.id, socket.io.engine.id, 'v3+ gives the socket its own id');
    await subscribe(socket, 'orders.1');
    const got = once(socket, 'OrderShipped');
    assert.equal(await publish('orders.1', 'OrderShipped', { id: 1 }), 1);
    assert.deepEqual(await got, ['orders.1', { id: 1, socket: null }]);
    socket.close();
  });

  test(`${name}: polling only receives a publication`, async () => {
    const socket = connect({ transports: ['polling'] });
    await once(socket, 'connect');
    assert.equal(socket.io.engine.transport.name, 'polling');
    await subscribe(socket, 'orders.2');
    const got = once(socket, 'OrderShipped');
    await publish('orders.2', 'OrderShipped', { id: 2, name: 'é 😀 "quoted"' });
    assert.deepEqual(await got, ['orders.2', { id: 2, name: 'é 😀 "quoted"', socket: null }]);
    socket.close();
  });

  test(`${name}: default transports start on polling and upgrade to WebSocket`, async () => {
    const socket = connect({});
    let first;
    const upgraded = new Promise((resolve) => socket.io.on('open', () => {
      first = socket.io.engine.transport.name;
      socket.io.engine.on('upgrade', resolve);
    }));
    await once(socket, 'connect');
    await upgraded;
    assert.equal(first, 'polling');
    assert.equal(socket.io.engine.transport.name, 'websocket');
    await subscribe(socket, 'orders.3');
    const got = once(socket, 'OrderShipped');
    await publish('orders.3', 'OrderShipped', { id: 3 });
    assert.deepEqual(await got, ['orders.3', { id: 3, socket: null }]);
    socket.close();
  });

  test(`${name}: publications on a subscribed channel arrive in order, others do not`, async () => {
    const socket = connect({ transports: ['websocket'] });
    await once(socket, 'connect');
    await subscribe(socket, 'feed');
    const seen = [];
    socket.on('E', (channel, data) => seen.push(['E', channel, data.n]));
    await publish('not-subscribed', 'E', { n: 0 });
    for (let n = 1; n <= 20; n++) await publish('feed', 'E', { n });
    const deadline = Date.now() + 5000;
    while (seen.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => ['E', 'feed', i + 1]));
    socket.close();
  });
}

test('heartbeats keep an idle connection open on every transport', async () => {
  const fast = await startHerald(['--ping-interval-ms', '200', '--ping-timeout-ms', '300']);
  try {
    for (const connect of [
      (opts) => io(fast.url, { forceNew: true, reconnection: false, ...opts }),
      (opts) => ioV2(fast.url, { forceNew: true, reconnection: false, ...opts }),
    ]) {
      for (const transports of [['websocket'], ['polling']]) {
        const socket = connect({ transports });
        await once(socket, 'connect');
        let disconnected = false;
        socket.on('disconnect', () => { disconnected = true; });
        await new Promise((r) => setTimeout(r, 1200));
        assert.equal(disconnected, false, `still connected over ${transports} after several heartbeats`);
        socket.close();
      }
    }
  } finally {
    await fast.stop();
  }
});

test('a namespace other than / is refused with Invalid namespace', async () => {
  const socket = io(`${h.url}/admin`, { forceNew: true, reconnection: false, transports: ['websocket'] });
  const [err] = await once(socket, 'connect_error');
  assert.equal(err.message, 'Invalid namespace');
  socket.close();
  const v2 = ioV2(`${h.url}/admin`, { forceNew: true, reconnection: false, transports: ['websocket'] });
  const [msg] = await once(v2, 'error');
  assert.equal(msg, 'Invalid namespace');
  v2.close();
});

test('the CONNECT auth payload is accepted and the socket id is stable', async () => {
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'], auth: { token: 'abc' } });
  await once(socket, 'connect');
  assert.ok(socket.connected);
  socket.close();
});

test('EIO=3 can be refused with --socketio-eio3 false', async () => {
  const strict = await startHerald(['--socketio-eio3', 'false']);
  try {
    const v2 = ioV2(strict.url, { forceNew: true, reconnection: false, transports: ['polling'] });
    await once(v2, 'connect_error');
    v2.close();
    const res = await fetch(`${strict.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 5, message: 'Unsupported protocol version' });
    const v4 = io(strict.url, { forceNew: true, reconnection: false, transports: ['polling'] });
    await once(v4, 'connect');
    v4.close();
  } finally {
    await strict.stop();
  }
});

test('a payload that is not a Laravel envelope reaches no socket and is counted', async () => {
  const metric = async () => Number(/herald_non_laravel_payloads_total (\d+)/.exec(await (await fetch(`${h.url}/metrics`)).text())[1]);
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(socket, 'connect');
  await subscribe(socket, 'orders.7');
  const seen = [];
  socket.onAny((...args) => seen.push(args));
  const before = await metric();
  assert.equal(await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7', 'not json'), '0');
  assert.equal(await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7', '{"data":{"no":"event"}}'), '0');
  assert.ok(await metric() >= before + 2);
  await publish('orders.7', 'Real', {});
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(seen, [['Real', 'orders.7', { socket: null }]]);
  socket.close();
});

test('/metrics counts publications and the deliveries they made', async () => {
  const own = await startHerald();
  try {
    const read = async () => {
      const text = await (await fetch(`${own.url}/metrics`)).text();
      const get = (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)[1]);
      return [get('herald_publications_total'), get('herald_deliveries_total')];
    };
    assert.deepEqual(await read(), [0, 0]);
    const sockets = [];
    for (let i = 0; i < 2; i += 1) {
      const socket = io(own.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
      await once(socket, 'connect');
      await subscribe(socket, 'orders.9');
      sockets.push(socket);
    }
    const payload = laravelPayload('E', {});
    assert.equal(await redisCli(own.redisPort, 'PUBLISH', 'laravel_database_orders.9', payload), '2');
    assert.equal(await redisCli(own.redisPort, 'PUBLISH', 'laravel_database_nobody', payload), '0');
    assert.deepEqual(await read(), [2, 2]);
    for (const socket of sockets) socket.close();
  } finally {
    await own.stop();
  }
});

test('the polling-session gauge counts sockets still on long-polling, not upgraded ones', async () => {
  const own = await startHerald();
  const gauge = async () => Number(/herald_socketio_polling_sessions (\d+)/.exec(await (await fetch(`${own.url}/metrics`)).text())[1]);
  const settlesAt = async (want) => {
    for (let i = 0; i < 50 && await gauge() !== want; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await gauge(), want);
  };
  try {
    assert.equal(await gauge(), 0);
    const polling = io(own.url, { forceNew: true, reconnection: false, transports: ['polling'] });
    await once(polling, 'connect');
    await settlesAt(1);
    const upgrading = io(own.url, { forceNew: true, reconnection: false });
    await once(upgrading, 'connect');
    for (let i = 0; i < 50 && upgrading.io.engine.transport.name !== 'websocket'; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(upgrading.io.engine.transport.name, 'websocket');
    await settlesAt(1);
    const v2 = ioV2(own.url, { forceNew: true, reconnection: false, transports: ['polling'] });
    await once(v2, 'connect');
    await settlesAt(2);
    polling.close();
    v2.close();
    await settlesAt(0);
    upgrading.close();
  } finally {
    await own.stop();
  }
});
