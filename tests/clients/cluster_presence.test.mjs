// Presence across three herald nodes on one real redis-server (`--cluster`): a user counts once
// whichever nodes its tabs are on. With pusher-js (the default app, channel auth signed by the
// `pusher` SDK) and Laravel Echo on socket.io-client:
//   - two tabs of one user on two nodes: an observer on a third node hears one join and,
//     only after the second tab left, one leave; a joiner's member list has every node's users;
//   - the app's webhooks (member_added/removed, channel_occupied/vacated) come once for the
//     whole cluster, from whichever node;
//   - a node SIGKILLed: its members leave once its heartbeat lapses (--cluster-node-ttl), heard
//     once by the other nodes' clients and told once to the app;
//   - watchlists: a user signed in on one node is online for a watcher on another.
// Ordering: presence changes reach the other nodes through one Redis channel, in the order
// Redis ran them, so a change made after another was written is heard after it. A test that
// must prove a departure was not announced waits until Redis holds the first leave (the
// user's set of nodes shrank), then makes the announced one: anything wrongly announced
// would come first. Webhooks that must come once are followed by a marker from every node (a
// channel_occupied of a channel of its own): each node's webhooks are posted in order, so a
// duplicate would precede its node's marker. Webhooks of several nodes are ordered by when
// they were posted (time_ms), which says nothing of events a few ms apart on two nodes (each
// node posts from its own queue): a test that asserts the order of two nodes' webhooks waits
// for the first node's before it makes the second's.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, metric } from './lib/herald.mjs';
import { inbox, until, once, ackSubscribes, acked } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { startWebhookReceiver, inSentOrder } from './lib/webhooks.mjs';
import { pusherClient, connected, subscribed, signedIn } from './pusher_fixtures.mjs';

const TTL_SECONDS = 2;
const NAMES = { 1: 'Ann', 2: 'Bob', 9: 'Obs' };

// Laravel's /broadcasting/auth for presence channels: `Bearer <id>` is user <id>.
async function startAuth() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const m = /^Bearer (\d+)$/.exec(req.headers.authorization || '');
      const channel = new URLSearchParams(body).get('channel_name') || '';
      res.setHeader('content-type', 'application/json');
      if (!m || !channel.startsWith('presence-')) {
        res.statusCode = 403;
        return res.end('{"message":""}');
      }
      res.end(JSON.stringify({ channel_data: { user_id: Number(m[1]), user_info: { name: NAMES[m[1]] } } }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}/broadcasting/auth`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

let redis, auth, hooks, args, n1, n2, n3;
let open = [];

before(async () => {
  redis = await startRedisServer();
  auth = await startAuth();
  hooks = await startWebhookReceiver();
  args = [
    '--cluster', redis.url, '--cluster-node-ttl', String(TTL_SECONDS),
    '--auth-endpoint', auth.endpoint, '--recovery-window', '0',
    '--app-webhook', hooks.url, '--webhook-occupancy-delay-ms', '0',
    '--app-subscription-count', 'true',
  ];
  [n1, n2, n3] = await Promise.all([startHerald(args), startHerald(args), startHerald(args)]);
});
afterEach(async () => {
  for (const c of open) c.close();
  open = [];
  for (const h of [n1, n2, n3]) {
    await until(async () => await metric(h, 'herald_ws_connections') === 0, 'the clients of the test to close');
  }
});
after(async () => {
  for (const h of [n1, n2, n3]) await h?.stop();
  await hooks?.close();
  await auth?.close();
  await redis?.stop();
});

// The nodes Redis says hold `user` on presence channel `channel` of the default Pusher app
// (`pusher:herald`) or of the socket.io edge (`socket.io`).
function holders(namespace, channel, user) {
  const key = `herald:presence:who:${JSON.stringify(['m', namespace, channel, String(user)])}`;
  return Number(execFileSync('redis-cli', ['-p', String(redis.port), 'SCARD', key]).toString().trim());
}

// ---- pusher-js --------------------------------------------------------------------------------

// A pusher-js tab of `user` on node `h` in presence channel `channel`: `seen` gets ['added', id]
// and ['removed', id]; `members()` is pusher-js's member list now (ids, sorted). A joiner's list
// has the users its node knew of; one whose join is still on its way from another node is
// added by a member_added.
async function pusherTab(h, channel, user) {
  const client = await connected(pusherClient(h, { user: { user_id: String(user), user_info: { name: NAMES[user] } } }));
  open.push({ close: () => client.disconnect() });
  const seen = inbox();
  const ch = client.subscribe(channel);
  ch.bind('pusher:member_added', (m) => seen.add(['added', m.id]));
  ch.bind('pusher:member_removed', (m) => seen.add(['removed', m.id]));
  await new Promise((resolve) => ch.bind('pusher:subscription_succeeded', resolve));
  const members = () => {
    const ids = [];
    ch.members.each((m) => ids.push(m.id));
    return ids.sort().join(',');
  };
  return { client, seen, members, close: () => client.disconnect() };
}

// `tab`'s member list becomes `ids`.
const lists = (tab, ids, who) => until(() => tab.members() === ids.join(','), `${who} to list ${ids}; lists ${tab.members()}`);

const hook = (name, channel, user) => (e) => e.name === name && e.channel === channel
  && (user === undefined || e.user_id === String(user));

// A channel_occupied from every node, each for a channel of its own: every webhook a node
// posted before it has arrived.
async function markers(tag) {
  const nodes = [n1, n2, n3];
  const tabs = await Promise.all(nodes.map(async (h, i) => {
    const c = await connected(pusherClient(h));
    open.push({ close: () => c.disconnect() });
    await subscribed(c, `marker-${tag}-${i}`);
    return c;
  }));
  for (let i = 0; i < nodes.length; i++) {
    await hooks.events.waitFor(hook('channel_occupied', `marker-${tag}-${i}`), `node ${i + 1}'s marker webhook`);
  }
  return tabs;
}

test('pusher-js: two tabs of one user on two nodes are one member; the observer on a third node hears one add, and one remove after the last tab; the app is told each once', async () => {
  const channel = 'presence-pusher-two-tabs';
  const obs = await pusherTab(n3, channel, 9);
  await hooks.events.waitFor(hook('member_added', channel, 9), 'user 9 to be told');
  const a = await pusherTab(n1, channel, 1);
  await lists(a, ['1', '9'], 'the joiner on node 1');
  await obs.seen.waitFor((e) => e[0] === 'added' && e[1] === '1', 'the observer to hear user 1 arrive');
  const b = await pusherTab(n2, channel, 1);
  await lists(b, ['1', '9'], 'the second tab, on node 2');
  await until(() => holders('pusher:herald', channel, 1) === 2, 'Redis to hold user 1 on two nodes');
  a.close();
  await until(() => holders('pusher:herald', channel, 1) === 1, 'Redis to hold node 1\'s leave');
  b.close();
  const before = await obs.seen.before((e) => e[0] === 'removed' && e[1] === '1', 'the observer to hear user 1 leave');
  assert.deepEqual(before, [['added', '1']], 'one add, no remove before the last tab left');
  await markers('two-tabs');
  const about = inSentOrder(hooks.events.items.filter((e) => e.channel === channel));
  assert.deepEqual(about.map((e) => [e.name, e.user_id].filter(Boolean)), [
    ['channel_occupied'], ['member_added', '9'], ['member_added', '1'], ['member_removed', '1'],
  ], 'each told once, occupancy first');
});

test('the app hears a channel vacated once, when the last node\'s last subscriber left', async () => {
  const channel = 'presence-vacated';
  const x = await pusherTab(n1, channel, 1);
  await hooks.events.waitFor(hook('member_added', channel, 1), 'user 1 to be told');
  const y = await pusherTab(n2, channel, 2);
  await hooks.events.waitFor(hook('member_added', channel, 2), 'user 2 to be told');
  x.close();
  await hooks.events.waitFor(hook('member_removed', channel, 1), 'user 1\'s leave to be told');
  y.close();
  await hooks.events.waitFor(hook('channel_vacated', channel), 'the channel to be vacated');
  await markers('vacated');
  const about = inSentOrder(hooks.events.items.filter((e) => e.channel === channel));
  assert.deepEqual(about.map((e) => [e.name, e.user_id].filter(Boolean)), [
    ['channel_occupied'], ['member_added', '1'], ['member_added', '2'],
    ['member_removed', '1'], ['member_removed', '2'], ['channel_vacated'],
  ]);
});

test('a node SIGKILLed: its members leave once its heartbeat lapses, heard once on the other nodes and told once', async () => {
  const channel = 'presence-killed';
  const doomed = await startHerald(args);
  try {
    const obs = await pusherTab(n3, channel, 9);
    const other = await pusherTab(n2, channel, 2);
    const victim = await pusherTab(doomed, channel, 1);
    await lists(victim, ['1', '2', '9'], 'the tab on the doomed node');
    await obs.seen.waitFor((e) => e[0] === 'added' && e[1] === '1', 'the observer to hear user 1 arrive');
    await other.seen.waitFor((e) => e[0] === 'added' && e[1] === '1', 'node 2\'s tab to hear user 1 arrive');
    doomed.proc.kill('SIGKILL');
    await obs.seen.waitFor((e) => e[0] === 'removed' && e[1] === '1', 'user 1 to leave the observer', TTL_SECONDS * 1000 + 10000);
    await other.seen.waitFor((e) => e[0] === 'removed' && e[1] === '1', 'user 1 to leave node 2\'s tab');
    await hooks.events.waitFor(hook('member_removed', channel, 1), 'the app to be told user 1 left');
    let reaped = 0;
    for (const h of [n1, n2, n3]) reaped += await metric(h, 'herald_cluster_presence_reaped_total');
    assert.equal(reaped, 1, 'one node took the dead one out');
    // Node 2's tab leaves: heard by the observer after anything announced before.
    other.close();
    const before = await obs.seen.before((e) => e[0] === 'removed' && e[1] === '2', 'user 2 to leave');
    assert.deepEqual(before, [['added', '2'], ['added', '1'], ['removed', '1']], 'user 1 left once');
    await markers('killed');
    const removed = hooks.events.items.filter((e) => e.channel === channel && e.name === 'member_removed');
    assert.deepEqual(removed.map((e) => e.user_id), ['1', '2'], 'the app told once');
    assert.equal(obs.client.connection.state, 'connected', 'the observer was never cut');
  } finally {
    await doomed.stop();
  }
});

test('a node shut down (SIGTERM): its members leave at once, not when its heartbeat lapses, and the app is told', async () => {
  const channel = 'presence-sigterm';
  const ttl = args.indexOf('--cluster-node-ttl') + 1;
  const leaving = await startHerald(args.map((a, i) => (i === ttl ? '600' : a)));
  try {
    const obs = await pusherTab(n3, channel, 9);
    await pusherTab(leaving, channel, 1);
    await obs.seen.waitFor((e) => e[0] === 'added' && e[1] === '1', 'the observer to hear user 1 arrive');
    await leaving.stop();
    await obs.seen.waitFor((e) => e[0] === 'removed' && e[1] === '1', 'user 1 to leave with its node');
    await hooks.events.waitFor(hook('member_removed', channel, 1), 'the app to be told user 1 left');
  } finally {
    await leaving.stop();
  }
});

test('watchlists: a user signed in on one node is online to a watcher on another, and offline after', async () => {
  const watcher = await signedIn(await connected(pusherClient(n1, { user: { user_id: '9' }, watchlist: ['1'] })));
  open.push({ close: () => watcher.disconnect() });
  const events = inbox();
  watcher.user.watchlist.bind('online', (e) => events.add(['online', ...e.user_ids]));
  watcher.user.watchlist.bind('offline', (e) => events.add(['offline', ...e.user_ids]));
  const user = await signedIn(await connected(pusherClient(n2, { user: { user_id: '1' } })));
  open.push({ close: () => user.disconnect() });
  await events.waitFor((e) => e[0] === 'online' && e[1] === '1', 'user 1 online');
  user.disconnect();
  await events.waitFor((e) => e[0] === 'offline' && e[1] === '1', 'user 1 offline');
});

test('redis-server restarted (its data lost): every node writes its members again; nobody is seen leaving and coming back, the app is not told again, and presence goes on', async () => {
  const channel = 'presence-redis-restart';
  const obs = await pusherTab(n3, channel, 9);
  await hooks.events.waitFor(hook('member_added', channel, 9), 'the app to be told user 9 came');
  const one = await pusherTab(n1, channel, 1);
  await obs.seen.waitFor((e) => e[0] === 'added' && e[1] === '1', 'the observer to hear user 1 arrive');
  await hooks.events.waitFor(hook('member_added', channel, 1), 'the app to be told user 1 came');
  await redis.restart();
  await until(() => holders('pusher:herald', channel, 1) === 1 && holders('pusher:herald', channel, 9) === 1,
    'both nodes to write their members again');
  const two = await pusherTab(n2, channel, 2);
  await lists(two, ['1', '2', '9'], 'a tab joining on node 2 after the restart');
  await obs.seen.waitFor((e) => e[0] === 'added' && e[1] === '2', 'the observer to hear user 2 arrive');
  one.close();
  const before = await obs.seen.before((e) => e[0] === 'removed' && e[1] === '1', 'user 1 to leave');
  assert.deepEqual(before, [['added', '1'], ['added', '2']], 'no departure or arrival made up by the restart');
  await hooks.events.waitFor(hook('member_removed', channel, 1), 'the app to be told user 1 left');
  await markers('redis-restart');
  const about = hooks.events.items.filter((e) => e.channel === channel).map((e) => [e.name, e.user_id].filter(Boolean).join(' '));
  assert.deepEqual(about, ['channel_occupied', 'member_added 9', 'member_added 1', 'member_added 2', 'member_removed 1'],
    'each told once across the restart');
  let resyncs = 0;
  for (const h of [n1, n2, n3]) resyncs += await metric(h, 'herald_cluster_presence_resyncs_total');
  assert.ok(resyncs >= 6, `each node wrote its members at start and after the restart (${resyncs})`);
  assert.equal(obs.client.connection.state, 'connected');
});

test('subscription counts are the cluster\'s: pusher-js clients on three nodes are told every node\'s subscriptions, and the app the totals', async () => {
  const channel = 'counted-across';
  const tab = async (h) => {
    const c = await connected(pusherClient(h));
    open.push({ close: () => c.disconnect() });
    const counts = inbox();
    const ch = c.subscribe(channel);
    ch.bind('pusher:subscription_count', (d) => counts.add(d.subscription_count));
    await new Promise((resolve) => ch.bind('pusher:subscription_succeeded', resolve));
    return { c, counts, last: () => counts.items[counts.items.length - 1] };
  };
  const a = await tab(n1);
  const b = await tab(n2);
  const c = await tab(n3);
  for (const [t, name] of [[a, 'node 1'], [b, 'node 2'], [c, 'node 3']]) {
    await until(() => t.last() === 3, `${name}'s client to be told 3; told ${t.counts.items}`);
  }
  b.c.disconnect();
  for (const [t, name] of [[a, 'node 1'], [c, 'node 3']]) {
    await until(() => t.last() === 2, `${name}'s client to be told 2; told ${t.counts.items}`);
  }
  // The app is told each node's change with the total that node knew then: 3 once all
  // three were in, then 2 when node 2's only subscriber left (node 2 tells it).
  const told = () => hooks.events.items.filter((e) => e.name === 'subscription_count' && e.channel === channel)
    .map((e) => e.subscription_count);
  await until(() => told().includes(3) && told().slice(told().indexOf(3)).includes(2), `the app to be told 3, then 2; told ${told()}`);
});

// ---- Laravel Echo on socket.io ---------------------------------------------------------------

// An Echo tab of `user` on node `h` joined to presence channel `name`: `seen` gets
// ['joining', id] and ['leaving', id]; `members()` is who it was told is present now (the
// presence:subscribed list, plus joinings, minus leavings; ids sorted).
async function echoTab(h, name, user) {
  const channel = `presence-${name}`;
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false, auth: { headers: { Authorization: `Bearer ${user}` } },
  });
  open.push({ close: () => echo.disconnect() });
  const socket = ackSubscribes(echo.connector.socket);
  if (!socket.connected) await once(socket, 'connect');
  const seen = inbox();
  const present = new Set();
  const mine = (handler) => (ch, ...args) => { if (ch === channel) handler(...args); };
  socket.on('presence:subscribed', mine((ms) => { for (const m of ms) present.add(String(m.user_id)); }));
  socket.on('presence:joining', mine((m) => { present.add(String(m.user_id)); seen.add(['joining', String(m.user_id)]); }));
  socket.on('presence:leaving', mine((m) => { present.delete(String(m.user_id)); seen.add(['leaving', String(m.user_id)]); }));
  echo.join(name);
  await acked(socket, channel);
  return { seen, members: () => [...present].sort().join(','), close: () => echo.disconnect() };
}

test('Echo on socket.io: two tabs of one user on two nodes are one member to an observer on a third', async () => {
  const name = 'sio-two-tabs';
  const obs = await echoTab(n3, name, 9);
  const a = await echoTab(n1, name, 1);
  await lists(a, ['1', '9'], 'the joiner on node 1');
  await obs.seen.waitFor((e) => e[0] === 'joining' && e[1] === '1', 'the observer to hear user 1 join');
  const b = await echoTab(n2, name, 1);
  await lists(b, ['1', '9'], 'the second tab, on node 2');
  await until(() => holders('socket.io', `presence-${name}`, 1) === 2, 'Redis to hold user 1 on two nodes');
  a.close();
  await until(() => holders('socket.io', `presence-${name}`, 1) === 1, 'Redis to hold node 1\'s leave');
  b.close();
  const before = await obs.seen.before((e) => e[0] === 'leaving' && e[1] === '1', 'user 1 to leave');
  assert.deepEqual(before, [['joining', '1']], 'one join, no leave before the last tab');
});
