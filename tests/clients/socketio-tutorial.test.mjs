// examples/tutorial end to end: a Laravel event with broadcastAs() = 'wechat.login', fired
// through Laravel's BroadcastEvent job and RedisBroadcaster (php), reaches tutorial-style
// socket.io clients that subscribe to nothing, as "<channel>:<event>".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { startHerald, once, redisCli, laravelPayload } from './lib/herald.mjs';
import { inbox, subscribe } from './lib/wait.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let h, plain;
before(async () => {
  h = await startHerald(['--socketio-broadcast-public', 'true']);
  plain = await startHerald([]);
});
after(async () => { await h.stop(); await plain.stop(); });

const fire = (port, client, ticket, token) => new Promise((resolve, reject) => execFile('php', [
  path.join(root, 'examples/tutorial/fire.php'), '--port', String(port), '--ticket', ticket, '--token', token, `--client=${client}`,
], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve())));

for (const client of ['phpredis', 'predis']) {
  test(`the tutorial's clients receive "<channel>:wechat.login" (${client})`, async () => {
    const v2 = ioV2(h.url, { forceNew: true, reconnection: false });
    const v4 = io(h.url, { forceNew: true, reconnection: false });
    await Promise.all([once(v2, 'connect'), once(v4, 'connect')]);
    const got = Promise.all([once(v2, 'wechat-login.4f2a:wechat.login'), once(v4, 'wechat-login.4f2a:wechat.login')]);
    await fire(h.redisPort, client, '4f2a', `token-${client}`);
    const [[a], [b]] = await got;
    assert.deepEqual(a, { token: `token-${client}` });
    assert.deepEqual(b, a);
    v2.close();
    v4.close();
  });
}

test('without --socketio-broadcast-public nothing is emitted to unsubscribed sockets', async () => {
  const socket = io(plain.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(socket, 'connect');
  await subscribe(socket, 'marker');
  const seen = inbox();
  socket.onAny((e) => seen.add(e));
  await fire(plain.redisPort, 'predis', '4f2a', 't');
  // Published after the event fired: what the socket gets before it came from the event.
  assert.equal(await redisCli(plain.redisPort, 'PUBLISH', 'laravel_database_marker', laravelPayload('Marker', {})), '1');
  assert.deepEqual(await seen.before((e) => e === 'Marker'), []);
  socket.close();
});
