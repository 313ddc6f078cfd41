// Presence, one table of cases run against both edges with their real clients: Laravel Echo
// on socket.io-client (presence:subscribed / joining / leaving) and pusher-js
// (subscription_succeeded's members, pusher:member_added / member_removed). Both edges keep
// their members in herald's one presence, so both must agree:
//   - two tabs of one user: one join, and the leave only once the second tab has left;
//   - user id 7 and "7" are one user;
//   - a disconnect leaves, whether the client says goodbye or its connection just drops;
//   - a tab that stops reading and is dropped at the outbox hard limit leaves;
//   - the member list a joiner gets is exact.
// Absence is proven with a marker: a broadcast over RESP on the same channel, published after
// herald has handled what must not be announced, reaches every tab after anything announced
// before it.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, laravelPayload, metric } from './lib/herald.mjs';
import { inbox, until, once, ackSubscribes, acked } from './lib/wait.mjs';
import { pusherClient, connected, next, subscribed } from './pusher_fixtures.mjs';

const NAMES = { 1: 'Ann', 2: 'Bob', 3: 'Cy', 7: 'Sev', 9: 'Obs' };

// Laravel's /broadcasting/auth for presence channels, as the fixture app answers it
// (fixtures/laravel-auth.mjs), but with the user id typed as the token says: `Bearer 7` is the
// number 7, `Bearer s7` the string "7" (an app whose user ids are strings, or one that casts).
async function startAuth() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const m = /^Bearer (s?)(\d+)$/.exec(req.headers.authorization || '');
      const channel = new URLSearchParams(body).get('channel_name') || '';
      res.setHeader('content-type', 'application/json');
      if (!m || !channel.startsWith('presence-')) {
        res.statusCode = 403;
        return res.end('{"message":""}');
      }
      const userId = m[1] ? m[2] : Number(m[2]);
      res.end(JSON.stringify({ channel_data: { user_id: userId, user_info: { name: NAMES[m[2]] } } }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}/broadcasting/auth`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

let h, auth, resp;
let open = [];
before(async () => {
  auth = await startAuth();
  // socket.io recovery off: with it on, a socket.io tab that drops uncleanly stays a member
  // until the recovery window ends (socketio_recovery.test.mjs covers that).
  h = await startHerald([
    '--recovery-window', '0',
    '--auth-endpoint', auth.endpoint,
    '--outbox-hard-limit', String(256 * 1024), '--outbox-soft-limit', '0',
    '--write-timeout-ms', '120000',
  ]);
  resp = publisher(h.redisPort);
});
// Each case starts with no connection left by an earlier one.
afterEach(async () => {
  for (const t of open) t.disconnect();
  open = [];
  await until(async () => await metric(h, 'herald_ws_connections') === 0, 'herald to close the tabs of the case');
});
after(async () => {
  resp.close();
  await h.stop();
  await auth.close();
});

// PUBLISH over one RESP connection, as Laravel's redis broadcaster sends it; resolves with the
// reply (the number of receivers).
function publisher(port) {
  const sock = net.connect(port, '127.0.0.1');
  let buf = '';
  const replies = [];
  sock.on('data', (d) => {
    buf += d;
    let i;
    while (replies.length && (i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      replies.shift()(line);
    }
  });
  return {
    publish(channel, event, data) {
      const args = ['PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data)];
      sock.write(`*3\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
      return new Promise((resolve) => replies.push(resolve));
    },
    close: () => sock.end(),
  };
}

// Herald has closed one more connection than when `before` was read.
const closedOne = async (before) => until(async () => await metric(h, 'herald_ws_connections') <= before - 1,
  'herald to see the tab go');

// What a tab sees on one presence channel, the same on both edges:
//   members  [[id, name], …] sorted by id, from the subscription's answer
//   seen     an inbox of ['joining', id, name], ['leaving', id, name], ['marker', n], ['E', n]
// User ids are compared as text: pusher-js has them so (Pusher sends ids as strings).

// An Echo tab on socket.io-client over WebSocket, signed in as `user` (7 or '7').
async function socketioTab(user) {
  const token = typeof user === 'string' ? `s${user}` : String(user);
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false, auth: { headers: { Authorization: `Bearer ${token}` } },
  });
  const socket = ackSubscribes(echo.connector.socket);
  if (!socket.connected) await once(socket, 'connect');
  const tab = {
    // The client's own goodbye: socket.io's DISCONNECT packet, then the close.
    disconnect: () => echo.disconnect(),
    // The tab is gone without a word (a killed browser, a lost network): the TCP
    // connection drops.
    vanish: () => socket.io.engine.transport.ws._socket.destroy(),
    async join(channel) {
      const seen = inbox();
      const member = (m) => [String(m.user_id), m.user_info.name];
      const mine = (handler) => (ch, ...args) => { if (ch === channel) handler(...args); };
      let members;
      socket.on('presence:subscribed', mine((ms) => { members = ms; }));
      socket.on('presence:joining', mine((m) => seen.add(['joining', ...member(m)])));
      socket.on('presence:leaving', mine((m) => seen.add(['leaving', ...member(m)])));
      socket.on('Marker', mine((d) => seen.add(['marker', d.n])));
      socket.on('E', mine((d) => seen.add(['E', d.n])));
      echo.join(channel.replace(/^presence-/, ''));
      await acked(socket, channel);
      assert.ok(members, 'presence:subscribed before the ack');
      // Echo's `here` gets the user_info of each; the user ids are checked on the raw packet.
      return { seen, members: members.map(member).sort(byId), raw: members };
    },
    async leave(channel) {
      echo.leaveChannel(channel);
      await acked(socket, channel, 'unsubscribe');
    },
    stopReading() {
      const transport = socket.io.engine.transport;
      assert.equal(transport.name, 'websocket');
      transport.ws._socket.pause();
    },
  };
  open.push(tab);
  return tab;
}

// A pusher-js client whose channel auth the `pusher` SDK signs, as a Laravel backend does,
// with `user_id` typed as given.
async function pusherTab(user) {
  const c = pusherClient(h, { user: { user_id: user, user_info: { name: NAMES[user] } } });
  await connected(c);
  let after = 0;
  let stopped;
  const tab = {
    // pusher-js's goodbye: a WebSocket close frame. A socket that stopped reading never
    // reads herald's close either: end it here, or it holds the test process for faye's
    // close timeout.
    disconnect: () => {
      c.disconnect();
      if (stopped) stopped.destroy();
    },
    vanish: () => c.connection.connection.transport.socket._stream.destroy(),
    async join(channel) {
      const seen = inbox();
      const ch = c.subscribe(channel);
      ch.bind('pusher:member_added', (m) => seen.add(['joining', m.id, m.info.name]));
      ch.bind('pusher:member_removed', (m) => seen.add(['leaving', m.id, m.info.name]));
      ch.bind('Marker', (d) => seen.add(['marker', d.n]));
      ch.bind('E', (d) => seen.add(['E', d.n]));
      await next(ch, 'pusher:subscription_succeeded');
      const members = [];
      ch.members.each((m) => members.push([m.id, m.info.name]));
      return { seen, members: members.sort(byId) };
    },
    async leave(channel) {
      c.unsubscribe(channel);
      // Herald handles one connection's messages in order: once a later subscription is
      // answered, the unsubscribe has been handled.
      after += 1;
      await subscribed(c, `after-leave.${after}`);
    },
    stopReading() {
      // faye-websocket (inside pusher-js) pipes its TCP socket into the protocol driver.
      stopped = c.connection.connection.transport.socket._stream;
      stopped.unpipe();
      stopped.pause();
    },
  };
  open.push(tab);
  return tab;
}

const byId = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

const EDGES = { 'socket.io': socketioTab, pusher: pusherTab };

let markers = 0;
// Publish a marker on `channel` and return what `seen` got before it.
async function upToMarker(channel, seen) {
  markers += 1;
  const n = markers;
  await resp.publish(channel, 'Marker', { n });
  return (await seen.before((e) => e[0] === 'marker' && e[1] === n, `marker ${n}`))
    .filter((e) => e[0] !== 'marker');
}

const CASES = [
  {
    name: 'two tabs of one user: one joining, leaving only after the second tab leaves',
    async run(tab, channel) {
      const obs = await (await tab(9)).join(channel);
      const [a1, a2] = [await tab(1), await tab(1)];
      const first = await a1.join(channel);
      assert.deepEqual(first.members, [['1', 'Ann'], ['9', 'Obs']]);
      assert.deepEqual(await obs.seen.waitFor((e) => e[0] === 'joining'), ['joining', '1', 'Ann']);
      const second = await a2.join(channel);
      assert.deepEqual(second.members, [['1', 'Ann'], ['9', 'Obs']], 'the user is listed once');
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '1', 'Ann']],
        'no joining for the second tab');
      await a1.leave(channel);
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '1', 'Ann']],
        'no leaving while a tab remains');
      await a2.leave(channel);
      assert.deepEqual(await obs.seen.waitFor((e) => e[0] === 'leaving'), ['leaving', '1', 'Ann']);
      assert.deepEqual((await upToMarker(channel, obs.seen)).filter((e) => e[0] === 'leaving').length, 1);
    },
  },
  {
    name: 'user id 7 and "7" are one user',
    async run(tab, channel) {
      const obs = await (await tab(9)).join(channel);
      const asNumber = await tab(7);
      const asString = await tab('7');
      await asNumber.join(channel);
      const second = await asString.join(channel);
      assert.deepEqual(second.members, [['7', 'Sev'], ['9', 'Obs']]);
      if (second.raw) {
        // socket.io keeps the id as the app wrote it; the user's latest tab speaks for it.
        assert.deepEqual(second.raw.map((m) => m.user_id), ['7', 9]);
      }
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '7', 'Sev']],
        'the same user joining again is not announced');
      await asNumber.leave(channel);
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '7', 'Sev']]);
      await asString.leave(channel);
      assert.deepEqual(await obs.seen.waitFor((e) => e[0] === 'leaving'), ['leaving', '7', 'Sev']);
    },
  },
  {
    name: 'a disconnect leaves, once the user\'s last tab is gone, said goodbye or not',
    async run(tab, channel) {
      const obs = await (await tab(9)).join(channel);
      const [a1, a2] = [await tab(1), await tab(1)];
      await a1.join(channel);
      await a2.join(channel);
      let before = await metric(h, 'herald_ws_connections');
      a1.disconnect();
      await closedOne(before);
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '1', 'Ann']],
        'no leaving while a tab remains');
      before = await metric(h, 'herald_ws_connections');
      a2.vanish();
      await closedOne(before);
      assert.deepEqual(await upToMarker(channel, obs.seen), [['joining', '1', 'Ann'], ['leaving', '1', 'Ann']]);
    },
  },
  {
    name: 'a tab dropped as a slow consumer leaves',
    async run(tab, channel) {
      const obs = await (await tab(9)).join(channel);
      const slow = await tab(2);
      await slow.join(channel);
      assert.deepEqual(await obs.seen.waitFor((e) => e[0] === 'joining'), ['joining', '2', 'Bob']);
      slow.stopReading();
      // Broadcasts one at a time, each once the observer has it, until herald drops the tab.
      const pad = 'x'.repeat(32 * 1024);
      const dropped = await metric(h, 'herald_slow_consumers_dropped_total');
      const giveUp = Date.now() + 60000;
      let n = 0;
      while (!obs.seen.items.some((e) => e[0] === 'leaving')) {
        assert.ok(Date.now() < giveUp, `the slow tab was never dropped (${n} broadcasts of 32 KiB)`);
        await resp.publish(channel, 'E', { n, pad });
        const want = n;
        await obs.seen.waitFor((e) => e[0] === 'E' && e[1] === want, `broadcast ${n}`);
        n += 1;
      }
      const got = await upToMarker(channel, obs.seen);
      assert.deepEqual(got.filter((e) => e[0] !== 'E'), [['joining', '2', 'Bob'], ['leaving', '2', 'Bob']]);
      assert.deepEqual(got.filter((e) => e[0] === 'E').map((e) => e[1]), [...Array(n).keys()],
        'the observer lost nothing');
      assert.equal(await metric(h, 'herald_slow_consumers_dropped_total'), dropped + 1);
    },
  },
  {
    name: 'the member list a joiner gets is exact',
    async run(tab, channel) {
      const obs = await (await tab(9)).join(channel);
      assert.deepEqual(obs.members, [['9', 'Obs']]);
      const [ann, bob, cy] = [await tab(1), await tab(2), await tab(3)];
      await ann.join(channel);
      await bob.join(channel);
      const third = await cy.join(channel);
      assert.deepEqual(third.members, [['1', 'Ann'], ['2', 'Bob'], ['3', 'Cy'], ['9', 'Obs']]);
      await bob.leave(channel);
      const again = await (await tab(2)).join(channel);
      assert.deepEqual(again.members, [['1', 'Ann'], ['2', 'Bob'], ['3', 'Cy'], ['9', 'Obs']]);
      await ann.leave(channel);
      const late = await (await tab(7)).join(channel);
      assert.deepEqual(late.members, [['2', 'Bob'], ['3', 'Cy'], ['7', 'Sev'], ['9', 'Obs']]);
      assert.deepEqual(await upToMarker(channel, obs.seen), [
        ['joining', '1', 'Ann'], ['joining', '2', 'Bob'], ['joining', '3', 'Cy'],
        ['leaving', '2', 'Bob'], ['joining', '2', 'Bob'], ['leaving', '1', 'Ann'], ['joining', '7', 'Sev'],
      ]);
    },
  },
];

let room = 0;
for (const c of CASES) {
  for (const [edge, tab] of Object.entries(EDGES)) {
    test(`${edge}: ${c.name}`, async () => {
      room += 1;
      await c.run(tab, `presence-room.${room}`);
    });
  }
}
