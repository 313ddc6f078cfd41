// History and recovery across herald nodes (`--cluster redis://…`, a real redis-server): a
// client whose node goes away comes back through a load balancer (a TCP proxy that now sends
// new connections to another node) and recovers there everything it missed, exactly once, in
// order, from the channel's history in Redis (socket.io-client's connection state recovery).
// The node is cut off from the client (the network), or SIGKILLed (its sessions never said
// goodbye). When redis-server itself restarts (without persistence), delivery resumes in new
// epochs, and clients recover what history still covers or are told it does not (recovered
// false). When only the nodes' subscriber connections drop, a connected client misses nothing.
// pusher-js with herald's recovery snippet resumes the same way on another node, from the marks
// its node kept in Redis (an open connection's, or a closed one's with its counts).
// A channel nobody has published on stands at the cluster's origin: subscribing to one writes
// no history key, and a client away when it is first published on (a QR login confirmed) gets
// that event back, on either protocol, unless Redis lost its data or the history lapsed and
// began again meanwhile (then it is told).
//
// Publications go in by RESP on a node that stays up, ticking every few ms, so events are
// published while the client is away. A node's backplane subscriptions take a moment: each
// test first publishes probes until the client has one. Absence of duplicates is proved by the
// exact sequence up to an end marker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startHerald, laravelPayload, once, metric, redisCli } from './lib/herald.mjs';
import { inbox, until, within, subscribe } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { startCutProxy } from './lib/cut-proxy.mjs';
import { redisCliSubscriber } from './lib/redis-cli.mjs';
import { outage as redisOutage } from './lib/resp.mjs';
import { sdk, pusherClient, connected, subscribed } from './pusher_fixtures.mjs';
import { enableRecovery } from '../../examples/pusher-recovery/herald-recovery.js';

let redis;
const started = [];
before(async () => { redis = await startRedisServer(); });
after(async () => {
  for (const s of started) await s.stop();
  await redis?.stop();
});

// A herald node of the cluster, with `publish(channel, event, data)` over one RESP connection
// (in order, as Laravel's redis connection publishes).
async function node(args = []) {
  const h = await startHerald(['--cluster', redis.url, ...args]);
  started.push(h);
  const conn = net.connect(h.redisPort, '127.0.0.1');
  await once(conn, 'connect');
  conn.on('data', () => {});
  conn.on('error', () => {});
  h.publish = (channel, event, data) => {
    const args = ['PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data)];
    conn.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  };
  const stop = h.stop.bind(h);
  h.stop = async () => { conn.destroy(); return stop(); };
  h.kill = async () => {
    const dead = new Promise((r) => h.proc.once('exit', r));
    h.proc.kill('SIGKILL');
    await dead;
  };
  return h;
}

// Publish `Probe` on `h` every 50 ms until `got` has one: the node the client is on hears the
// channel from the backplane.
async function probe(h, channel, got, isProbe) {
  const timer = setInterval(() => h.publish(channel, 'Probe', {}), 50);
  try {
    await got.waitFor(isProbe, `a probe published on another node, on ${channel}`);
  } finally {
    clearInterval(timer);
  }
}

// Publish `Tick {n}` on `h` every 5 ms, alternating over `channels`; `stop()` returns how many.
function ticking(h, channels) {
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    h.publish(channels[n % channels.length], 'Tick', { n });
  }, 5);
  return { stop() { clearInterval(timer); return n; }, get n() { return n; } };
}

const fast = { transports: ['websocket'], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };

// Events of one socket.io-client socket, in the order the application sees them.
function recorder(socket) {
  const box = inbox();
  socket.onAny((event, ...args) => box.add([event, ...args]));
  return box;
}

// The ticks `got` received per channel, and what they should be: 1..last, each on its channel.
function checkTicks(got, channels, last) {
  const ticks = got.items.filter(([e]) => e === 'Tick').map(([, c, d]) => [c, d.n]);
  const want = Array.from({ length: last }, (_, i) => [channels[(i + 1) % channels.length], i + 1]);
  for (const c of channels) {
    assert.deepEqual(ticks.filter(([x]) => x === c), want.filter(([x]) => x === c), `${c}: each tick once, in order`);
  }
}

// The client is back and recovered: after 20 more ticks, stop, and check it got every tick
// once, in order, up to the end marker.
async function finish(got, ticks, publisher, channels) {
  const back = ticks.n;
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= back + 20, 'ticks after the reconnect');
  const last = ticks.stop();
  publisher.publish(channels[0], 'Done', {});
  await got.waitFor(([e]) => e === 'Done', 'the end marker');
  checkTicks(got, channels, last);
}

// A socket.io-client through `proxy` in `channels`, heard from `publisher`'s node.
async function sioClient(proxy, publisher, channels) {
  const s = io(`http://127.0.0.1:${proxy.port}`, fast);
  const got = recorder(s);
  await once(s, 'connect');
  assert.equal(s.recovered, false);
  for (const c of channels) {
    await subscribe(s, c);
    await probe(publisher, c, got, ([e, ch]) => e === 'Probe' && ch === c);
  }
  return { s, got };
}

// Nodes A and B, a client on A (through a proxy) in `channels`, and B publishing ticks on
// them: once the client has a few.
async function streaming(channels) {
  const [a, b] = [await node(), await node()];
  const proxy = await startCutProxy(a.httpPort);
  started.push({ stop: () => proxy.close() });
  const { s, got } = await sioClient(proxy, b, channels);
  const ticks = ticking(b, channels);
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  return { a, b, proxy, s, got, ticks };
}

// The record of an open socket.io session in Redis holds `channels` (a node writes it within a
// second of a change, for a client to recover on another node should this one die).
async function recordHolds(s, channels) {
  const key = `herald:kept:sio:open:${s._pid}`;
  await until(async () => {
    const record = await redisCli(redis.port, 'GET', key);
    return record && channels.every((c) => record.includes(`"${c}"`));
  }, `the open session's record in Redis to hold ${channels}`);
}

// Move the client from node `from` to node `to`: `leave(from)` ends its connection there
// (a cut, a SIGKILL), the proxy sends it to `to`; it must come back recovered and get every
// tick once, in order.
async function sioMoves({ from, to, channels, quiet = [], silent = [], leave }) {
  const proxy = await startCutProxy(from.httpPort);
  started.push({ stop: () => proxy.close() });
  const { s, got } = await sioClient(proxy, to, [...channels, ...quiet]);
  for (const c of silent) await subscribe(s, c);
  await recordHolds(s, [...channels, ...quiet, ...silent]);
  const ticks = ticking(to, channels);
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  const reconnected = once(s, 'connect');
  proxy.target = to.httpPort;
  await leave(proxy);
  await reconnected;
  assert.equal(s.recovered, true, 'socket.recovered on the other node');
  await finish(got, ticks, to, channels);
  assert.equal(await metric(to, 'herald_socketio_recovered_total'), 1);
  s.disconnect();
}

// pusher-js with the recovery snippet through `proxy`, in `channels` (public, private and
// presence ones signed by the SDK), heard from `publisher`'s node: its messages in order, as
// [event, channel, data], and what the snippet reports.
async function pusherResumer(proxy, publisher, channels) {
  const client = pusherClient(publisher, { wsPort: proxy.port });
  const got = inbox();
  client.connection.bind('message', (m) => got.add([m.event, m.channel, m.data]));
  const [resumed, failed] = [inbox(), inbox()];
  enableRecovery(client, {
    onResumed: (channel, replayed) => resumed.add({ channel, replayed }),
    onResumeFailed: (channel, reason) => failed.add({ channel, reason }),
  });
  await connected(client);
  for (const c of channels) {
    await subscribed(client, c);
    await probe(publisher, c, got, ([e, ch]) => e === 'Probe' && ch === c);
  }
  return { client, got, resumed, failed };
}

// The record of an open Pusher connection in Redis holds `channels` (its node writes it within
// a second of a change, for its client to resume on another node should this one die).
async function pusherRecordHolds(client, channels) {
  const key = `herald:kept:pusher:open:herald:${client.connection.socket_id}`;
  await until(async () => {
    const record = await redisCli(redis.port, 'GET', key);
    return record && channels.every((c) => record.includes(`"${c}"`));
  }, `the open connection's record in Redis to hold ${channels}`);
}

// Move a Pusher client from node `from` to node `to` (or back to `from`): `leave(proxy)` ends
// its connection (a cut, a SIGKILL) and the proxy sends it on; every channel must be resumed,
// with every tick once, in order.
async function pusherMoves({ from, to, back = to, channels, leave }) {
  const proxy = await startCutProxy(from.httpPort);
  started.push({ stop: () => proxy.close() });
  const { client, got, resumed, failed } = await pusherResumer(proxy, to, channels);
  await pusherRecordHolds(client, channels);
  const ticks = ticking(to, channels);
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  const first = client.connection.socket_id;
  proxy.target = back.httpPort;
  await leave(proxy, ticks);
  await resumed.count(channels.length, 'herald:resumed on every channel');
  await finish(got, ticks, to, channels);
  assert.deepEqual(failed.items, [], 'no channel refused');
  assert.notEqual(client.connection.socket_id, first);
  assert.equal(await metric(back, 'herald_pusher_resumed_total'), channels.length);
  client.disconnect();
}

// How many publications of `channel` Redis has numbered in its current epoch (0: none).
async function numbered(channel) {
  const [key] = (await redisCli(redis.port, 'KEYS', `herald:epoch:*${channel}`)).split('\n').filter(Boolean);
  return key ? Number(await redisCli(redis.port, 'HGET', key, 's')) : 0;
}

// A `leave` for pusherMoves: cut the client off and hold it away until `n` more ticks were
// published, then let it back.
const awayFor = (n) => async (proxy, ticks) => {
  proxy.cut({ hold: true });
  const away = ticks.n;
  await until(async () => ticks.n >= away + n, 'ticks published while the client is away');
  proxy.release();
};

const pusherChannels = (n) => [`orders.p${n}`, `private-orders.p${n}`, `presence-orders.p${n}`];

test('Pusher: cut from its node, back on another, resumed from Redis: every event once, in order', async () => {
  const [a, b] = [await node(), await node()];
  await pusherMoves({ from: a, to: b, channels: pusherChannels(1), leave: (proxy) => proxy.cut() });
  await a.stop();
  await b.stop();
});

test('Pusher: its node SIGKILLed mid-stream, back on another, resumed from its open record', async () => {
  const [a, b] = [await node(), await node()];
  await pusherMoves({ from: a, to: b, channels: pusherChannels(2), leave: () => a.kill() });
  await b.stop();
});

test('Pusher: cut, back on its own node while another published: resumed whole', async () => {
  // Away, its node has nobody on the channels and stops hearing them from Redis: what the
  // other node published meanwhile is read from the cluster's history.
  const [a, b] = [await node(), await node()];
  await pusherMoves({
    from: a,
    to: b,
    back: a,
    channels: pusherChannels(3),
    leave: awayFor(60),
  });
  await a.stop();
  await b.stop();
});

test('Pusher: back on its own node, where a RESP pattern brings its channels: resumed without waiting for a join', async () => {
  // A resumed subscription waits until its node's join of the channel stood; a channel a
  // pattern brings has no join taken, so it must not wait for one (else: too_old at the wait's
  // 5-s deadline, logged).
  const [a, b] = [await node(), await node()];
  const sub = await redisCliSubscriber(a.redisPort, 'PSUBSCRIBE', ['*'], () => {});
  started.push({ stop: () => sub.close() });
  await pusherMoves({
    from: a,
    to: b,
    back: a,
    channels: pusherChannels(11),
    leave: awayFor(30),
  });
  assert.deepEqual(a.logs.filter((l) => l.includes('past its deadline')), [], 'no subscription waited out its deadline');
  await a.stop();
  await b.stop();
});

test("Pusher: back on its own node while its subscriber connections cannot reach Redis: the resume waits until the channels' streams stand, then replays whole", async () => {
  // Away, its node stopped hearing the channels; it hears them again only once a subscriber
  // connection is back, and then their streams move on to where the history stood. A resume
  // answered before that would start where the streams stood before: what came between
  // would be neither replayed nor delivered. The node's catch-up then hands out publications
  // as the subscription is made: one handed out between reading where the stream stands and
  // joining must be where the subscription starts (lost once under CI's load when it was not).
  const [a, b] = [await node(), await node()];
  const channels = ['orders.p12', 'private-orders.p12'];
  const proxy = await startCutProxy(a.httpPort);
  started.push({ stop: () => proxy.close() });
  const { client, got, resumed, failed } = await pusherResumer(proxy, b, channels);
  const ticks = ticking(b, channels);
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  proxy.cut({ hold: true });
  const away = ticks.n;
  await until(async () => ticks.n >= away + 30, 'ticks published while the client is away');
  const open = [];
  await redisOutage(redis.port, open, async () => {
    proxy.release();
    await until(async () => await metric(a, 'herald_ws_connections') === 1, 'the client back on node A');
  });
  for (const c of open) c.close();
  await resumed.count(channels.length, 'herald:resumed on every channel');
  await finish(got, ticks, b, channels);
  assert.deepEqual(failed.items, [], 'no channel refused');
  client.disconnect();
  await a.stop();
  await b.stop();
});

// Nodes A and B (with `args`), a pusher-js client with the recovery snippet on A (through a
// proxy) subscribed to `channel` before anything was published on it, then cut off and held.
async function awayBeforeFirst(channel, args = []) {
  const [a, b] = [await node(args), await node(args)];
  const proxy = await startCutProxy(a.httpPort);
  started.push({ stop: () => proxy.close() });
  const resumer = await pusherResumer(proxy, b, []);
  await subscribed(resumer.client, channel);
  proxy.cut({ hold: true });
  return { a, b, proxy, ...resumer };
}

test('Pusher: subscribed before its channel was first published on, away while Redis lost its data: told too_old, not given the new history as all it missed', async () => {
  const channel = 'orders.p9';
  const { a, b, proxy, client, got, resumed, failed } = await awayBeforeFirst(channel);
  // The channel's first epoch, lost with Redis's data while the client is away; then another.
  const ticks = ticking(b, [channel]);
  await until(async () => await numbered(channel) >= 5, "the channel's first publications numbered in Redis");
  await redis.crash();
  await redis.start();
  for (const h of [a, b]) await until(async () => await metric(h, 'herald_cluster_up') === 1, 'the backplane back');
  await until(async () => await numbered(channel) >= 5, "the channel's history begun again");
  proxy.release();
  await failed.waitFor(({ channel: c }) => c === channel, 'the resume answered');
  assert.deepEqual(failed.items, [{ channel, reason: 'too_old' }]);
  assert.deepEqual(resumed.items, []);
  // Subscribed as usual: live again.
  const back = ticks.n;
  await got.waitFor(([e, c, d]) => e === 'Tick' && c === channel && d.n > back, 'live ticks');
  ticks.stop();
  client.disconnect();
  await a.stop();
  await b.stop();
});

test("Pusher: subscribed before its channel was first published on, away while that history lapsed and began again: told too_old", async () => {
  // The history lasts a second past its last publication; the channel's epoch outlives it by
  // the recovery window, so the history that begins again is not taken for the first.
  const args = ['--history-ttl-seconds', '1', '--recovery-window', '60'];
  const channel = 'orders.p10';
  const { a, b, proxy, client, got, resumed, failed } = await awayBeforeFirst(channel, args);
  proxy.target = b.httpPort;
  for (let n = 1; n <= 3; n += 1) b.publish(channel, 'Tick', { n });
  await until(async () => await numbered(channel) === 3, "the channel's first publications numbered in Redis");
  await until(async () => await redisCli(redis.port, 'KEYS', `herald:history:*${channel}`) === '', 'its history lapsed');
  for (let n = 4; n <= 6; n += 1) b.publish(channel, 'Tick', { n });
  await until(async () => await numbered(channel) >= 4, 'the channel published on again');
  proxy.release();
  await failed.waitFor(({ channel: c }) => c === channel, 'the resume answered');
  assert.deepEqual(failed.items, [{ channel, reason: 'too_old' }]);
  assert.deepEqual(resumed.items, []);
  b.publish(channel, 'Done', {});
  await got.waitFor(([e]) => e === 'Done', 'the end marker, live');
  assert.deepEqual(got.items.filter(([e]) => e === 'Tick'), [], 'no tick given as if it were all it missed');
  client.disconnect();
  await a.stop();
  await b.stop();
});

test('socket.io: cut from its node, back on another, recovered from Redis: every event once, in order', async () => {
  const [a, b] = [await node(), await node()];
  // A silent channel beside: nothing was ever published there.
  await sioMoves({ from: a, to: b, channels: ['orders.1', 'orders.2'], silent: ['silent.1'], leave: (proxy) => proxy.cut() });
  await a.stop();
  await b.stop();
});

test('socket.io: cut, back on its own node while another published: recovered whole from Redis', async () => {
  // While the client is away its node has nobody on the channel and stops hearing it from
  // Redis; its own history of the channel then lacks what the other node published.
  const channels = ['orders.6'];
  const { a, b, proxy, s, got, ticks } = await streaming(channels);
  const reconnected = once(s, 'connect');
  proxy.cut({ hold: true });
  const away = ticks.n;
  await until(async () => ticks.n >= away + 100, 'ticks published while the client is away');
  proxy.release();
  await reconnected;
  assert.equal(s.recovered, true, 'socket.recovered');
  await finish(got, ticks, b, channels);
  s.disconnect();
  await a.stop();
  await b.stop();
});

test('socket.io: its node SIGKILLed mid-stream, back on another, recovered: every event once, in order', async () => {
  const [a, b] = [await node(), await node()];
  // A quiet channel beside the busy one: nothing published there since it joined, so where
  // the client stands there is known without its node.
  await sioMoves({
    from: a, to: b, channels: ['orders.3'], quiet: ['quiet.3'], silent: ['silent.3'], leave: () => a.kill(),
  });
  await b.stop();
});

for (const [where, back] of [['another node', (a, b) => b], ['its own node', (a) => a]]) {
  test(`socket.io: away when its channel was first published on (a QR login confirmed), back on ${where}: recovered with it`, async () => {
    const [a, b] = [await node(), await node()];
    const channel = `login.qr.${where.replace(/ /g, "-")}`;
    const proxy = await startCutProxy(a.httpPort);
    started.push({ stop: () => proxy.close() });
    const s = io(`http://127.0.0.1:${proxy.port}`, fast);
    const got = recorder(s);
    await once(s, 'connect');
    await subscribe(s, channel);
    await recordHolds(s, [channel]);
    const reconnected = once(s, 'connect');
    proxy.cut({ hold: true });
    proxy.target = back(a, b).httpPort;
    b.publish(channel, 'LoginConfirmed', { user: 7 });
    await until(async () => await numbered(channel) === 1, "the channel's first publication numbered in Redis");
    proxy.release();
    await reconnected;
    assert.equal(s.recovered, true, 'socket.recovered');
    b.publish(channel, 'Done', {});
    await got.waitFor(([e]) => e === 'Done', 'the end marker');
    assert.deepEqual(got.items.filter(([e]) => e === 'LoginConfirmed').map(([e, c, d]) => [e, c, d.user]),
      [['LoginConfirmed', channel, 7]], 'the login, once');
    s.disconnect();
    await a.stop();
    await b.stop();
  });
}

test('socket.io: its node SIGKILLed while two of its channels publish: not recovered, said so', async () => {
  // The client reports one offset; without its node's record of what it was sent, where it
  // stands on the other busy channel is unknown: a new session, never a guess.
  const channels = ['orders.4', 'orders.5'];
  const { a, b, proxy, s, ticks } = await streaming(channels);
  await recordHolds(s, channels);
  const reconnected = once(s, 'connect');
  proxy.target = b.httpPort;
  await a.kill();
  await reconnected;
  ticks.stop();
  assert.equal(s.recovered, false, 'a new session');
  const refused = /^herald_socketio_recoveries_refused_total\{reason="too_old"\} (\d+)$/m;
  assert.equal(Number(refused.exec(await (await fetch(`${b.url}/metrics`)).text())[1]), 1);
  s.disconnect();
  await b.stop();
});

test('redis-server restarted mid-stream: delivery resumes; a gap history covers is recovered, one it lost is told', async () => {
  const [a, b] = [await node(), await node()];
  const channel = 'orders.7';
  const [p1, p2] = [await startCutProxy(a.httpPort), await startCutProxy(a.httpPort)];
  started.push({ stop: () => p1.close() }, { stop: () => p2.close() });
  const one = await sioClient(p1, b, [channel]);
  const two = await sioClient(p2, b, [channel]);
  const ticks = ticking(b, [channel]);
  const epoch = (item) => item.at(-1).split('-')[0];
  await one.got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  const before = epoch(one.got.items.find(([e]) => e === 'Tick'));

  // Redis dies (without persistence: the history goes with it) while `two` is away.
  const twoBack = once(two.s, 'connect');
  await redis.crash();
  p2.cut({ hold: true });
  await redis.start();
  for (const h of [a, b]) await until(async () => await metric(h, 'herald_cluster_up') === 1, 'the backplane back');
  // What B published while it could not reach Redis reached only B's clients; from here on
  // every tick goes through Redis.
  const from = ticks.n + 1;
  await one.got.waitFor(([e, , d, o]) => e === 'Tick' && d.n >= from && o.split('-')[0] !== before,
    'ticks numbered in a new epoch: delivery resumed');

  // `two` stood in the lost history: told it is not recovered.
  p2.release();
  await twoBack;
  assert.equal(two.s.recovered, false, 'its offset is of the history Redis lost');

  // `one` is cut within the new history: recovered, every tick since once.
  const oneBack = once(one.s, 'connect');
  p1.cut({ hold: true });
  const away = ticks.n;
  await until(async () => ticks.n >= away + 50, 'ticks published while it is away');
  p1.release();
  await oneBack;
  assert.equal(one.s.recovered, true, 'its offset is in the new history');
  const last = ticks.stop();
  b.publish(channel, 'Done', {});
  await one.got.waitFor(([e]) => e === 'Done', 'the end marker');
  const got = one.got.items.filter(([e]) => e === 'Tick').map(([, , d]) => d.n);
  assert.deepEqual(got.filter((n) => n >= from), Array.from({ length: last - from + 1 }, (_, i) => from + i),
    'every tick of the new history once, in order');
  assert.ok(got.every((n, i) => i === 0 || n > got[i - 1]), 'never a duplicate, never out of order');
  one.s.disconnect();
  two.s.disconnect();
  await a.stop();
  await b.stop();
});

test('redis-server back from an older snapshot: what it numbers afterwards is delivered, in a new epoch, not dropped as a copy of what the nodes had', async () => {
  // Redis restarted with the data of its last snapshot (its default persistence): its
  // history and its numbers stand where they were then, behind the nodes'. Numbering on
  // would give new publications offsets the nodes delivered already.
  const [a, b] = [await node(), await node()];
  const channel = 'orders.13';
  const proxy = await startCutProxy(a.httpPort);
  started.push({ stop: () => proxy.close() });
  const { s, got } = await sioClient(proxy, b, [channel]);
  const tick = (n) => ([e, , d]) => e === 'Tick' && d.n === n;
  const epoch = (n) => got.items.find(tick(n)).at(-1).split('-')[0];
  const publish = (from, to) => { for (let n = from; n <= to; n++) b.publish(channel, 'Tick', { n }); };
  publish(1, 10);
  await got.waitFor(tick(10), 'the ticks before the snapshot');
  assert.equal(await redisCli(redis.port, 'SAVE'), 'OK');
  const dump = path.join((await redisCli(redis.port, 'CONFIG', 'GET', 'dir')).split('\n')[1], 'dump.rdb');
  try {
    publish(11, 20);
    await got.waitFor(tick(20), 'the ticks after it');
    await redis.restart();
    // Back, and node A subscribed to the channel again (it holds the only subscription).
    await until(async () => (await redisCli(redis.port, 'PUBSUB', 'CHANNELS', `*${channel}`)) !== '',
      "node A's subscription back on Redis");
    publish(21, 30);
    await got.waitFor(tick(30), 'the ticks published after the restart');
  } finally {
    fs.rmSync(dump, { force: true });
  }
  checkTicks(got, [channel], 30);
  assert.notEqual(epoch(21), epoch(20), 'a new epoch');
  assert.equal(epoch(30), epoch(21));
  s.disconnect();
  await a.stop();
  await b.stop();
});

test("a node's subscriber connections killed mid-stream: its connected client misses nothing (the gap is read from history)", async () => {
  const channels = ['orders.8'];
  const { a, b, s, got, ticks } = await streaming(channels);
  // Redis drops every pub/sub connection (as a restart of its connections would); the
  // nodes reconnect with backoff, and ticks published meanwhile never reach node A live.
  await redisCli(redis.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
  await until(async () => await metric(a, 'herald_cluster_outages_total') > 0, 'node A to see its loss');
  await until(async () => await metric(a, 'herald_cluster_up') === 1, 'node A back on the backplane');
  await finish(got, ticks, b, channels);
  assert.equal(s.recovered, false, 'never reconnected: the gap was filled live');
  assert.ok(await metric(a, 'herald_cluster_gap_filled_total') > 0, 'filled from the history');
  s.disconnect();
  await a.stop();
  await b.stop();
});

test("the HTTP API's history read on one node answers from the cluster's history", async () => {
  // Nobody is subscribed anywhere: node A never heard the channel, Redis kept it.
  const [a, b] = [await node(), await node()];
  const read = async (h, params) => (await sdk(h).get({ path: '/channels/orders.h/events', params })).json();
  const { position: start } = await read(a, {});
  for (let n = 1; n <= 3; n++) await sdk(b).trigger('orders.h', 'Paid', { n });
  // A trigger is answered once queued for Redis, not once numbered there.
  let position = null;
  await until(async () => {
    ({ position } = await read(b, {}));
    return position?.endsWith('-3');
  }, 'the three numbered');
  const epoch = position.split('-')[0];
  assert.equal(start, null, 'no history before the first publication');
  const got = await read(a, { after: `${epoch}-0` });
  assert.deepEqual(got.events.map((e) => [e.offset, e.data]),
    [1, 2, 3].map((n) => [`${epoch}-${n}`, `{"n":${n}}`]));
  assert.equal(got.position, `${epoch}-3`);
  await a.stop();
  await b.stop();
});

test('subscriber connections killed while both nodes publish: clients of both get every tick once, in one order', async () => {
  // While its subscriber connection is down a node delivers its own publications itself,
  // with Redis's offsets: what it missed of the other node's comes first, from the history.
  const [a, b] = [await node(), await node()];
  const channel = 'orders.9';
  const clients = [];
  for (const [h, other] of [[a, b], [b, a]]) {
    const s = io(h.url, fast);
    const got = recorder(s);
    await once(s, 'connect');
    await subscribe(s, channel);
    await probe(other, channel, got, ([e]) => e === 'Probe');
    clients.push({ s, got });
  }
  let n = 0;
  const timer = setInterval(() => { n += 1; (n % 2 ? a : b).publish(channel, 'Tick', { n }); }, 5);
  await clients[0].got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 10, 'a few live ticks');
  await redisCli(redis.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
  for (const h of [a, b]) {
    await until(async () => await metric(h, 'herald_cluster_outages_total') > 0, 'the loss seen');
    await until(async () => await metric(h, 'herald_cluster_up') === 1, 'the backplane back');
  }
  const back = n;
  await clients[0].got.waitFor(([e, , d]) => e === 'Tick' && d.n >= back + 20, 'ticks after');
  clearInterval(timer);
  const last = n;
  a.publish(channel, 'Done', {});
  const orders = [];
  for (const { s, got } of clients) {
    await got.waitFor(([e]) => e === 'Done', 'the end marker');
    orders.push(got.items.filter(([e]) => e === 'Tick').map(([, , d]) => d.n));
    s.disconnect();
  }
  const all = Array.from({ length: last }, (_, i) => i + 1);
  for (const order of orders) assert.deepEqual([...order].sort((x, y) => x - y), all, 'every tick once');
  assert.deepEqual(orders[0], orders[1], 'one order on both nodes');
  await a.stop();
  await b.stop();
});
