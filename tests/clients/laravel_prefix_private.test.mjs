// A Laravel app whose APP_NAME gives another Redis key prefix than herald was told
// (APP_NAME "My Shop": `my_shop_database_`, or `my-shop-database-` in newer skeletons) must
// not turn its private channels public. The real Laravel RedisBroadcaster (php) broadcasts on
// `private-orders.1` with that prefix, herald left at its default prefixes: strangers who
// subscribe to the prefixed name (socket.io-client, pusher-js) or to `private-orders.1`
// without a valid authorization are refused and receive nothing (ordered marker: a public
// broadcast sent after it arrives first), authorized subscribers of `private-orders.1` receive
// it, and herald says once which prefix it learned and which flag to set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import PusherJs from 'pusher-js';
import { startHerald } from './lib/herald.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { APP, clientOptions, pusherClient, connected, subscribed, next } from './pusher_fixtures.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WAIT = 10000;

const php = (args) => new Promise((resolve, reject) => {
  execFile('php', args, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
});

// The prefix as config/database.php computes it, with Laravel's own Str::slug.
const laravelPrefix = (expression) => php(['-r',
  `require 'Illuminate/autoload.php'; use Illuminate\\Support\\Str; echo ${expression};`]);

let app;
let open = [];
before(async () => { app = await startAuthApp(); });
after(() => app.close());

// Each test's clients go before its herald does (pusher-js would reconnect forever).
function closeClients() {
  for (const c of open) c.disconnect();
  open = [];
}

// A socket.io-client recording every event it receives, in order.
async function ioClient(h, headers) {
  const socket = io(h.url, {
    transports: ['websocket'], forceNew: true, reconnection: false,
    ...(headers && { auth: { headers } }),
  });
  open.push(socket);
  socket.seen = [];
  socket.onAny((event, ...args) => socket.seen.push([event, ...args]));
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}

// Echo's subscribe, acknowledged once herald has joined or refused the channel.
const ioSubscribe = (socket, channel) =>
  socket.timeout(WAIT).emitWithAck('subscribe', { channel, auth: { headers: {} } });

// A pusher-js client recording every event of every channel it receives, in order.
async function pusherJs(h, options) {
  const c = options ? new PusherJs(APP.key, clientOptions(h, options)) : pusherClient(h);
  open.push(c);
  c.seen = [];
  c.bind_global((event, data) => c.seen.push(event));
  return connected(c, WAIT);
}

function until(pred, what) {
  return new Promise((resolve, reject) => {
    const end = Date.now() + WAIT;
    const check = () => {
      if (pred()) return resolve();
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 20);
    };
    check();
  });
}

for (const [shape, expression] of [
  ['Laravel 5.8 to 11', `Str::slug('My Shop', '_').'_database_'`],
  ['newer skeletons', `Str::slug('My Shop').'-database-'`],
]) {
  test(`${shape}: a private broadcast behind an unknown prefix reaches only authorized subscribers`, async () => {
    const prefix = await laravelPrefix(expression);
    assert.match(prefix, /^my.shop.database.$/);
    const prefixed = `${prefix}private-orders.1`;
    // Recovery off: everything the socket gets is compared, without `herald:offset` and offsets.
    const h = await startHerald(['--auth-endpoint', app.endpoint, '--recovery-window', '0']);
    try {
      const broadcast = (channel, event, data) => php([
        path.join(root, 'tests/php/broadcast.php'), '--port', String(h.redisPort), '--client', 'phpredis',
        '--prefix', prefix, '--channel', channel, '--event', event, '--data', JSON.stringify(data),
      ]);

      // Strangers on socket.io: the prefixed name, and the private name with no user.
      const ioPrefixed = await ioClient(h);
      const ioGuest = await ioClient(h);
      for (const [socket, channel] of [[ioPrefixed, prefixed], [ioGuest, 'private-orders.1']]) {
        await ioSubscribe(socket, 'market');
        await ioSubscribe(socket, channel);
        assert.deepEqual(socket.seen, [['subscription_error', channel, 403]], channel);
      }
      // Strangers on Pusher: pusher-js takes the prefixed name for a public channel and sends
      // no auth; a forged signature for the private name.
      const pusherPrefixed = await pusherJs(h, {});
      const pusherForged = await pusherJs(h, {
        channelAuthorization: { customHandler: (_, cb) => cb(null, { auth: `${APP.key}:${'0'.repeat(64)}` }) },
      });
      for (const [c, channel] of [[pusherPrefixed, prefixed], [pusherForged, 'private-orders.1']]) {
        await subscribed(c, 'market', WAIT);
        const refused = await next(c.subscribe(channel), 'pusher:subscription_error', WAIT);
        assert.equal(refused.data.status, 401, channel);
      }

      // Authorized subscribers of private-orders.1 (user 1, as the app's channel rule says).
      const ioOwner = await ioClient(h, { Authorization: 'Bearer 1' });
      await ioSubscribe(ioOwner, 'private-orders.1');
      const pusherOwner = await pusherJs(h);
      const ownerChannel = await subscribed(pusherOwner, 'private-orders.1', WAIT);
      const ownerGot = next(ownerChannel, 'App\\Events\\OrderShipped', WAIT);

      await broadcast('private-orders.1', 'App\\Events\\OrderShipped', { id: 1 });
      await broadcast('private-orders.1', 'App\\Events\\OrderShipped', { id: 2 });
      await broadcast('market', 'Marker', { n: 1 });

      assert.deepEqual((await ownerGot).data, { id: 1 });
      await until(() => ioOwner.seen.length === 2, 'the owner\'s two broadcasts on socket.io');
      assert.deepEqual(ioOwner.seen, [
        ['App\\Events\\OrderShipped', 'private-orders.1', { id: 1 }],
        ['App\\Events\\OrderShipped', 'private-orders.1', { id: 2 }],
      ]);
      for (const socket of [ioPrefixed, ioGuest]) {
        await until(() => socket.seen.some(([e]) => e === 'Marker'), 'the marker on socket.io');
        assert.deepEqual(socket.seen.map(([e]) => e), ['subscription_error', 'Marker']);
      }
      for (const c of [pusherPrefixed, pusherForged]) {
        await until(() => c.seen.includes('Marker'), 'the marker on pusher-js');
        assert.equal(c.seen.includes('App\\Events\\OrderShipped'), false, c.seen.join(', '));
      }

      const said = h.logs.filter((l) => l.includes(`--redis-prefix ${prefix}`));
      assert.equal(said.length, 1, `the learned prefix is logged once:\n${h.logs.join('\n')}`);
    } finally {
      closeClients();
      await h.stop();
    }
  });
}
