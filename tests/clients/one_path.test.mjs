// One path for every publication, with the real clients: whichever ingress a publication enters
// by (redis-cli PUBLISH, Laravel's EVAL, the `pusher` SDK's trigger and triggerBatch, a pusher-js
// client event, a socket.io-client whisper), it reaches the subscribers its namespace says — on
// socket.io, on Pusher and on RESP (redis-cli SUBSCRIBE) — and nobody else, in publication order.
// RESP, socket.io and the default Pusher app share one namespace; the `other` app is its own.
// Absence is proved with an ordered marker, published after everything that must not arrive.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startHerald, redisCli, once, metric } from './lib/herald.mjs';
import { redisCliSubscriber } from './lib/redis-cli.mjs';
import { inbox, subscribe, until } from './lib/wait.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { APP, sdk, pusherClient, connected, subscribed } from './pusher_fixtures.mjs';

const OTHER = { appId: 'other', key: 'other-key', secret: 'other-secret' };
const SCRIPT = "for i = 2, #ARGV do\n  redis.call('publish', ARGV[i], ARGV[1])\nend";

let h, auth;
let open = [];
before(async () => {
  auth = await startAuthApp();
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-')), 'apps.toml');
  fs.writeFileSync(file, `[[apps]]\nid = "${OTHER.appId}"\nkey = "${OTHER.key}"\nsecret = "${OTHER.secret}"\n`);
  h = await startHerald(['--config', file, '--auth-endpoint', auth.endpoint]);
});
afterEach(async () => {
  for (const c of open) c.close ? c.close() : c.disconnect();
  open = [];
  await until(async () => await metric(h, 'herald_ws_connections') === 0, 'the clients of the test to close');
});
after(async () => {
  await h.stop();
  await auth.close();
});

const laravel = (event, data) => JSON.stringify({ event, data, socket: null });

// A socket.io-client socket (Echo's protocol, user 1's bearer token) in `channel`; everything
// herald emits to it lands in `got` as [event, channel, data]. The recovery offset herald
// appends to each event (the channel's `<epoch>-<seq>`) is checked and left out: one epoch per
// channel, sequence strictly increasing (an event out of offset order lands as 'OUT OF ORDER');
// the `herald:offset` sent after CONNECT is left out.
async function socketio(channel) {
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  open.push(socket);
  await once(socket, 'connect');
  const got = inbox();
  const last = new Map();
  socket.onAny((event, ...args) => {
    if (event === 'herald:offset') return;
    const [epoch, seq] = args.pop().split('-');
    const prev = last.get(args[0]);
    if (prev && (prev.epoch !== epoch || Number(seq) <= prev.seq)) got.add(['OUT OF ORDER', event, ...args]);
    last.set(args[0], { epoch, seq: Number(seq) });
    got.add([event, ...args]);
  });
  await subscribe(socket, channel, { auth: { headers: { Authorization: 'Bearer 1' } } });
  return { socket, got };
}

// A pusher-js client of `app` subscribed to `channel`; its events (not pusher:*) land in `got`
// as [event, data].
async function pusher(channel, app = APP) {
  const client = await connected(pusherClient(h, { app }));
  open.push(client);
  const ch = await subscribed(client, channel);
  const got = inbox();
  ch.bind_global((event, data) => { if (!event.startsWith('pusher')) got.add([event, data]); });
  return { client, ch, got };
}

// redis-cli SUBSCRIBE (or PSUBSCRIBE) as a real RESP subscriber; its deliveries land in `got`
// as [channel, payload].
async function resp(verb, ...names) {
  const got = inbox();
  open.push(await redisCliSubscriber(h.redisPort, verb, names, got.add));
  return { got };
}

const isMarker = (item) => item[0] === 'Marker' || item[0] === 'M';

test('server publications from every ingress reach their namespace on both edges and RESP, in order', async () => {
  const ch = 'orders.onepath';
  const s = await socketio(ch);
  const p = await pusher(ch);
  const o = await pusher(ch, OTHER);
  const r = await resp('SUBSCRIBE', `laravel_database_${ch}`, ch);

  assert.equal(await redisCli(h.redisPort, 'PUBLISH', `laravel_database_${ch}`, laravel('E1', { n: 1 })), '3');
  await redisCli(h.redisPort, 'EVAL', SCRIPT, '0', laravel('E2', { n: 2 }), `laravel_database_${ch}`, 'laravel_database_nobody');
  await sdk(h).trigger(ch, 'E3', { n: 3 });
  await sdk(h).triggerBatch([{ channel: ch, name: 'E4', data: 'plain text' }, { channel: 'elsewhere', name: 'E5', data: {} }]);
  await sdk(h, OTHER).trigger(ch, 'O1', { o: 1 });
  await redisCli(h.redisPort, 'PUBLISH', ch, laravel('Marker', {}));

  assert.deepEqual(await s.got.before(isMarker, 'the marker on socket.io'), [
    ['E1', ch, { n: 1 }], ['E2', ch, { n: 2 }], ['E3', ch, { n: 3 }], ['E4', ch, 'plain text'],
  ]);
  assert.deepEqual(await p.got.before(isMarker, 'the marker on Pusher'), [
    ['E1', { n: 1 }], ['E2', { n: 2 }], ['E3', { n: 3 }], ['E4', 'plain text'],
  ]);
  const events = (items) => items.map(([, payload]) => JSON.parse(payload).event);
  assert.deepEqual(events(await r.got.before(([, payload]) => payload.includes('Marker'), 'the marker on RESP')),
    ['E1', 'E2', 'E3', 'E4']);
  assert.deepEqual(r.got.items.map(([channel]) => channel),
    [`laravel_database_${ch}`, `laravel_database_${ch}`, ch, ch, ch], 'RESP sees each under the name published');
  // The other app: its own event only, before its own marker.
  await sdk(h, OTHER).trigger(ch, 'M', {});
  assert.deepEqual(await o.got.before(isMarker, 'the other app\'s marker'), [['O1', { o: 1 }]]);
});

test('client events and whispers reach the other clients of their namespace, not RESP', async () => {
  const ch = 'private-chat.onepath';
  const [s1, s2] = [await socketio(ch), await socketio(ch)];
  const [p1, p2] = [await pusher(ch), await pusher(ch)];
  const [o1, o2] = [await pusher(ch, OTHER), await pusher(ch, OTHER)];
  const r = await resp('PSUBSCRIBE', '*');

  s1.socket.emit('client event', { channel: ch, event: 'client-typing', data: { w: 1 } });
  await p2.got.waitFor(([e]) => e === 'client-typing', 'the whisper on Pusher');
  assert.equal(p1.ch.trigger('client-said', { p: 1 }), true);
  assert.equal(o1.ch.trigger('client-other', { o: 1 }), true);
  await p2.got.waitFor(([e]) => e === 'client-said', 'the client event on Pusher');
  await o2.got.waitFor(([e]) => e === 'client-other', 'the other app\'s client event');
  await sdk(h).trigger(ch, 'M', {});
  await sdk(h, OTHER).trigger(ch, 'M', {});

  const whisper = ['client-typing', ch, { w: 1 }];
  const said = ['client-said', ch, { p: 1 }];
  assert.deepEqual(await s1.got.before(isMarker), [said], 'not its own whisper');
  assert.deepEqual(await s2.got.before(isMarker), [whisper, said]);
  assert.deepEqual(await p1.got.before(isMarker), [['client-typing', { w: 1 }]], 'not its own client event');
  assert.deepEqual(await p2.got.before(isMarker), [['client-typing', { w: 1 }], ['client-said', { p: 1 }]]);
  assert.deepEqual(await o1.got.before(isMarker), []);
  assert.deepEqual(await o2.got.before(isMarker), [['client-other', { o: 1 }]]);
  assert.deepEqual(await r.got.before(([, payload]) => payload.includes('"M"'), 'the marker on RESP'), [],
    'no client event on RESP');
});
