// socket.io connection state recovery (socket.io-client >= 4.6) against herald: the client's TCP
// connection is cut (never a clean disconnect()) while events are published; it reconnects and
// must get every event exactly once, in order, `socket.recovered === true`, its rooms and its
// presence intact without a new auth request. Raw socket.io-client 4.8, Laravel Echo 2.5 (which
// re-subscribes after a reconnect: a no-op) and Echo 2.1.5 (which never re-subscribes: herald's
// restored rooms carry it). Beyond the window and beyond the history: a new session, said so.
// The CONNECT reply with its pid and a replayed packet are compared byte for byte.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import Echo from 'laravel-echo';
import Echo215 from 'laravel-echo-2.1.5';
import { startHerald, laravelPayload, once, sleep } from './lib/herald.mjs';
import { inbox, until, within, subscribe, ackSubscribes, acked } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { startCutProxy } from './lib/cut-proxy.mjs';

let app;
const heralds = [];
before(async () => { app = await startAuthApp(); });
after(async () => {
  for (const h of heralds) await h.stop();
  await app.close();
});

async function herald(args = []) {
  const h = await startHerald(['--auth-endpoint', app.endpoint, ...args]);
  heralds.push(h);
  // One RESP connection publishing in order, as the Laravel app's redis connection does.
  const conn = net.connect(h.redisPort, '127.0.0.1');
  await once(conn, 'connect');
  conn.on('data', () => {});
  h.publish = (channel, event, data, socket = null) => {
    const args = ['PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socket)];
    conn.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  };
  const stop = h.stop.bind(h);
  h.stop = async () => { conn.destroy(); return stop(); };
  return h;
}

async function metrics(h) {
  return (await fetch(`${h.url}/metrics`)).text();
}
const refused = async (h, reason) => Number(new RegExp(
  `^herald_socketio_recoveries_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics(h))[1]);
const counter = async (h, name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await metrics(h))[1]);

// Cut the client's TCP connection under it: the server sees a transport close, the client a
// transport close too (not `io client disconnect`), as when a phone changes networks.
function cut(socket) {
  socket.io.engine.transport.ws._socket.destroy();
}

const fast = { transports: ['websocket'], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };

// Events of one socket.io-client socket, in the order the application sees them.
function recorder(socket) {
  const box = inbox();
  socket.onAny((event, ...args) => box.add([event, ...args]));
  return box;
}

test('raw socket.io-client 4.8: cut while publishing, recovered, every event once and in order', async () => {
  const h = await herald();
  const s = io(h.url, fast);
  const got = recorder(s);
  await once(s, 'connect');
  assert.equal(s.recovered, false);
  await subscribe(s, 'orders.1');
  await subscribe(s, 'orders.2');
  // Publish steadily on two channels while the connection is cut and comes back.
  let n = 0;
  const publishing = setInterval(() => {
    n += 1;
    h.publish(n % 3 ? 'orders.1' : 'orders.2', 'Tick', { n });
  }, 5);
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 5, 'a few live ticks');
  const reconnected = once(s, 'connect');
  cut(s);
  await reconnected;
  assert.equal(s.recovered, true, 'socket.recovered');
  await got.waitFor(([e, , d]) => e === 'Tick' && d.n >= 60, 'ticks after the reconnect');
  clearInterval(publishing);
  const last = n;
  h.publish('orders.1', 'Done', {});
  await got.waitFor(([e]) => e === 'Done', 'the end marker');
  const ticks = got.items.filter(([e]) => e === 'Tick').map(([, c, d]) => [c, d.n]);
  const want = Array.from({ length: last }, (_, i) => [(i + 1) % 3 ? 'orders.1' : 'orders.2', i + 1]);
  // One order per channel (herald orders each channel's publications, as Redis does).
  for (const c of ['orders.1', 'orders.2']) {
    assert.deepEqual(ticks.filter(([x]) => x === c), want.filter(([x]) => x === c), `${c}: each tick once, in order`);
  }
  // The offset is the event's last argument, the channel's `<epoch hex>-<seq>`.
  assert.match(got.items.find(([e]) => e === 'Tick').at(-1), /^[0-9a-f]+-\d+$/);
  assert.equal(await counter(h, 'herald_socketio_recovered_total'), 1);
  assert.ok(await counter(h, 'herald_socketio_replayed_total') > 0, 'events were replayed');
  s.disconnect();
});

// A phone that changed networks: herald is told nothing and still holds the old connection
// (the proxy resets only the client's side) when the client is back with its pid. The reference
// server starts a new session here; herald closes the old connection and recovers it.
test('back while herald still holds the old connection: taken over and recovered', async () => {
  const h = await herald();
  const proxy = await startCutProxy(h.httpPort);
  const s = io(`http://127.0.0.1:${proxy.port}`, fast);
  try {
    const got = recorder(s);
    await once(s, 'connect');
    const sid = s.id;
    await subscribe(s, 'orders.7');
    h.publish('orders.7', 'Tick', { n: 1 });
    await got.waitFor(([e, , d]) => e === 'Tick' && d.n === 1, 'the first tick');
    proxy.cut({ hold: true, silent: true });
    await until(() => !s.connected, 'the client to see its connection gone');
    // Written to the old connection, which herald still holds: the client never gets them.
    for (let n = 2; n <= 4; n++) h.publish('orders.7', 'Tick', { n });
    assert.equal(await counter(h, 'herald_socketio_recovery_sessions'), 0, 'nothing kept yet: the old connection is open');
    const reconnected = once(s, 'connect');
    proxy.release();
    await reconnected;
    assert.equal(s.recovered, true, 'socket.recovered');
    assert.equal(s.id, sid);
    h.publish('orders.7', 'Tick', { n: 5 });
    await got.waitFor(([e, , d]) => e === 'Tick' && d.n === 5, 'a live tick after the recovery');
    assert.deepEqual(got.items.filter(([e]) => e === 'Tick').map(([, , d]) => d.n), [1, 2, 3, 4, 5]);
    assert.equal(await counter(h, 'herald_socketio_recovery_taken_over_total'), 1);
    assert.equal(await counter(h, 'herald_socketio_recovered_total'), 1);
  } finally {
    s.disconnect();
    await proxy.close();
  }
});

// Engine.IO v4 by hand over `ws`, to compare bytes.
async function rawSocket(h) {
  const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/socket.io/?EIO=4&transport=websocket`);
  const box = inbox();
  ws.on('message', (m) => {
    const t = m.toString();
    if (t === '2') ws.send('3'); else box.add(t);
  });
  await once(ws, 'open');
  await box.waitFor((t) => t.startsWith('0{'), 'the open packet');
  return { ws, box };
}

test('the CONNECT reply carries a pid; a replayed packet and the recovered CONNECT, byte for byte', async () => {
  const h = await herald();
  const a = await rawSocket(h);
  a.ws.send('40');
  const connect = await a.box.waitFor((t) => t.startsWith('40'), 'the CONNECT reply');
  const m = /^40\{"sid":"([\w-]{20})","pid":"([\w-]{20})"\}$/.exec(connect);
  assert.ok(m, connect);
  const [, sid, pid] = m;
  const mark = await a.box.waitFor((t) => t.startsWith('42["herald:offset"'), 'the offset mark');
  assert.match(mark, /^42\["herald:offset","[0-9a-f]+-0"\]$/);
  a.ws.send('421["subscribe",{"channel":"orders.9"}]');
  await a.box.waitFor((t) => t === '431[]', 'the subscribe ack');
  h.publish('orders.9', 'App\\Events\\Paid', { n: 1 });
  const live = await a.box.waitFor((t) => t.includes('"n":1'), 'the live event');
  const [, epoch] = /^42\["App\\\\Events\\\\Paid","orders.9",\{"n":1,"socket":null\},"([0-9a-f]+)-1"\]$/.exec(live) || [];
  assert.ok(epoch, live);
  const closed = once(a.ws, 'close');
  a.ws.terminate();
  await closed;
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions') === 1, 'the session to be kept');
  h.publish('orders.9', 'App\\Events\\Paid', { n: 2 });
  const b = await rawSocket(h);
  b.ws.send(`40{"pid":"${pid}","offset":"${epoch}-1"}`);
  const [, replayed, reply] = await b.box.count(3, 'the open packet, the replay and the CONNECT reply');
  assert.equal(replayed, `42["App\\\\Events\\\\Paid","orders.9",{"n":2,"socket":null},"${epoch}-2"]`);
  assert.equal(reply, `40{"sid":"${sid}","pid":"${pid}"}`);
  // The rooms came back without a subscribe: live events flow.
  h.publish('orders.9', 'App\\Events\\Paid', { n: 3 });
  assert.equal(await b.box.waitFor((t) => t.includes('"n":3')),
    `42["App\\\\Events\\\\Paid","orders.9",{"n":3,"socket":null},"${epoch}-3"]`);
  b.ws.close();
});

// Echo "tabs" that reconnect quickly.
async function tab(h, EchoClass, user) {
  const echo = new EchoClass({
    broadcaster: 'socket.io', host: h.url, client: io, ...fast,
    auth: { headers: { Authorization: `Bearer ${user}` } },
  });
  ackSubscribes(echo.connector.socket);
  if (!echo.connector.socket.connected) await once(echo.connector.socket, 'connect');
  return echo;
}

const authRequests = (user) => app.requests.filter((r) => r.headers.authorization === `Bearer ${user}`).length;

for (const [name, EchoClass] of [['Echo 2.5.0', Echo], ['Echo 2.1.5', Echo215]]) {
  test(`${name}: private and presence channels survive a cut without new auth or presence noise`, async () => {
    const h = await herald();
    const room = `presence-room.rec${EchoClass === Echo ? 'a' : 'b'}`;
    const chat = `chat.rec${EchoClass === Echo ? 'a' : 'b'}`;
    const a = await tab(h, EchoClass, 1);
    const b = await tab(h, EchoClass, 2);
    const seenByA = inbox(), seenByB = inbox();
    a.join(room.slice('presence-'.length)).here((m) => seenByA.add(['here', m.length]))
      .joining((m) => seenByA.add(['joining', m.id])).leaving((m) => seenByA.add(['leaving', m.id]));
    a.private(chat).listen('.Paid', (d) => seenByA.add(['paid', d.n]));
    await Promise.all([acked(a.connector.socket, room), acked(a.connector.socket, `private-${chat}`)]);
    b.join(room.slice('presence-'.length)).here((m) => seenByB.add(['here', m.length]))
      .joining((m) => seenByB.add(['joining', m.id])).leaving((m) => seenByB.add(['leaving', m.id]))
      .listen('.Marker', () => seenByB.add('marker'));
    await acked(b.connector.socket, room);
    await seenByA.waitFor(([e, id]) => e === 'joining' && id === 2, 'A to see B join');
    const auths = authRequests(1);
    h.publish(`private-${chat}`, 'Paid', { n: 1 });
    await seenByA.waitFor(([e, n]) => e === 'paid' && n === 1);
    const socket = a.connector.socket;
    const mine = a.socketId();
    // A whisper of A's own, and a broadcast toOthers() of A's: never for A, live or replayed.
    a.private(chat).whisper('typing', { n: 'whisper' });
    a.private(chat).listenForWhisper('typing', (d) => seenByA.add(['whisper', d.n]));
    const reconnected = once(socket, 'connect');
    cut(socket);
    for (let n = 2; n <= 6; n++) {
      h.publish(`private-${chat}`, 'Paid', { n });
      if (n === 4) h.publish(`private-${chat}`, 'Paid', { n: 'toOthers' }, mine);
    }
    await reconnected;
    assert.equal(socket.recovered, true, 'socket.recovered');
    h.publish(`private-${chat}`, 'Paid', { n: 7 });
    await seenByA.waitFor(([e, n]) => e === 'paid' && n === 7, 'the event after the reconnect');
    // Echo 2.5 re-subscribes now; herald's ack says it handled it (a no-op).
    if (EchoClass === Echo) await acked(socket, room);
    h.publish(room, 'Marker', {});
    const beforeMarker = await seenByB.before((x) => x === 'marker', 'the marker');
    assert.deepEqual(beforeMarker, [['here', 2]], 'B saw A neither leave nor join again');
    assert.deepEqual(seenByA.items.filter(([e]) => e === 'paid' || e === 'whisper').map(([, n]) => n),
      [1, 2, 3, 4, 5, 6, 7], 'each once, in order, without what A was left out of');
    assert.equal(socket.id, mine, 'the recovered socket keeps its id');
    assert.equal(seenByA.items.filter(([e]) => e === 'here').length, 1, 'no second presence:subscribed');
    assert.equal(authRequests(1), auths, 'no new auth request');
    a.disconnect();
    b.disconnect();
  });
}

test('beyond the window: not recovered, said so; presence:leaving once the window is over', async () => {
  const h = await herald(['--recovery-window', '1']);
  const a = io(h.url, { ...fast, reconnection: false, auth: { headers: { Authorization: 'Bearer 1' } } });
  const b = io(h.url, { ...fast, auth: { headers: { Authorization: 'Bearer 2' } } });
  const seenByB = recorder(b);
  await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  await subscribe(a, 'presence-room.win', { auth: { headers: { Authorization: 'Bearer 1' } } });
  await subscribe(b, 'presence-room.win', { auth: { headers: { Authorization: 'Bearer 2' } } });
  const dropped = once(a, 'disconnect');
  cut(a);
  assert.equal((await dropped)[0], 'transport close');
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions') === 1, 'the session to be kept');
  // Time is the subject: A stays a member for the window, then leaves.
  const leaving = await seenByB.waitFor(([e]) => e === 'presence:leaving', 'presence:leaving after the window', 10000);
  assert.equal(leaving[2].user_id, 1);
  a.connect();
  await once(a, 'connect');
  assert.equal(a.recovered, false);
  assert.equal(await refused(h, 'window_over'), 1);
  assert.ok(h.logs.some((l) => l.includes('not recovered') && l.includes('WindowOver')), 'logged');
  a.disconnect();
  b.disconnect();
});

test('beyond the history: not recovered, said so, never a partial replay', async () => {
  const h = await herald(['--history-size', '2']);
  const a = io(h.url, { ...fast, reconnection: false });
  const got = recorder(a);
  await once(a, 'connect');
  await subscribe(a, 'orders.h');
  h.publish('orders.h', 'Tick', { n: 1 });
  await got.waitFor(([e]) => e === 'Tick');
  cut(a);
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions') === 1, 'the session to be kept');
  for (let n = 2; n <= 6; n++) h.publish('orders.h', 'Tick', { n });
  const before = got.items.length;
  a.connect();
  await once(a, 'connect');
  assert.equal(a.recovered, false);
  assert.equal(await refused(h, 'too_old'), 1);
  // A new session: not in orders.h any more, nothing of the gap.
  const mark = await got.waitFor(([e], i) => e === 'herald:offset' && i >= before, 'the new offset mark');
  assert.ok(mark);
  assert.deepEqual(got.items.slice(before).filter(([e]) => e === 'Tick'), []);
  assert.ok(h.logs.some((l) => l.includes('not recovered') && l.includes('TooOld')), 'logged');
  a.disconnect();
});

test('a clean disconnect() ends the session at once; --recovery-window 0: no pid, no offsets', async () => {
  const h = await herald(['--recovery-window', '0']);
  const raw = await rawSocket(h);
  raw.ws.send('40');
  const connect = await raw.box.waitFor((t) => t.startsWith('40'));
  assert.match(connect, /^40\{"sid":"[\w-]{20}"\}$/);
  raw.ws.send('421["subscribe",{"channel":"orders.off"}]');
  await raw.box.waitFor((t) => t === '431[]');
  h.publish('orders.off', 'E', { n: 1 });
  assert.equal(await raw.box.waitFor((t) => t.startsWith('42')), '42["E","orders.off",{"n":1,"socket":null}]');
  raw.ws.close();

  const h2 = await herald();
  const s = io(h2.url, { ...fast });
  await once(s, 'connect');
  s.disconnect();
  await sleep(0);
  await until(async () => await counter(h2, 'herald_ws_connections') === 0, 'the close');
  assert.equal(await counter(h2, 'herald_socketio_recovery_sessions'), 0, 'nothing kept after disconnect()');
  await within(Promise.resolve(), 'nothing');
});

test('--recovery-trail: an offset older than the connection remembers is too old', async () => {
  const h = await herald(['--recovery-trail', '2']);
  const a = await rawSocket(h);
  a.ws.send('40');
  const [, pid] = /"pid":"([\w-]+)"/.exec(await a.box.waitFor((t) => t.startsWith('40')));
  a.ws.send('421["subscribe",{"channel":"orders.t"}]');
  await a.box.waitFor((t) => t === '431[]');
  for (let n = 1; n <= 3; n++) h.publish('orders.t', 'E', { n });
  await a.box.waitFor((t) => t.includes('"n":3'));
  const first = /"([0-9a-f]+-1)"\]$/.exec(a.box.items.find((t) => t.includes('"n":1')))[1];
  const closed = once(a.ws, 'close');
  a.ws.terminate();
  await closed;
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions') === 1, 'the session to be kept');
  const b = await rawSocket(h);
  b.ws.send(`40{"pid":"${pid}","offset":"${first}"}`);
  const reply = await b.box.waitFor((t) => t.startsWith('40'));
  assert.doesNotMatch(reply, new RegExp(pid), 'a new session');
  assert.equal(await refused(h, 'too_old'), 1);
  b.ws.close();
});

test('--recovery-max-sessions: past it a dropped session ends at once, counted', async () => {
  const h = await herald(['--recovery-max-sessions', '1']);
  const a = io(h.url, { ...fast, reconnection: false });
  const b = io(h.url, { ...fast, reconnection: false });
  await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  cut(a);
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions') === 1, 'the first session kept');
  cut(b);
  await until(async () => await counter(h, 'herald_socketio_recovery_sessions_not_kept_total') === 1, 'the second not kept');
  assert.equal(await counter(h, 'herald_socketio_recovery_sessions'), 1);
  assert.ok(h.logs.some((l) => l.includes('--recovery-max-sessions')), 'logged');
  b.connect();
  await once(b, 'connect');
  assert.equal(b.recovered, false);
  a.connect();
  await once(a, 'connect');
  assert.equal(a.recovered, true);
  a.disconnect();
  b.disconnect();
});
