// Two herald nodes on one real redis-server: a node that begins to hear a channel (its first
// client there subscribes) misses nothing published on another node between the client's
// subscription and Redis applying the node's SUBSCRIBE; and PUBLISH with --cluster answers the
// receivers on the node it was sent to, as Redis Cluster does.
//
// The window is made wide on purpose, and held open as long as the test needs: Redis is told
// to take no new connection (CONFIG SET maxclients 1: the connections it has stay) and every
// pub/sub connection is cut (CLIENT KILL TYPE pubsub) right before the client subscribes on
// node A, so A's SUBSCRIBE waits until Redis takes connections again, while node B publishes
// a numbered event every millisecond (its publisher's connection, and A's requests
// connection, stay). The client must get every event whose PUBLISH was sent after it saw its
// subscription succeed (and A's read of the channel's position reached Redis: see
// readReached), once each and in order, with no hole up to a final marker.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, laravelPayload, metric, redisCli } from './lib/herald.mjs';
import { redisCliSubscriber } from './lib/redis-cli.mjs';
import { inbox, until } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { resp as respOn, outage as redisOutage } from './lib/resp.mjs';
import { pusherClient, connected, next } from './pusher_fixtures.mjs';

let redis, a, b;
let open = [];

before(async () => {
  redis = await startRedisServer();
  const args = ['--cluster', redis.url, '--history-size', '100000'];
  [a, b] = await Promise.all([startHerald(args), startHerald(args)]);
});
afterEach(async () => {
  for (const c of open) c.close();
  open = [];
});
after(async () => {
  for (const h of [a, b]) await h?.stop();
  await redis?.stop();
});

// A RESP connection to `port` (a node's, or Redis's), closed after each test.
const resp = (port) => respOn(port, open);

// How many HMGETs Redis has run: a node reads where a channel's history stands with one.
async function hmgets(admin) {
  return Number(/cmdstat_hmget:calls=(\d+)/.exec(await admin('INFO', 'commandstats'))?.[1] ?? 0);
}

// Wait until node A's read of the channel's position (an HMGET after `before`) has reached
// Redis. Herald's remaining window (README) is a publication numbered before that read: B
// publishes what the test counts on only after it. A herald that does not read (without the
// fix) gets 2 s, then the test goes on, and fails on what its client got.
async function readReached(admin, before) {
  await until(async () => await hmgets(admin) > before, 'node A to read the channel\'s position', 2000)
    .catch(() => {});
}

// Node B publishes `Seq` events n = 1, 2, … on `channel`, one a millisecond (each PUBLISH
// after the previous reply), until stop(); `sent()` is the last n written.
async function seqPublisher(channel) {
  const send = await resp(b.redisPort);
  let n = 0;
  let going = true;
  const done = (async () => {
    while (going) {
      n += 1;
      await send('PUBLISH', `laravel_database_${channel}`, laravelPayload('Seq', { n }));
      await new Promise((r) => setTimeout(r, 1)); // the publishing cadence, not a wait
    }
  })();
  return {
    sent: () => n,
    async stop() { going = false; await done; await send('PUBLISH', `laravel_database_${channel}`, laravelPayload('Marker', {})); },
    send,
  };
}

// A pusher-js client on node A, not yet subscribed.
async function clientOnA() {
  const client = await connected(pusherClient(a));
  open.push({ close: () => client.disconnect() });
  return client;
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// Redis takes no new connection and every pub/sub connection to it is cut; then `during()`,
// and Redis takes connections again (also if `during` throws).
const outage = (during) => redisOutage(redis.port, open, during);

// Subscribe `client` to `channel` on A while A cannot subscribe on Redis, and check that it
// gets every Seq event B publishes from its subscription on, up to the marker. `publishing`
// is B's seqPublisher, or a function that starts it once the client is subscribed.
async function joinDuringOutage(client, channel, publishing) {
  const filled = await metric(a, 'herald_cluster_join_filled_total');
  const got = inbox();
  const { from, publisher } = await outage(async (admin) => {
    const reads = await hmgets(admin);
    const ch = client.subscribe(channel);
    ch.bind('Seq', (d) => got.add(d.n));
    ch.bind('Marker', () => got.add('Marker'));
    await next(ch, 'pusher:subscription_succeeded');
    await readReached(admin, reads);
    // The first PUBLISH written after the client was told it is subscribed (and A read).
    const from = typeof publishing === 'function' ? 1 : publishing.sent() + 1;
    const publisher = typeof publishing === 'function' ? await publishing() : publishing;
    await until(() => publisher.sent() >= from + 50, 'B to publish 50 events while A cannot subscribe');
    assert.equal(await metric(a, 'herald_cluster_up'), 0, 'node A is not subscribed on Redis yet');
    return { from, publisher };
  });
  // Node A's connections come back; B publishes on until the client has events sent after.
  await until(async () => await metric(a, 'herald_cluster_up') === 1, 'node A back on Redis');
  const later = publisher.sent() + 20;
  await got.waitFor((n) => n >= later, `an event published after node A came back (n >= ${later})`);
  await publisher.stop();
  const items = await got.before((x) => x === 'Marker', 'the marker');
  const last = publisher.sent();
  assert.ok(items.length > 0 && items[0] <= from,
    `the client's first event is ${items[0]}, but every event from n = ${from} (sent after it was subscribed) must come`);
  assert.deepEqual(items, range(items[0], last), 'every event once, in order, no hole up to the last');
  assert.ok(await metric(a, 'herald_cluster_join_filled_total') > filled,
    'what was published while node A subscribed came from the history');
}

test('a channel node A begins to hear while its SUBSCRIBE waits: every event published after the client subscribed reaches it, once, in order', async () => {
  const channel = 'orders.join-history';
  const client = await clientOnA();
  const publisher = await seqPublisher(channel);
  // The channel has history in Redis before anyone is on it at A.
  await until(() => publisher.sent() >= 20, 'B to have published 20 events');
  await joinDuringOutage(client, channel, publisher);
});

test('a channel with no history yet: what B publishes first, while A subscribes, reaches A\'s client', async () => {
  const channel = 'orders.join-fresh';
  const client = await clientOnA();
  await joinDuringOutage(client, channel, () => seqPublisher(channel));
});

test('what B published while A subscribed reaches A\'s client with nothing published after it', async () => {
  const channel = 'orders.join-quiet';
  const client = await clientOnA();
  const send = await resp(b.redisPort);
  const publish = (n) => send('PUBLISH', `laravel_database_${channel}`, laravelPayload('Seq', { n }));
  await publish(0); // the channel has history
  const got = inbox();
  await outage(async (admin) => {
    const reads = await hmgets(admin);
    const ch = client.subscribe(channel);
    ch.bind('Seq', (d) => got.add(d.n));
    await next(ch, 'pusher:subscription_succeeded');
    await readReached(admin, reads);
    await Promise.all(range(1, 30).map(publish));
    assert.equal(await metric(a, 'herald_cluster_up'), 0, 'node A is not subscribed on Redis yet');
  });
  await got.count(30, 'the 30 events, with no publication after them');
  assert.deepEqual(got.items, range(1, 30));
});

test('a channel that lingered on node A, unheard: a client that subscribes there later gets nothing published before it came', async () => {
  const channel = 'lingering.1';
  const send = await resp(b.redisPort);
  const publish = (event, data) => send('PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data));
  // A first client on A hears the channel (a probe from B reaches it), then leaves: A's
  // stream of it lingers, and A stops hearing it from Redis.
  const first = await clientOnA();
  const probes = inbox();
  first.subscribe(channel).bind('Probe', probes.add);
  await until(async () => { await publish('Probe', {}); return probes.items.length > 0; }, 'a probe from B on A');
  const key = (await redisCli(redis.port, 'PUBSUB', 'CHANNELS', `*${channel}*`)).split('\n')[0];
  assert.ok(key, 'A listens on the channel');
  first.disconnect();
  await until(async () => (await redisCli(redis.port, 'PUBSUB', 'NUMSUB', key)).endsWith('\n0'), 'A to unsubscribe on Redis');
  for (let n = 1; n <= 5; n++) await publish('Before', { n });
  // A second client on A: everything from its subscription on, nothing from before.
  const second = await clientOnA();
  const got = inbox();
  const ch = second.subscribe(channel);
  ch.bind_global((event) => { if (!event.startsWith('pusher')) got.add(event); });
  await next(ch, 'pusher:subscription_succeeded');
  await until(async () => { await publish('After', {}); return got.items.length > 0; }, 'an event from after it came');
  assert.ok(got.items.every((e) => e === 'After'), `only what came after it: ${got.items}`);
});

test('PUBLISH and SPUBLISH answer the receivers on the node they were sent to, as Redis Cluster does', async () => {
  const name = 'laravel_database_orders.count';
  const nothing = () => {};
  for (const args of [
    [a, 'SUBSCRIBE', [name]], [a, 'SUBSCRIBE', [name]], [a, 'PSUBSCRIBE', ['laravel_database_orders.*']],
    [a, 'PSUBSCRIBE', [name, 'laravel_*']], [b, 'SUBSCRIBE', [name]], [a, 'SSUBSCRIBE', ['s.count']],
  ]) {
    const [h, verb, names] = args;
    open.push(await redisCliSubscriber(h.redisPort, verb, names, nothing));
  }
  const [onA, onB] = [await resp(a.redisPort), await resp(b.redisPort)];
  const payload = laravelPayload('Counted', {});
  // A: two SUBSCRIBEs, and three patterns that match (one client holds two of them).
  assert.equal(await onA('PUBLISH', name, payload), ':5\r\n');
  assert.equal(await onB('PUBLISH', name, payload), ':1\r\n');
  assert.equal(await onA('PUBLISH', 'laravel_database_elsewhere', payload), ':1\r\n', 'laravel_* matches');
  assert.equal(await onB('PUBLISH', 'laravel_database_elsewhere', payload), ':0\r\n');
  assert.equal(await onA('SPUBLISH', 's.count', payload), ':1\r\n');
  assert.equal(await onB('SPUBLISH', 's.count', payload), ':0\r\n');
});
