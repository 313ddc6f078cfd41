// The redis-driver path into the Pusher edge over real RESP: redis-cli PUBLISH and the
// real Laravel RedisBroadcaster (tests/php/broadcast.php, phpredis and predis) publish to
// herald; pusher-js clients of the default app receive the event with the key prefix
// stripped, and the socket named by toOthers() is left out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHerald, redisCli, laravelPayload } from './lib/herald.mjs';
import { inbox } from './lib/wait.mjs';
import { pusherClient, connected, subscribed, next } from './pusher_fixtures.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let h;
const clients = [];
const client = () => { const c = pusherClient(h); clients.push(c); return connected(c); };

function broadcast(args) {
  return new Promise((resolve, reject) => {
    execFile('php', [path.join(root, 'tests/php/broadcast.php'), '--port', String(h.redisPort), ...args],
      (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
  });
}

before(async () => { h = await startHerald(); });
after(async () => { for (const c of clients) c.disconnect(); await h.stop(); });

test('redis-cli PUBLISH on the prefixed channel reaches pusher-js, prefix stripped', async () => {
  const c = await client();
  const ch = await subscribed(c, 'orders.1');
  const got = next(ch, 'App\\Events\\OrderShipped');
  const receivers = await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.1',
    laravelPayload('App\\Events\\OrderShipped', { id: 1 }));
  assert.equal(receivers, '1');
  assert.deepEqual((await got).data, { id: 1, socket: null });
});

test('the socket in the envelope (toOthers) is left out', async () => {
  const a = await client();
  const b = await client();
  const [ach, bch] = [await subscribed(a, 'private-room.1'), await subscribed(b, 'private-room.1')];
  const aGot = inbox();
  ach.bind_global((event) => { if (!event.startsWith('pusher')) aGot.add(event); });
  const got = next(bch, 'Said');
  await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_private-room.1',
    laravelPayload('Said', { text: 'hi' }, a.connection.socket_id));
  assert.equal((await got).data.text, 'hi');
  await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_private-room.1', laravelPayload('Marker', {}));
  assert.deepEqual(await aGot.before((e) => e === 'Marker'), [], 'the socket named in the envelope is left out');
});

for (const phpClient of ['phpredis', 'predis']) {
  test(`Laravel's RedisBroadcaster (${phpClient}) → pusher-js, toOthers honoured`, async () => {
    const a = await client();
    const b = await client();
    const name = `presence-php.${phpClient}`;
    const [ach, bch] = [await subscribed(a, name), await subscribed(b, name)];
    const aGot = inbox();
    ach.bind_global((event) => { if (!event.startsWith('pusher')) aGot.add(event); });
    const got = next(bch, 'App\\Events\\Moved');
    await broadcast(['--client', phpClient, '--channel', name, '--event', 'App\\Events\\Moved',
      '--data', JSON.stringify({ x: 1, 'é': '/' }), '--socket', a.connection.socket_id]);
    assert.deepEqual((await got).data, { x: 1, 'é': '/', socket: a.connection.socket_id });
    await broadcast(['--client', phpClient, '--channel', name, '--event', 'App\\Events\\Marker', '--data', '{}']);
    assert.deepEqual(await aGot.before((e) => e === 'App\\Events\\Marker'), [], 'toOthers() leaves the sender out');
  });
}
