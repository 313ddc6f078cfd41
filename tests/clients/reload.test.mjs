// SIGHUP: herald reads its configuration file again and serves its Pusher apps from then on,
// without dropping anyone. With pusher-js clients and the `pusher` SDK as the app's backend:
//   - a rotated secret signs from then on (the SDK with the old one is refused with 401, the
//     new one's event reaches a client that connected before the rotation);
//   - an added app takes connections and its API; a removed one refuses new connections
//     (4001) and API requests (404) while its open connection stays;
//   - a file that does not parse keeps the running configuration, says why in the log and
//     counts it; nobody is disconnected;
//   - server-wide settings apply from the next connection, message or AUTH on: allowed origins
//     (socket.io's handshake, a Pusher app without its own), the channel limit, a RESP
//     password; a connection made before keeps what it had. A setting that needs a restart is
//     named in the log and keeps its value;
//   - a changed log filter (`log`) is in force at once: debug lines of one module appear, and
//     stop again.
// Each reload is waited for on /metrics (herald_config_reloads_total or _failures_total).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startHerald, metric, redisCli } from './lib/herald.mjs';
import { rawUpgrade } from './lib/rawws.mjs';
import { inbox, until, once, subscribe } from './lib/wait.mjs';
import { PusherServer, pusherClient, connected, subscribed } from './pusher_fixtures.mjs';

const app = (id, secret) => ({ appId: id, key: `${id}-key`, secret });
// Each app posts its webhooks (occupancy at once) to the receiver, under /<id>.
const toml = (apps) => apps.map((a) => [
  '[[apps]]', `id = "${a.appId}"`, `key = "${a.key}"`, `secret = "${a.secret}"`,
  `webhooks = [{ url = "${hooks.url}/${a.appId}" }]`, '',
].join('\n')).join('\n');

let h, dir, file, hooks;
const clients = [];
before(async () => {
  hooks = await startReceiver();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-reload-'));
  file = path.join(dir, 'herald.toml');
  fs.writeFileSync(file, toml([app('shop', 'old-secret'), app('gone', 'gone-secret')]));
  h = await startHerald(['--config', file, '--webhook-occupancy-delay-ms', '0']);
});
after(async () => {
  for (const c of clients) c.disconnect();
  await h?.stop();
  hooks?.server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const sdk = (a) => new PusherServer({ ...a, host: '127.0.0.1', port: h.httpPort, useTLS: false });
const client = async (a) => {
  const c = pusherClient(h, { app: a });
  clients.push(c);
  return connected(c);
};

// The app's webhook endpoint: each request as received.
async function startReceiver() {
  const requests = inbox();
  const server = http.createServer((req, res) => {
    let rawBody = '';
    req.on('data', (c) => { rawBody += c; });
    req.on('end', () => {
      requests.add({ url: req.url, headers: req.headers, rawBody });
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, requests, url: `http://127.0.0.1:${server.address().port}` };
}

// Write the file, send SIGHUP, wait until herald has counted the reload (`counter`).
async function reload(text, counter = 'herald_config_reloads_total') {
  const before = await metric(h, counter);
  fs.writeFileSync(file, text);
  h.proc.kill('SIGHUP');
  await until(async () => await metric(h, counter) > before, `${counter} to count the reload`);
}

// The next pusher-js connection to `a` fails with this Pusher error code.
function refused(a) {
  const c = pusherClient(h, { app: a });
  clients.push(c);
  return new Promise((resolve) => c.connection.bind('error', (e) => {
    c.disconnect();
    resolve(e?.error?.data?.code);
  }));
}

test('a rotated secret signs from then on; a client connected before it stays and gets the new events', async () => {
  const shop = app('shop', 'old-secret');
  const c = await client(shop);
  const ch = await subscribed(c, 'orders');
  const got = inbox();
  ch.bind('shipped', (d) => got.add(d.n));
  await sdk(shop).trigger('orders', 'shipped', { n: 1 });
  await got.count(1, 'the event signed with the old secret');

  const rotated = app('shop', 'new-secret');
  await reload(toml([rotated, app('gone', 'gone-secret')]));
  await assert.rejects(sdk(shop).trigger('orders', 'shipped', { n: 2 }), (e) => e.status === 401);
  await sdk(rotated).trigger('orders', 'shipped', { n: 3 });
  assert.deepEqual(await got.count(2, 'the event signed with the new secret'), [1, 3]);
  assert.equal(c.connection.state, 'connected');
  // Its webhooks are signed with the new secret too.
  await subscribed(c, 'after-rotation');
  const req = await hooks.requests.waitFor((r) => r.url === '/shop' && r.rawBody.includes('after-rotation'),
    'the webhook of the new subscription');
  assert.equal(sdk(rotated).webhook({ headers: req.headers, rawBody: req.rawBody }).isValid(), true);
  assert.equal(sdk(shop).webhook({ headers: req.headers, rawBody: req.rawBody }).isValid(), false);
});

test('an added app is served, a removed one refuses new connections and keeps its open one', async () => {
  const gone = app('gone', 'gone-secret');
  const blog = app('blog', 'blog-secret');
  assert.equal(await refused(blog), 4001, 'not served yet');
  const open = await client(gone);
  await reload(toml([app('shop', 'new-secret'), blog]));
  const b = await client(blog);
  const ch = await subscribed(b, 'posts');
  const got = inbox();
  ch.bind('published', (d) => got.add(d.n));
  await sdk(blog).trigger('posts', 'published', { n: 1 });
  await got.count(1, 'the new app\'s event');
  assert.equal(await refused(gone), 4001, 'the removed app takes no new connection');
  await assert.rejects(sdk(gone).trigger('x', 'e', {}), (e) => e.status === 404);
  assert.equal(open.connection.state, 'connected', 'its open connection stays');
});

test('a file that does not parse keeps the running configuration and says why', async () => {
  const shop = app('shop', 'new-secret');
  const c = await client(shop);
  const before = await metric(h, 'herald_ws_connections');
  await reload('[[apps]\nid = ', 'herald_config_reload_failures_total');
  assert.ok(h.logs.some((l) => l.includes('configuration not reloaded')), 'the log says why');
  await sdk(shop).trigger('still', 'e', {});
  assert.equal(await metric(h, 'herald_ws_connections'), before, 'nobody disconnected');
  assert.equal(c.connection.state, 'connected');
});

// The Engine.IO handshake from a page at `origin`: its status.
async function sioHandshake(origin) {
  return (await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } })).status;
}

// The first frame a Pusher connection to `a` from a page at `origin` gets.
async function pusherFirst(a, origin) {
  const { ws } = await rawUpgrade(h.httpPort, `/app/${a.key}?protocol=7`, { Origin: origin });
  const first = JSON.parse((await ws.next()).toString());
  ws.end();
  const data = typeof first.data === 'string' ? JSON.parse(first.data) : first.data;
  return first.event === 'pusher:error' ? data.code : first.event;
}

test('server-wide limits, origins and the RESP password apply from the next connection on; a restart-only one is named', async () => {
  const shop = app('shop', 'new-secret');
  const evil = 'https://evil.test';
  assert.equal(await sioHandshake(evil), 200, 'any origin before');
  assert.equal(await pusherFirst(shop, evil), 'pusher:connection_established');
  const before = await client(shop);
  for (const c of ['a', 'b']) await subscribed(before, c);
  await redisCli(h.redisPort, 'PUBLISH', 'x', 'no password yet');

  await reload([
    'allowed_origins = ["https://shop.test"]',
    'max_channels_per_connection = 2',
    'requirepass = "s3cret"',
    'http_header_timeout_ms = 9000',
    '',
    toml([shop]),
  ].join('\n'));
  assert.equal(await sioHandshake(evil), 403, 'socket.io refuses the origin now');
  assert.equal(await sioHandshake('https://shop.test'), 200);
  assert.equal(await pusherFirst(shop, evil), 4009, 'the app without origins of its own takes the new ones');
  assert.equal(await pusherFirst(shop, 'https://shop.test'), 'pusher:connection_established');

  const after = await client(shop);
  for (const c of ['a', 'b']) await subscribed(after, c);
  const third = after.subscribe('c');
  const refusal = await new Promise((resolve) => third.bind('pusher:subscription_error', resolve));
  assert.equal(refusal.status, 429, 'the new connection has the new channel limit');
  await subscribed(before, 'c');
  assert.equal(before.connection.state, 'connected', 'the older connection keeps its own');

  assert.match(await redisCli(h.redisPort, 'PUBLISH', 'x', 'y'), /^NOAUTH Authentication required/);
  assert.equal(await redisCli(h.redisPort, '--no-auth-warning', '-a', 's3cret', 'PUBLISH', 'x', 'y'), '0');
  const restart = h.logs.find((l) => l.includes('take effect only after a restart'));
  assert.ok(restart && restart.includes('http_header_timeout'), `the log names it: ${restart}`);
  assert.ok(!restart.includes('allowed_origins'), 'not one that applied');
});

test('a changed log filter is in force at once, and a reload back puts the old one back', async () => {
  // A subscription to an invalid channel name is refused with a debug line of the socket.io
  // edge's. A reload's own info line, written after it, is the ordered marker of its absence.
  const socket = io(h.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
  await once(socket, 'connect');
  const refused = () => h.logs.filter((l) => l.includes('refused: invalid channel name')).length;
  const reloaded = () => h.logs.filter((l) => l.includes('configuration reloaded')).length;
  const shop = toml([app('shop', 'new-secret')]);
  try {
    await subscribe(socket, 'not valid!');
    let marker = reloaded();
    await reload(shop);
    await until(() => reloaded() > marker, 'the reload logged');
    assert.equal(refused(), 0, 'no debug line at info');

    await reload(`log = "info,herald::socketio=debug"\n${shop}`);
    await subscribe(socket, 'not valid!');
    await until(() => refused() === 1, 'the debug line once the filter changed');

    marker = reloaded();
    await reload(shop);
    await until(() => reloaded() > marker, 'the reload back logged');
    await subscribe(socket, 'not valid!');
    marker = reloaded();
    await reload(shop);
    await until(() => reloaded() > marker, 'a later reload logged');
    assert.equal(refused(), 1, 'no debug line once back at info');
  } finally {
    socket.close();
  }
});
