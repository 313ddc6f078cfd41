// A real Laravel Echo tab (socket.io-client over the `ws` package) whose socket stops reading is
// dropped by herald at the output-buffer hard limit, and the other members of its presence
// channel hear it leave; a normal tab on the same channel gets every broadcast, in order,
// then a marker. Broadcasts go one at a time over RESP, each once the normal tab has it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, once, sleep } from './lib/herald.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';

let h, app;
const open = [];
before(async () => {
  app = await startAuthApp();
  // socket.io recovery off: with it on, a tab dropped as a slow consumer stays a presence
  // member until the recovery window ends (socketio_recovery.test.mjs covers the window).
  h = await startHerald([
    '--recovery-window', '0',
    '--auth-endpoint', app.endpoint,
    '--outbox-hard-limit', String(256 * 1024), '--outbox-soft-limit', '0',
    '--write-timeout-ms', '120000',
  ]);
});
after(async () => {
  for (const e of open) e.disconnect();
  await h.stop();
  await app.close();
});

async function tab(user) {
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false, auth: { headers: { Authorization: `Bearer ${user}` } },
  });
  open.push(echo);
  if (!echo.connector.socket.connected) await once(echo.connector.socket, 'connect');
  return echo;
}

// PUBLISH over one RESP connection, as Laravel's redis broadcaster sends it.
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
      const args = ['PUBLISH', `laravel_database_${channel}`, JSON.stringify({ event, data, socket: null })];
      sock.write(`*3\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
      return new Promise((resolve) => replies.push(resolve));
    },
    close: () => sock.end(),
  };
}

async function until(what, pred, ms = 10000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not in time`);
    await sleep(5);
  }
}

async function dropped() {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  return Number(/^herald_slow_consumers_dropped_total (\d+)$/m.exec(text)[1]);
}

test('an Echo tab that stops reading is dropped at the hard limit and announced as leaving', async () => {
  const ann = await tab(1);
  const room = ann.join('room');
  const got = [];
  const leaving = [];
  const joining = [];
  room.listen('.E', (e) => got.push(e.n)).listen('.Marker', () => got.push('marker'));
  const here = [];
  room.here((members) => here.push(members)).leaving((u) => leaving.push(u)).joining((u) => joining.push(u));
  // Ann is in before Bob asks: their two authorizations may otherwise finish in either order.
  await until('Ann in the room', () => here.length === 1);
  const bob = await tab(2);
  bob.join('room');
  await until('Bob joining', () => joining.length === 1);
  assert.deepEqual(joining, [{ id: 2, name: 'Bob' }]);

  // Bob's tab stops reading its socket; the kernel buffers fill, then herald's outbox.
  const transport = bob.connector.socket.io.engine.transport;
  assert.equal(transport.name, 'websocket');
  transport.ws._socket.pause();

  const resp = publisher(h.redisPort);
  const pad = 'x'.repeat(32 * 1024);
  const before = await dropped();
  let n = 0;
  const giveUp = Date.now() + 30000;
  while (leaving.length === 0) {
    assert.ok(Date.now() < giveUp, `Bob was never dropped (${n} broadcasts of 32 KiB)`);
    await resp.publish('presence-room', 'E', { n, pad });
    const want = n + 1;
    await until(`broadcast ${n}`, () => got.length === want);
    n += 1;
  }
  // Dropped: the next broadcast reaches Ann alone, and nothing was lost on her side.
  assert.equal(await resp.publish('presence-room', 'Marker', {}), ':1');
  await until('the marker', () => got.at(-1) === 'marker');
  assert.deepEqual(got, [...Array(n).keys(), 'marker']);
  assert.deepEqual(leaving, [{ id: 2, name: 'Bob' }]);
  assert.equal(await dropped(), before + 1);
  resp.close();
});
