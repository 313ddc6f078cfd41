// socket.io-client 4 (Engine.IO 4) and 2 (Engine.IO 3) against herald, on every transport:
// WebSocket only, polling only, and the default polling → WebSocket upgrade. Publications go
// in over RESP with redis-cli, as Laravel's redis broadcaster sends them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startHerald, redisCli, laravelPayload, once, metric } from './lib/herald.mjs';
import { inbox, until, subscribe } from './lib/wait.mjs';

let h;
before(async () => { h = await startHerald(); });
after(async () => { await h.stop(); });

async function publish(channel, event, data, socketId = null) {
  return Number(await redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socketId)));
}

const clients = [
  ['socket.io-client 4', (opts) => io(h.url, { forceNew: true, reconnection: false, ...opts }), 4],
  ['socket.io-client 2', (opts) => ioV2(h.url, { forceNew: true, reconnection: false, ...opts }), 3],
];

/** A publication's arguments without the recovery offset herald appends as the last one
 * (the channel's `<hex epoch>-<seq>`; socket.io-client 4.6+ keeps it for recovery). */
function offsetless(args) {
  assert.match(args.at(-1), /^[0-9a-f]+-\d+$/, 'the offset comes last');
  return args.slice(0, -1);
}

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
    assert.deepEqual(offsetless(await got), ['orders.1', { id: 1, socket: null }]);
    socket.close();
  });

  test(`${name}: polling only receives a publication`, async () => {
    const socket = connect({ transports: ['polling'] });
    await once(socket, 'connect');
    assert.equal(socket.io.engine.transport.name, 'polling');
    await subscribe(socket, 'orders.2');
    const got = once(socket, 'OrderShipped');
    await publish('orders.2', 'OrderShipped', { id: 2, name: 'é 😀 "quoted"' });
    assert.deepEqual(offsetless(await got), ['orders.2', { id: 2, name: 'é 😀 "quoted"', socket: null }]);
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
    assert.deepEqual(offsetless(await got), ['orders.3', { id: 3, socket: null }]);
    socket.close();
  });

  test(`${name}: publications on a subscribed channel arrive in order, others do not`, async () => {
    const socket = connect({ transports: ['websocket'] });
    await once(socket, 'connect');
    await subscribe(socket, 'feed');
    const seen = inbox();
    socket.on('E', (channel, data) => seen.add(['E', channel, data.n]));
    // Published first, so the twenty that follow are the markers that prove it never came.
    await publish('not-subscribed', 'E', { n: 0 });
    for (let n = 1; n <= 20; n++) await publish('feed', 'E', { n });
    assert.deepEqual(await seen.count(20), Array.from({ length: 20 }, (_, i) => ['E', 'feed', i + 1]));
    socket.close();
  });
}

test('heartbeats keep an idle connection open on every transport', async () => {
  // The heartbeat is the subject: a short interval, so many go by quickly, and a timeout long
  // enough that a busy machine answers in time. Heartbeats are watched for longer than
  // interval + timeout, so a side that ignored the other's heartbeats would have closed.
  const [interval, timeout] = [250, 1500];
  const fast = await startHerald(['--ping-interval-ms', String(interval), '--ping-timeout-ms', String(timeout)]);
  const watch = async (connect, eio, transports) => {
    const socket = connect({ transports });
    await once(socket, 'connect');
    const disconnects = inbox();
    socket.on('disconnect', disconnects.add);
    // v4: herald pings and the client answers; v3: the client pings and herald answers.
    const beats = inbox();
    socket.io.on(eio === 4 ? 'ping' : 'pong', () => beats.add(Date.now()));
    await until(() => {
      assert.deepEqual(disconnects.items, [], `still connected over ${transports} (EIO=${eio})`);
      return beats.items.length > 1 && beats.items.at(-1) - beats.items[0] > interval + timeout;
    }, `heartbeats for ${interval + timeout} ms over ${transports} (EIO=${eio})`);
    assert.ok(socket.connected);
    socket.close();
  };
  try {
    const v4 = (opts) => io(fast.url, { forceNew: true, reconnection: false, ...opts });
    const v3 = (opts) => ioV2(fast.url, { forceNew: true, reconnection: false, ...opts });
    await Promise.all([
      watch(v4, 4, ['websocket']), watch(v4, 4, ['polling']),
      watch(v3, 3, ['websocket']), watch(v3, 3, ['polling']),
    ]);
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

test('the CONNECT auth payload is accepted and the socket id is stable across the upgrade', async () => {
  const socket = io(h.url, { forceNew: true, reconnection: false, auth: { token: 'abc' } });
  const other = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await Promise.all([once(socket, 'connect'), once(other, 'connect')]);
  const id = socket.id;
  assert.match(id, /^[\w-]{20}$/);
  if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade');
  assert.equal(socket.io.engine.transport.name, 'websocket');
  assert.equal(socket.id, id, 'the client keeps its id');
  // herald still knows the socket by that id: a publication that leaves it out (toOthers)
  // skips it and reaches the other socket; the next one, for everyone, is the marker.
  await subscribe(socket, 'orders.8');
  await subscribe(other, 'orders.8');
  const got = inbox(), otherGot = inbox();
  socket.on('E', (channel, data) => got.add(data.n));
  other.on('E', (channel, data) => otherGot.add(data.n));
  assert.equal(await publish('orders.8', 'E', { n: 1 }, id), 1);
  assert.equal(await publish('orders.8', 'E', { n: 2 }), 2);
  assert.deepEqual(await got.before((n) => n === 2), [], 'left out by the id it was given at CONNECT');
  assert.deepEqual(await otherGot.count(2), [1, 2]);
  socket.close();
  other.close();
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
  const counted = () => metric(h, 'herald_non_laravel_payloads_total');
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(socket, 'connect');
  await subscribe(socket, 'orders.7');
  const seen = inbox();
  socket.onAny((...args) => seen.add(args));
  const before = await counted();
  assert.equal(await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7', 'not json'), '0');
  assert.equal(await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7', '{"data":{"no":"event"}}'), '0');
  assert.ok(await counted() >= before + 2);
  // The real envelope that follows is the marker: nothing came before it.
  await publish('orders.7', 'Real', {});
  assert.deepEqual((await seen.count(1)).map(offsetless), [['Real', 'orders.7', { socket: null }]]);
  assert.deepEqual(await seen.before((args) => args[0] === 'Real'), []);
  socket.close();
});

test('/metrics counts publications and the deliveries they made', async () => {
  const own = await startHerald();
  try {
    const read = async () => [await metric(own, 'herald_publications_total'), await metric(own, 'herald_deliveries_total')];
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
  const gauge = () => metric(own, 'herald_socketio_polling_sessions');
  const settlesAt = (want) => until(async () => await gauge() === want, `the polling-session gauge to read ${want}`);
  try {
    assert.equal(await gauge(), 0);
    const polling = io(own.url, { forceNew: true, reconnection: false, transports: ['polling'] });
    await once(polling, 'connect');
    await settlesAt(1);
    const upgrading = io(own.url, { forceNew: true, reconnection: false });
    await once(upgrading, 'connect');
    if (upgrading.io.engine.transport.name !== 'websocket') await once(upgrading.io.engine, 'upgrade');
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
