// A socket.io session recovered on another node stays a presence member, across three herald
// nodes on one real redis-server (`--cluster`). Laravel Echo on socket.io-client 4 (connection
// state recovery) joins a presence channel on node A, through a load balancer (a TCP proxy),
// authorized by the fixture Laravel app; an observer's Echo tab is on node C. The client's node
// goes away and the balancer sends it to node B, where it is recovered with its private id:
//   - cut from A (A keeps the session for the window, and its presence with it): B takes the
//     session from Redis and joins its presence as the member the channel's auth made it, then
//     A ends its copy;
//   - cut from the client's side only (A's side of the connection half-open, A none the wiser):
//     B takes A's record of the open session and joins, and A, told, closes the old connection
//     at once without keeping it;
//   - A SIGKILLed (it kept nothing): B takes A's record of the open session and joins; A's
//     members are taken out once its heartbeat lapses (--cluster-node-ttl), and the user, present
//     on B, does not leave.
// Either way the observer hears the user neither leave nor join again, a tab joining on B is
// told the user is present, and when the client later disconnects the observer hears one leave.
// Absence is proven with ordered markers: presence changes reach every node through one Redis
// channel in the order Redis ran them, so once Redis holds what must not be announced (A's leave,
// A taken out), a second user's join made after it reaches the observer after anything
// announced for it. The app's webhooks are the Pusher apps' (socket.io presence tells none): a
// channel_occupied marker from each node shows none was made up for the channel.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, metric, redisCli } from './lib/herald.mjs';
import { inbox, until, once, ackSubscribes, acked } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { startWebhookReceiver } from './lib/webhooks.mjs';
import { startCutProxy } from './lib/cut-proxy.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { pusherClient, connected, subscribed } from './pusher_fixtures.mjs';

const TTL_SECONDS = 2;

let redis, auth, hooks, args, b, c;
let open = [];

before(async () => {
  redis = await startRedisServer();
  auth = await startAuthApp();
  hooks = await startWebhookReceiver();
  args = [
    '--cluster', redis.url, '--cluster-node-ttl', String(TTL_SECONDS),
    '--auth-endpoint', auth.endpoint,
    '--app-webhook', hooks.url, '--webhook-occupancy-delay-ms', '0',
  ];
  [b, c] = await Promise.all([startHerald(args), startHerald(args)]);
});
afterEach(async () => {
  for (const x of open) await x.close();
  open = [];
  for (const h of [b, c]) {
    await until(async () => await metric(h, 'herald_ws_connections') === 0, 'the clients of the test to close');
  }
});
after(async () => {
  for (const h of [b, c]) await h?.stop();
  await hooks?.close();
  await auth?.close();
  await redis?.stop();
});

// The ids of the nodes Redis says hold user `user` on socket.io presence channel `channel`.
async function holders(channel, user) {
  const key = `herald:presence:who:${JSON.stringify(['m', 'socket.io', channel, String(user)])}`;
  const out = await redisCli(redis.port, 'SMEMBERS', key);
  return out.split('\n').filter(Boolean).sort();
}

// An Echo tab of user `user` (the fixture app's Bearer token) at `url`, joined to presence
// channel `presence-room.<name>`: `seen` gets ['joining', id] and ['leaving', id]; `here()` is
// the list presence:subscribed gave it (ids, sorted).
async function echoTab(url, name, user, options = {}) {
  const channel = `presence-room.${name}`;
  const echo = new Echo({
    broadcaster: 'socket.io', host: url, client: io, transports: ['websocket'], forceNew: true,
    reconnection: false, auth: { headers: { Authorization: `Bearer ${user}` } }, ...options,
  });
  open.push({ close: () => echo.disconnect() });
  const socket = ackSubscribes(echo.connector.socket);
  if (!socket.connected) await once(socket, 'connect');
  const seen = inbox();
  let here = [];
  echo.join(`room.${name}`)
    .here((ms) => { here = ms.map((m) => String(m.id)).sort(); })
    .joining((m) => seen.add(['joining', String(m.id)]))
    .leaving((m) => seen.add(['leaving', String(m.id)]));
  await acked(socket, channel);
  await until(() => here.length > 0, `the member list of ${channel}`);
  return { echo, socket, seen, here: () => here.join(','), close: () => echo.disconnect() };
}

// A channel_occupied from each of `nodes`, for a channel of its own: every webhook that node
// posted before it has arrived.
async function markers(nodes, tag) {
  for (const [i, h] of nodes.entries()) {
    const client = await connected(pusherClient(h));
    open.push({ close: () => client.disconnect() });
    await subscribed(client, `marker-${tag}-${i}`);
    await hooks.events.waitFor((e) => e.name === 'channel_occupied' && e.channel === `marker-${tag}-${i}`,
      `node ${i}'s marker webhook`);
  }
}

// Node A, a proxy in front of it, the observer (user 3) on C and the client (user 1) through the
// proxy, both on `presence-room.<name>`; once the observer heard user 1 join.
async function scene(name) {
  const a = await startHerald(args);
  const proxy = await startCutProxy(a.httpPort);
  open.push({ close: () => proxy.close() }, { close: () => a.stop() });
  const obs = await echoTab(c.url, name, 3);
  const fast = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };
  const client = await echoTab(`http://127.0.0.1:${proxy.port}`, name, 1, fast);
  await obs.seen.waitFor((e) => e[0] === 'joining' && e[1] === '1', 'the observer to hear user 1 join');
  const channel = `presence-room.${name}`;
  const [nodeA] = await holders(channel, 1);
  assert.ok(nodeA, 'Redis holds user 1 on node A');
  return { a, proxy, obs, client, channel, nodeA };
}

// The client is back on B, recovered; once Redis no longer holds user 1 on A (A let it go, or
// was taken out), a second user joins on B: the observer heard nothing of user 1 before that
// join, the second user is told user 1 is present, and Redis holds user 1 on B. Then the client disconnects: the observer hears it leave
// once, before the second user leaves.
async function stillPresent({ obs, client, channel, nodeA, name }) {
  await until(async () => !(await holders(channel, 1)).includes(nodeA), 'Redis to hold user 1 on node A no more');
  const second = await echoTab(b.url, name, 2);
  const before = await obs.seen.before((e) => e[0] === 'joining' && e[1] === '2', 'the observer to hear user 2 join');
  assert.deepEqual(before, [['joining', '1']], 'user 1 neither left nor joined again');
  assert.equal(second.here(), '1,2,3', "B's member list includes the recovered user");
  assert.equal((await holders(channel, 1)).length, 1, 'Redis holds user 1 on node B');
  assert.deepEqual(second.seen.items, [], 'the tab on B heard nothing of user 1 either');
  client.echo.disconnect();
  await until(async () => (await holders(channel, 1)).length === 0, 'Redis to hold user 1 nowhere');
  second.close();
  const all = await obs.seen.before((e) => e[0] === 'leaving' && e[1] === '2', 'the observer to hear user 2 leave');
  assert.deepEqual(all, [['joining', '1'], ['joining', '2'], ['leaving', '1']], 'user 1 left once');
}

// Nothing about the channel came to the app, up to a marker from each node.
async function noWebhooks(channel, nodes, tag) {
  await markers(nodes, tag);
  assert.deepEqual(hooks.events.items.filter((e) => e.channel === channel), [], 'no webhook for the channel');
}

test('cut from its node, recovered on another: still a member, nobody hears it leave or join; its later disconnect is one leave', async () => {
  const name = 'handover-cut';
  const s = await scene(name);
  const { a, proxy, client } = s;
  const authsOf1 = () => auth.requests.filter((r) => r.headers.authorization === 'Bearer 1').length;
  const auths = authsOf1();
  const reconnected = once(client.socket, 'connect');
  proxy.cut({ hold: true });
  // A keeps the session (and user 1's presence) and shares it on Redis; then the balancer
  // sends the client to B.
  await until(async () => await metric(a, 'herald_socketio_recovery_sessions') === 1, 'A to keep the session');
  await until(async () => await redisCli(redis.port, 'EXISTS', `herald:kept:sio:${client.socket._pid}`) === '1',
    'the kept session on Redis');
  proxy.target = b.httpPort;
  proxy.release();
  await reconnected;
  assert.equal(client.socket.recovered, true, 'recovered on B');
  assert.equal(await metric(b, 'herald_socketio_recovered_total'), 1);
  await until(async () => await metric(a, 'herald_socketio_recovery_sessions') === 0, 'A to end its copy');
  await stillPresent({ ...s, name });
  assert.equal(authsOf1(), auths, 'no new auth request for user 1');
  await noWebhooks(s.channel, [a, b, c], 'cut');
});

// A's record of the client's open session carries its member (written within a second).
async function recordHoldsMember(s) {
  await until(async () => {
    const record = await redisCli(redis.port, 'GET', `herald:kept:sio:open:${s.client.socket._pid}`);
    return record.includes(s.channel) && record.includes('\\"user_id\\":1');
  }, "A's record of the open session, with its member");
}

test('back on another node while its old connection is half-open on its node: recovered there a member, the old connection closed at once and not kept', async () => {
  const name = 'handover-half-open';
  const s = await scene(name);
  const { a, proxy, client } = s;
  await recordHoldsMember(s);
  const reconnected = once(client.socket, 'connect');
  proxy.target = b.httpPort;
  // The client's side is reset; A's side stays open, unread and never told (a phone that left
  // the network): A would hear of it only at the ping timeout.
  proxy.cut({ silent: true });
  await reconnected;
  assert.equal(client.socket.recovered, true, 'recovered on B from the open session\'s record');
  await until(async () => await metric(a, 'herald_ws_connections') === 0, 'A to close the old connection on hearing of B');
  assert.equal(await metric(a, 'herald_socketio_recovery_sessions'), 0, 'A kept nothing');
  assert.equal(await redisCli(redis.port, 'EXISTS', `herald:kept:sio:${client.socket._pid}`), '0', 'nor on Redis');
  await stillPresent({ ...s, name });
  await noWebhooks(s.channel, [a, b, c], 'half-open');
});

test('its node SIGKILLed, recovered on another: still a member after the dead node is taken out; its later disconnect is one leave', async () => {
  const name = 'handover-kill';
  const s = await scene(name);
  const { a, proxy, client } = s;
  await recordHoldsMember(s);
  const reaped = async () => await metric(b, 'herald_cluster_presence_reaped_total')
    + await metric(c, 'herald_cluster_presence_reaped_total');
  const reapedBefore = await reaped();
  const reconnected = once(client.socket, 'connect');
  proxy.target = b.httpPort;
  const dead = new Promise((r) => a.proc.once('exit', r));
  a.proc.kill('SIGKILL');
  await dead;
  await reconnected;
  assert.equal(client.socket.recovered, true, 'recovered on B');
  // Node A's heartbeat lapses and B or C takes it out: its members leave Redis.
  await until(async () => await reaped() > reapedBefore, 'node A to be taken out', TTL_SECONDS * 1000 + 10000);
  await stillPresent({ ...s, name });
  await noWebhooks(s.channel, [b, c], 'kill');
});
