// Three herald nodes on one real redis-server (`--cluster redis://…`): a publication entering
// any node, by any ingress (RESP PUBLISH with Laravel's envelope, the Pusher HTTP API's trigger
// and batch_events, a Pusher client event, a socket.io whisper), reaches the subscribers of
// every node (socket.io through Laravel Echo, pusher-js, redis-cli SUBSCRIBE and PSUBSCRIBE)
// exactly once each, in order; toOthers() leaves out exactly the named connection wherever it
// is connected; a client event does not come back to its sender. When Redis dies, /healthz
// says so, each node still delivers to its own clients, and once Redis is back (same port)
// publications cross nodes again; /metrics counts all of it.
//
// A node's backplane subscriptions take a moment to be in place, and until then publications
// from other nodes can be missed: every test first publishes probe events (every ~50 ms, with
// a deadline) until each of its receivers on another node has one, then runs its sequence.
// Receivers record what they get as the event name, or the `n` of a `Seq` event; probes
// (which can only come before the sequence) are left out of the assertions. Absence is proved
// with an ordered marker. Presence and recovery are not cluster-wide yet and not tested here.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, freePort, laravelPayload, metric, once, sleep, redisCli } from './lib/herald.mjs';
import { redisCliSubscriber } from './lib/redis-cli.mjs';
import { inbox, until, within, ackSubscribes, acked, DEADLINE_MS } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { sdk, pusherClient, connected, subscribed, signedIn } from './pusher_fixtures.mjs';

let redis, auth, n1, n2, n3;
let open = [];

before(async () => {
  redis = await startRedisServer();
  auth = await startAuthApp();
  const args = ['--cluster', redis.url, '--auth-endpoint', auth.endpoint];
  const nodes = await Promise.allSettled([startHerald(args), startHerald(args), startHerald(args)]);
  const failed = nodes.find((n) => n.status === 'rejected');
  if (failed) {
    for (const n of nodes) if (n.status === 'fulfilled') await n.value.stop();
    throw failed.reason;
  }
  [n1, n2, n3] = nodes.map((n) => n.value);
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
  await auth?.close();
  await redis?.stop();
});

// ---- receivers: each records event names, or the `n` of a `Seq` event, in an inbox ----------

const record = (got) => (event, data) => got.add(event === 'Seq' ? data.n : event);

// A Laravel Echo tab (socket.io connector) on node `h`, signed in as `user` if given.
async function echoTab(h, user) {
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false,
    ...(user && { auth: { headers: { Authorization: `Bearer ${user}` } } }),
  });
  open.push({ close: () => echo.disconnect() });
  ackSubscribes(echo.connector.socket);
  if (!echo.connector.socket.connected) await once(echo.connector.socket, 'connect');
  return echo;
}

// An Echo tab in `channel` (`private-…` goes through Echo's private(), authorised by the
// fixture app); it records `events` and whispers (as `whisper:<name>`). `echo` and `ch` are
// there to whisper with and for socketId().
async function echoIn(h, channel, { user, events = ['Seq', 'Probe', 'Marker'], whispers = [] } = {}) {
  const echo = await echoTab(h, user);
  const priv = channel.startsWith('private-');
  const ch = priv ? echo.private(channel.slice('private-'.length)) : echo.channel(channel);
  const got = inbox();
  for (const e of events) ch.listen(`.${e}`, (data) => record(got)(e, data));
  for (const w of whispers) ch.listenForWhisper(w, () => got.add(`whisper:${w}`));
  await acked(echo.connector.socket, channel);
  return { echo, ch, got };
}

// A pusher-js client (default app, channel auth signed by the SDK) on node `h` in `channel`;
// it records every event but pusher:*.
async function pusherIn(h, channel) {
  const client = await connected(pusherClient(h));
  open.push({ close: () => client.disconnect() });
  const ch = await subscribed(client, channel);
  const got = inbox();
  ch.bind_global((event, data) => { if (!event.startsWith('pusher:')) record(got)(event, data); });
  return { client, ch, got, socketId: client.connection.socket_id };
}

// redis-cli SUBSCRIBE or PSUBSCRIBE on node `h`, as a RESP subscriber; it records the
// envelopes it receives, and in `channels` the channel name of each.
async function respIn(h, verb, ...names) {
  const got = inbox();
  const channels = [];
  const deliver = ([channel, payload]) => {
    const { event, data } = JSON.parse(payload);
    channels.push(channel);
    record(got)(event, data);
  };
  open.push(await redisCliSubscriber(h.redisPort, verb, names, deliver));
  return { got, channels };
}

// ---- publishers -------------------------------------------------------------------------------

// One RESP connection to node `h`, publishing Laravel envelopes on `laravel_database_<channel>`
// as Laravel's RedisBroadcaster does; PUBLISHes may be pipelined, each resolves with its reply.
async function laravelPublisher(h) {
  const sock = net.connect(h.redisPort, '127.0.0.1');
  open.push({ close: () => sock.destroy() });
  await once(sock, 'connect');
  const waiting = [];
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\r\n')) >= 0; buf = buf.slice(i + 2)) {
      const line = buf.slice(0, i);
      const w = waiting.shift();
      if (line.startsWith('-')) w.reject(new Error(`PUBLISH: ${line}`)); else w.resolve(line);
    }
  });
  const command = (...args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  return (channel, event, data = {}, socket = null) => new Promise((resolve, reject) => {
    waiting.push({ resolve, reject });
    sock.write(command('PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data, socket)));
  });
}

// Publishes probes with `send()` every ~50 ms until each receiver's inbox has one: from then on
// the backplane subscriptions of the receivers' nodes are in place for this channel.
async function crossReady(send, receivers, what, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    await send();
    try {
      await Promise.all(receivers.map((r) => r.got.waitFor((x) => x === 'Probe', what, 50)));
      return;
    } catch {
      if (Date.now() > end) {
        const missing = receivers.filter((r) => !r.got.items.includes('Probe')).length;
        throw new Error(`timed out after ${ms} ms waiting for ${what} (${missing} of ${receivers.length} receivers had no probe)`);
      }
    }
  }
}

// What a receiver got before the marker, probes left out; probes must all come first.
async function beforeMarker(r, what) {
  const items = await r.got.before((x) => x === 'Marker', what);
  const first = items.findIndex((x) => x !== 'Probe');
  const rest = first < 0 ? [] : items.slice(first);
  assert.ok(!rest.includes('Probe'), `${what}: a probe after the sequence had started: ${JSON.stringify(items)}`);
  return rest;
}

// GET /healthz: [status, body text].
async function healthz(h) {
  const res = await fetch(`${h.url}/healthz`);
  return [res.status, await res.text()];
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// ---- tests ------------------------------------------------------------------------------------

test('a RESP PUBLISH on node 1 reaches socket.io, Pusher and RESP subscribers on every node, each event once, in order', async () => {
  const channel = 'orders.cluster-a';
  const receivers = {
    'Echo on node 2': await echoIn(n2, channel),
    'pusher-js on node 3': await pusherIn(n3, channel),
    'SUBSCRIBE on node 3': await respIn(n3, 'SUBSCRIBE', `laravel_database_${channel}`),
    'PSUBSCRIBE on node 3': await respIn(n3, 'PSUBSCRIBE', 'laravel_database_orders.cluster-*'),
    'pusher-js on node 1 (the publishing node)': await pusherIn(n1, channel),
  };
  const publish = await laravelPublisher(n1);
  await crossReady(() => publish(channel, 'Probe'), Object.values(receivers), 'node 1\'s probes on nodes 2 and 3');

  await Promise.all(range(1, 200).map((n) => publish(channel, 'Seq', { n })));
  await publish(channel, 'Marker');

  for (const [who, r] of Object.entries(receivers)) {
    assert.deepEqual(await beforeMarker(r, `the marker at ${who}`), range(1, 200), `${who}: 1..200 once each, in order`);
  }
  const resp = receivers['SUBSCRIBE on node 3'].channels;
  assert.ok(resp.every((c) => c === `laravel_database_${channel}`), 'RESP sees the name published');
});

test('/metrics counts what crossed the backplane: published on the node it entered, received on the others', async () => {
  const channel = 'orders.cluster-f';
  const names = ['herald_cluster_published_total', 'herald_cluster_received_total', 'herald_cluster_local_only_total'];
  const snapshot = async (h) => Object.fromEntries(await Promise.all(names.map(async (m) => [m, await metric(h, m)])));
  const [before1, before3] = [await snapshot(n1), await snapshot(n3)];
  const far = await pusherIn(n3, channel);
  const publish = await laravelPublisher(n1);
  let probes = 0;
  await crossReady(() => { probes += 1; return publish(channel, 'Probe'); }, [far], 'node 1\'s probes on node 3');
  await Promise.all(range(1, 200).map((n) => publish(channel, 'Seq', { n })));
  await publish(channel, 'Marker');
  assert.deepEqual(await beforeMarker(far, 'the marker on node 3'), range(1, 200));

  const [after1, after3] = [await snapshot(n1), await snapshot(n3)];
  const delta = (a, b, m) => a[m] - b[m];
  assert.ok(delta(after1, before1, 'herald_cluster_published_total') >= 200 + probes + 1,
    `node 1 published every publication that entered it: ${JSON.stringify({ before1, after1, probes })}`);
  assert.ok(delta(after3, before3, 'herald_cluster_received_total') >= 200,
    `node 3 received them: ${JSON.stringify({ before3, after3 })}`);
  assert.equal(delta(after3, before3, 'herald_cluster_published_total'), 0, 'node 3 does not publish back what it received');
  assert.equal(delta(after1, before1, 'herald_cluster_local_only_total'), 0, 'nothing was local-only while Redis was up');
  for (const h of [n1, n2, n3]) assert.equal(await metric(h, 'herald_cluster_up'), 1);
  assert.ok(await metric(n1, 'herald_cluster_published_total') >= 200);
  assert.ok(await metric(n3, 'herald_cluster_received_total') >= 200);
});

test('the Pusher HTTP API on node 2 (trigger and batch_events) reaches clients on nodes 1, 2 and 3', async () => {
  const channel = 'news.cluster-b';
  const receivers = {
    'node 1': await pusherIn(n1, channel),
    'node 2 (the API\'s node)': await pusherIn(n2, channel),
    'node 3': await pusherIn(n3, channel),
    'Echo on node 3': await echoIn(n3, channel, { events: ['Probe', 'E1', 'E2', 'E3', 'E4', 'Marker'] }),
  };
  const api = sdk(n2);
  await crossReady(() => api.trigger(channel, 'Probe', {}), Object.values(receivers), 'node 2\'s probes on nodes 1 and 3');

  assert.equal((await api.trigger(channel, 'E1', { n: 1 })).status, 200);
  assert.equal((await api.triggerBatch([
    { channel, name: 'E2', data: { n: 2 } },
    { channel: 'elsewhere.cluster-b', name: 'E9', data: {} },
    { channel, name: 'E3', data: 'plain text' },
  ])).status, 200);
  assert.equal((await api.trigger([channel, 'elsewhere.cluster-b'], 'E4', {})).status, 200);
  await api.trigger(channel, 'Marker', {});

  for (const [who, r] of Object.entries(receivers)) {
    assert.deepEqual(await beforeMarker(r, `the marker at ${who}`), ['E1', 'E2', 'E3', 'E4'], who);
  }
});

test('toOthers() across nodes: the Pusher socket_id of the HTTP API leaves out exactly that connection', async () => {
  const channel = 'chat.cluster-c-pusher';
  const a = await pusherIn(n1, channel);
  const sameNode = await pusherIn(n1, channel);
  const b = await pusherIn(n3, channel);
  assert.ok(a.socketId && a.socketId !== sameNode.socketId);
  const api = sdk(n2);
  await crossReady(() => api.trigger(channel, 'Probe', {}), [a, sameNode, b], 'node 2\'s probes on nodes 1 and 3');

  await api.trigger(channel, 'Said', { text: 'hi' }, { socket_id: a.socketId });
  await api.trigger(channel, 'Marker', {});
  assert.deepEqual(await beforeMarker(b, 'the marker on node 3'), ['Said']);
  assert.deepEqual(await beforeMarker(sameNode, 'the marker at A\'s neighbour on node 1'), ['Said'],
    'only the named connection is left out, not its node');
  assert.deepEqual(await beforeMarker(a, 'the marker at A'), [], 'A, named by socket_id on another node, got nothing');
});

test('toOthers() across nodes: the `socket` of a Laravel envelope published on node 2 leaves out that Echo tab', async () => {
  const channel = 'chat.cluster-c-echo';
  const events = ['Probe', 'Said', 'Marker'];
  const a = await echoIn(n1, channel, { events });
  const sameNode = await echoIn(n1, channel, { events });
  const b = await echoIn(n3, channel, { events });
  const aId = a.echo.socketId();
  assert.ok(aId && aId !== sameNode.echo.socketId());
  const publish = await laravelPublisher(n2);
  await crossReady(() => publish(channel, 'Probe'), [a, sameNode, b], 'node 2\'s probes on nodes 1 and 3');

  await publish(channel, 'Said', { text: 'hi' }, aId);
  await publish(channel, 'Marker');
  assert.deepEqual(await beforeMarker(b, 'the marker on node 3'), ['Said']);
  assert.deepEqual(await beforeMarker(sameNode, 'the marker at A\'s neighbour on node 1'), ['Said'],
    'only the named tab is left out, not its node');
  assert.deepEqual(await beforeMarker(a, 'the marker at A'), [], 'A, named in the envelope on another node, got nothing');
});

test('client events across nodes: a whisper and a Pusher client event reach the other nodes, not their sender', async () => {
  const channel = 'private-chat.cluster-d';
  const opts = (user) => ({ user, events: ['Probe', 'Marker'], whispers: ['typing', 'said'] });
  const whisperer = await echoIn(n1, channel, opts(1)); // sends the whisper
  const listener = await echoIn(n2, channel, opts(2));
  const speaker = await pusherIn(n1, channel); // sends the Pusher client event
  const farPusher = await pusherIn(n3, channel);
  const publish = await laravelPublisher(n1);
  await crossReady(() => publish(channel, 'Probe'), [listener, farPusher], 'node 1\'s probes on nodes 2 and 3');

  whisperer.ch.whisper('typing', { name: 'Ann' });
  await listener.got.waitFor((x) => x === 'whisper:typing', 'the whisper on node 2');
  await farPusher.got.waitFor((x) => x === 'client-typing', 'the whisper on node 3');
  assert.equal(speaker.ch.trigger('client-said', { text: 'hi' }), true);
  await listener.got.waitFor((x) => x === 'whisper:said', 'the Pusher client event on node 2');
  await farPusher.got.waitFor((x) => x === 'client-said', 'the Pusher client event on node 3');
  await publish(channel, 'Marker');

  assert.deepEqual(await beforeMarker(listener, 'the marker on node 2'), ['whisper:typing', 'whisper:said']);
  assert.deepEqual(await beforeMarker(farPusher, 'the marker on node 3'), ['client-typing', 'client-said']);
  assert.deepEqual(await beforeMarker(whisperer, 'the marker at the whisperer'), ['whisper:said'], 'not its own whisper');
  assert.deepEqual(await beforeMarker(speaker, 'the marker at the Pusher speaker'), ['client-typing'], 'not its own client event');
});

test('Redis killed mid-stream and back on the same port: /healthz, local delivery meanwhile, then across nodes again', async () => {
  const channel = 'orders.cluster-e';
  const local = await pusherIn(n1, channel);
  const far = await echoIn(n2, channel);
  const publish = await laravelPublisher(n1);
  await crossReady(() => publish(channel, 'Probe'), [far], 'node 1\'s probes on node 2');
  const outagesBefore = await metric(n1, 'herald_cluster_outages_total');
  const localOnlyBefore = await metric(n1, 'herald_cluster_local_only_total');

  // The stream: a Seq every ~20 ms on node 1, until the end of the test. `sent` is the last n.
  let sent = 0;
  let streaming = true;
  const stream = (async () => {
    while (streaming) {
      await publish(channel, 'Seq', { n: ++sent });
      await sleep(20); // the pace of the stream, not a wait for an outcome
    }
  })();
  const gotAfter = (r, n) => r.got.items.some((x) => typeof x === 'number' && x > n);
  try {
    const flowing = sent;
    await until(() => gotAfter(far, flowing), 'the stream on node 2 before the crash');

    await redis.crash();
    for (const h of [n1, n2]) {
      let last;
      await until(async () => { last = await healthz(h); return last[0] === 503 && /backplane/.test(last[1]); },
        'a 503 naming the backplane while Redis is down').catch((e) => { e.message += `; last: ${last}`; throw e; });
    }
    await until(async () => await metric(n1, 'herald_cluster_up') === 0, 'herald_cluster_up 0 while Redis is down');
    const whileDown = sent;
    await until(() => gotAfter(local, whileDown), 'a publication made while Redis is down, on node 1\'s own client');
    assert.ok(await metric(n1, 'herald_cluster_local_only_total') > localOnlyBefore, 'counted as local-only');
    assert.ok(await metric(n1, 'herald_cluster_outages_total') > outagesBefore, 'the outage is counted');

    await redis.start();
    for (const h of [n1, n2]) {
      await until(async () => (await healthz(h))[0] === 200, 'a 200 once Redis is back');
    }
    await until(async () => await metric(n1, 'herald_cluster_up') === 1, 'herald_cluster_up 1 once Redis is back');
    const back = sent;
    await until(() => gotAfter(far, back), 'the stream on node 2 again once Redis is back', 15000);
  } finally {
    streaming = false;
    if (!redis.running) await redis.start(); // a failure above leaves Redis up for `after`
  }
  await within(stream, 'node 1 to answer the last PUBLISH of the stream');
  await publish(channel, 'Marker');
  for (const [who, r] of [['node 1', local], ['node 2', far]]) {
    const seqs = (await beforeMarker(r, `the marker on ${who}`)).filter((x) => typeof x === 'number');
    assert.ok(seqs.every((x, i) => i === 0 || x > seqs[i - 1]), `${who}: no duplicates, in order: ${seqs}`);
  }
  assert.ok(await metric(n1, 'herald_cluster_outages_total') >= 1);
});

// Herald processes of the cluster sharing one HTTP and one RESP port (SO_REUSEPORT): `body`
// gets `start()`, which adds one; afterwards the test's clients and every process it started
// are stopped.
async function onSharedPorts(body) {
  const binds = ['--http-bind', `127.0.0.1:${await freePort()}`, '--redis-bind', `127.0.0.1:${await freePort()}`];
  const started = [];
  const start = async () => {
    const h = await startHerald(['--cluster', redis.url, '--auth-endpoint', auth.endpoint, ...binds]);
    started.push(h);
    return h;
  };
  try {
    await body(start);
  } finally {
    for (const c of open) c.close();
    open = [];
    for (const h of started.reverse()) await h.stop();
  }
}

test('two processes of the cluster share one HTTP port and one RESP port (SO_REUSEPORT): both take connections, every client gets every event', () => onSharedPorts(async (start) => {
    const first = await start();
    const second = await start();
    assert.deepEqual([second.httpPort, second.redisPort], [first.httpPort, first.redisPort], 'the same ports');
    // New RESP connections to the shared port land on both processes: INFO's process_id says which.
    const pids = new Set();
    for (let i = 0; i < 64 && pids.size < 2; i++) {
      pids.add(Number(/process_id:(\d+)/.exec(await redisCli(first.redisPort, 'INFO', 'server'))[1]));
    }
    assert.deepEqual([...pids].sort(), [first.proc.pid, second.proc.pid].sort(), 'both processes accept on the shared RESP port');

    const channel = 'orders.cluster-g';
    const clients = [];
    for (let i = 0; i < 8; i++) clients.push(await pusherIn(first, channel));
    const publish = await laravelPublisher(first);
    await crossReady(() => publish(channel, 'Probe'), clients, 'probes on every client of the shared port');
    await Promise.all(range(1, 50).map((n) => publish(channel, 'Seq', { n })));
    await publish(channel, 'Marker');
    for (const [i, r] of clients.entries()) {
      assert.deepEqual(await beforeMarker(r, `the marker at client ${i}`), range(1, 50), `client ${i}: 1..50 once each, in order`);
    }
}));

test('a node SIGKILLed mid-stream: its clients reconnect to the process still on the shared port and get what follows; other nodes miss nothing', () => onSharedPorts(async (start) => {
    const doomed = await start();
    const channel = 'orders.cluster-h';
    // Connected while `doomed` is the only process on the port: every one of them is on it.
    const orphans = [];
    for (let i = 0; i < 4; i++) orphans.push(await pusherIn(doomed, channel));
    const ids = orphans.map((o) => o.client.connection.socket_id);
    await start(); // the survivor
    const bystander = await echoIn(n2, channel);
    const publish = await laravelPublisher(n1);
    await crossReady(() => publish(channel, 'Probe'), [...orphans, bystander], 'node 1\'s probes everywhere');

    let sent = 0;
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        await publish(channel, 'Seq', { n: ++sent });
        await sleep(20); // the pace of the stream, not a wait for an outcome
      }
    })();
    try {
      await until(() => bystander.got.items.some((x) => typeof x === 'number'), 'the stream on node 2');
      doomed.proc.kill('SIGKILL');
      const killedAt = sent;
      for (const [i, o] of orphans.entries()) {
        await until(() => o.client.connection.state === 'connected' && o.client.connection.socket_id !== ids[i],
          `client ${i} to reconnect to the surviving process`, 20000);
        await until(() => o.got.items.some((x) => typeof x === 'number' && x > killedAt),
          `client ${i} to get the stream again`, 20000);
      }
    } finally {
      streaming = false;
    }
    await within(stream, 'node 1 to answer the last PUBLISH of the stream');
    await publish(channel, 'Marker');
    assert.deepEqual(await beforeMarker(bystander, 'the marker on node 2'), range(1, sent), 'node 2: every event once, in order');
    for (const [i, o] of orphans.entries()) {
      const seqs = (await beforeMarker(o, `the marker at client ${i}`)).filter((x) => typeof x === 'number');
      assert.ok(seqs.every((x, k) => k === 0 || x > seqs[k - 1]), `client ${i}: no duplicates, in order: ${seqs}`);
      assert.equal(seqs.at(-1), sent, `client ${i}: the last event`);
    }
}));

test('rediss://: nodes meet over TLS, trusting the system store (SSL_CERT_FILE here); a certificate it does not vouch for is refused unless the URL says #insecure', async () => {
  const secure = await startRedisServer({ tls: true });
  const nodes = [];
  try {
    const node = async (url, env = {}) => {
      const h = await startHerald(['--cluster', url, '--auth-endpoint', auth.endpoint], env);
      nodes.push(h);
      return h;
    };
    const a = await node(secure.url, { SSL_CERT_FILE: secure.ca }); // the test CA is in its trust store
    const b = await node(`${secure.url}/#insecure`);
    const strict = await node(secure.url); // the machine's store, without the test CA
    let last;
    await until(async () => { last = await healthz(strict); return last[0] === 503 && /backplane/.test(last[1]) && /certificate|UnknownIssuer|tls/i.test(last[1]); },
      'the strict node to say its backplane is unreachable for the certificate').catch((e) => { e.message += `; last: ${last}`; throw e; });
    assert.equal(await metric(strict, 'herald_cluster_up'), 0);

    const channel = 'orders.cluster-tls';
    const far = await pusherIn(b, channel);
    const publish = await laravelPublisher(a);
    await crossReady(() => publish(channel, 'Probe'), [far], 'node a\'s probes on node b, over TLS');
    await Promise.all(range(1, 20).map((n) => publish(channel, 'Seq', { n })));
    await publish(channel, 'Marker');
    assert.deepEqual(await beforeMarker(far, 'the marker on node b'), range(1, 20));
    assert.equal(await metric(a, 'herald_cluster_up'), 1);
  } finally {
    for (const c of open) c.close();
    open = [];
    for (const h of nodes) await h.stop();
    await secure.stop();
  }
});

test('the HTTP API answers for every node: channels and users counted once across nodes, terminate_connections everywhere', async () => {
  const channel = 'presence-cluster-i';
  // A pusher-js client of `user` on node `h`, signed in and on the presence channel; it
  // records the pusher:error codes it is sent.
  const member = async (h, user) => {
    const client = await connected(pusherClient(h, { user: { user_id: user, user_info: {} } }));
    open.push({ close: () => client.disconnect() });
    const errors = inbox();
    client.connection.bind('error', (e) => errors.add(e.data && e.data.code));
    await signedIn(client);
    await subscribed(client, channel);
    return { client, errors };
  };
  const adaOn1 = await member(n1, 'ada');
  const adaOn3 = await member(n3, 'ada');
  const bobOn2 = await member(n2, 'bob');
  const api = sdk(n2);
  const get = async (path, params) => (await api.get({ path, params })).json();

  assert.deepEqual(await get(`/channels/${channel}`, { info: 'user_count,subscription_count' }),
    { occupied: true, user_count: 2, subscription_count: 3 }, 'three connections, two users, on three nodes');
  assert.deepEqual(await get('/channels', { filter_by_prefix: channel, info: 'user_count,subscription_count' }),
    { channels: { [channel]: { user_count: 2, subscription_count: 3 } } });
  assert.deepEqual((await get(`/channels/${channel}/users`)).users.map((u) => u.id).sort(), ['ada', 'bob']);
  assert.deepEqual(await get('/channels/presence-cluster-nobody'), { occupied: false });

  // Ada's connections are on nodes 1 and 3; the request goes to node 2.
  await api.terminateUserConnections('ada');
  for (const [who, c] of [['on node 1', adaOn1], ['on node 3', adaOn3]]) {
    await c.errors.waitFor((code) => code === 4009, `ada ${who} to be told 4009`);
  }
  await until(async () => (await get(`/channels/${channel}`, { info: 'subscription_count' })).subscription_count === 1,
    'only bob left on the channel');
  assert.deepEqual(bobOn2.errors.items, [], 'bob is left alone');
  assert.equal(bobOn2.client.connection.state, 'connected');
});
