// The live dashboard (`--dashboard-token`) in headless Chromium (Debian's, through
// playwright-core), with real clients on the other side:
//   - without a token herald has no dashboard: every /dashboard path is 404;
//   - without the token the page is refused (401, the token form, not the dashboard), and its
//     WebSocket too (401; 403 from another origin); with it the page loads, keeps the token in
//     an HttpOnly cookie and drops it from the address;
//   - publications with redis-cli and a pusher-js client move the counters and tables;
//   - socket.io subscriptions to a private channel, authorized or refused by the fixture Laravel
//     app, show as auth-callback requests, latency and refusals;
//   - a RESP subscriber that stops reading, dropped at the output-buffer limit, is counted;
//   - the console shows an event published (redis-cli) on the channel it watches;
//   - the console's test event reaches a pusher-js client and a socket.io client;
//   - the console picks another Pusher app's namespace: it watches and publishes there, and the
//     default app's client of the same channel name gets nothing;
//   - with --cluster, the dashboard of one node lists every node (asked through Redis), and its
//     test event reaches a client of another node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { chromium } from 'playwright-core';
import { startHerald, redisCli, laravelPayload } from './lib/herald.mjs';
import { inbox, until, within, subscribe } from './lib/wait.mjs';
import { startRedisServer } from './lib/redis-server.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';
import { pusherClient, connected, subscribed } from './pusher_fixtures.mjs';

const TOKEN = 'dashboard-test-token-0123456789';
let h, app, browser;
const closers = [];

before(async () => {
  app = await startAuthApp();
  h = await startHerald(['--dashboard-token', TOKEN, '--auth-endpoint', app.endpoint]);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  for (const close of closers) close();
  await browser?.close();
  await h?.stop();
  await app?.close();
});

// A fresh browser context (no cookie yet) with the dashboard open and live.
async function openDashboard(on = h) {
  const context = await browser.newContext();
  closers.push(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const res = await page.goto(`${on.url}/dashboard?token=${encodeURIComponent(TOKEN)}`);
  assert.equal(res.status(), 200);
  await page.waitForSelector('#status.on', { timeout: 10000 });
  return { context, page };
}

// Watch `channel` of `namespace` in the page's console, and wait until herald says so.
async function watch(page, namespace, channel) {
  await page.selectOption('#namespace', namespace);
  await page.fill('#watch-channel', channel);
  await page.click('#watch-btn');
  await page.waitForSelector(`text=Watching ${namespace} / ${channel}`, { timeout: 10000 });
}

// Publish the console's test event with `data` on the watched channel.
async function publishFromConsole(page, data) {
  await page.fill('#pub-data', data);
  await page.click('#pub-btn');
}

// A number shown on the page (thousands separators removed); NaN while it shows '–'.
async function shown(page, selector) {
  const text = await page.textContent(selector);
  return Number(text.replace(/,/g, ''));
}

// A WebSocket to /dashboard/ws from Node: its status if refused, or the open socket and an
// inbox of its messages (listened to from the start: the first may come with the 101).
function dashboardSocket(headers = {}) {
  return within(new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/dashboard/ws`, { headers });
    const messages = inbox();
    ws.on('message', (m) => messages.add(JSON.parse(m)));
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
    ws.on('open', () => resolve({ ws, messages }));
    ws.on('error', () => {});
  }), 'the dashboard WebSocket to open or be refused');
}

test('without --dashboard-token there is no dashboard: 404', async () => {
  const bare = await startHerald([]);
  try {
    for (const p of ['/dashboard', `/dashboard?token=${TOKEN}`, '/dashboard/dashboard.js', '/dashboard/ws']) {
      const res = await fetch(`${bare.url}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 404, p);
    }
  } finally {
    await bare.stop();
  }
});

test('the page is refused without the token and loads with it', async () => {
  const context = await browser.newContext();
  closers.push(() => context.close().catch(() => {}));
  const page = await context.newPage();

  for (const url of ['/dashboard', '/dashboard?token=wrong-token-0123456789', '/dashboard/dashboard.js']) {
    const res = await page.goto(`${h.url}${url}`);
    assert.equal(res.status(), 401, url);
    assert.equal(await page.$('#chart'), null, `${url}: no dashboard in the 401`);
  }
  assert.ok(await page.$('form input[name=token]'), 'the 401 asks for the token');

  // The form sends it; the page loads and goes live, the token leaves the address.
  await page.fill('input[name=token]', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.waitForSelector('#status.on', { timeout: 10000 });
  assert.ok(!page.url().includes('token='), `the token left the address: ${page.url()}`);
  const cookies = await context.cookies();
  const cookie = cookies.find((c) => c.name === 'herald_dashboard');
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookies));
  assert.ok(!cookie.value.includes(TOKEN), 'the cookie is not the token');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it');

  // The cookie alone opens it again.
  const again = await page.goto(`${h.url}/dashboard`);
  assert.equal(again.status(), 200);
  await page.waitForSelector('#status.on', { timeout: 10000 });

  // The WebSocket checks the token too, and where a browser page comes from.
  assert.equal((await dashboardSocket()).status, 401);
  assert.equal((await dashboardSocket({ authorization: 'Bearer wrong-token-0123456789' })).status, 401);
  assert.equal((await dashboardSocket({ cookie: `herald_dashboard=${TOKEN}` })).status, 401);
  const evil = { cookie: `herald_dashboard=${cookie.value}`, origin: 'http://evil.test' };
  assert.equal((await dashboardSocket(evil)).status, 403);
  const { ws, messages } = await dashboardSocket({ cookie: `herald_dashboard=${cookie.value}` });
  const [hello] = await messages.count(1, 'the first message');
  assert.equal(hello.type, 'hello', 'the first message is the hello');
  ws.close();
});

test('the counters move when a test publishes', async () => {
  const { page } = await openDashboard();
  await until(async () => !Number.isNaN(await shown(page, '#published-total')), 'the first figures');
  const before = await shown(page, '#published-total');

  const pusher = pusherClient(h);
  closers.push(() => pusher.disconnect());
  await connected(pusher);
  await subscribed(pusher, 'stock');
  await until(async () => (await shown(page, '#conn-pusher')) >= 1, 'the Pusher connection shown');
  await until(async () => (await page.textContent('#channels tbody')).includes('stock'), 'the channel "stock" listed');

  for (let i = 0; i < 20; i++) {
    await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_stock', laravelPayload('Tick', { i }));
  }
  await until(async () => (await shown(page, '#published-total')) >= before + 20, 'publications counted');
  await until(async () => (await shown(page, '#delivered-total')) >= 20, 'deliveries counted');
  // The rate of the last second: publishing on until a second with publications is shown.
  await until(async () => {
    await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_stock', laravelPayload('Tick', {}));
    return (await shown(page, '#pub-rate')) > 0;
  }, 'a publication rate above 0');
});

test('auth-callback requests, latency and refusals are shown', async () => {
  const { page } = await openDashboard();
  await until(async () => !Number.isNaN(await shown(page, '#auth-requests')), 'the first figures');
  const [requests, refused] = [await shown(page, '#auth-requests'), await shown(page, '#auth-refused')];

  const sio = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false });
  closers.push(() => sio.close());
  await within(new Promise((r) => sio.on('connect', r)), 'socket.io connect');
  const errors = inbox();
  sio.on('subscription_error', (channel, status) => errors.add({ channel, status }));
  // User 2 may not have user 1's orders (the app answers 403); user 1 may.
  sio.emit('subscribe', { channel: 'private-orders.1', auth: { headers: { Authorization: 'Bearer 2' } } });
  await errors.waitFor((e) => e.channel === 'private-orders.1', 'the refusal');
  // On another connection: this one's refusal is reused for a few seconds without asking.
  const allowed = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false });
  closers.push(() => allowed.close());
  await within(new Promise((r) => allowed.on('connect', r)), 'socket.io connect');
  await subscribe(allowed, 'private-orders.1', { auth: { headers: { Authorization: 'Bearer 1' } } });

  await until(async () => (await shown(page, '#auth-requests')) >= requests + 2, 'both requests counted');
  await until(async () => (await shown(page, '#auth-refused')) === refused + 1, 'the refusal counted');
  assert.match(await page.textContent('#auth-mean'), /^[\d.]+ ms$/);
});

test('a slow consumer dropped at the output-buffer limit is counted', async () => {
  const small = await startHerald(['--dashboard-token', TOKEN,
    '--outbox-hard-limit', String(256 * 1024), '--outbox-soft-limit', '0']);
  const sockets = [];
  try {
    const { page } = await openDashboard(small);
    await until(async () => (await shown(page, '#slow-dropped')) === 0, 'no drop yet');
    // A RESP subscriber that never reads again once subscribed.
    const slow = net.connect(small.redisPort, '127.0.0.1');
    sockets.push(slow);
    const cmd = (...args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
    slow.write(cmd('SUBSCRIBE', 'firehose'));
    await within(new Promise((r) => slow.once('data', r)), 'the subscription confirmed');
    slow.pause();
    const publisher = net.connect(small.redisPort, '127.0.0.1');
    sockets.push(publisher);
    publisher.on('data', () => {});
    const big = 'x'.repeat(64 * 1024);
    // Publish on until its outbox overflows past what the kernel's buffers took.
    await until(async () => {
      if (publisher.writableLength < 4 * 1024 * 1024) publisher.write(cmd('PUBLISH', 'firehose', big).repeat(16));
      return (await shown(page, '#slow-dropped')) >= 1;
    }, 'the slow consumer counted on the dashboard');
  } finally {
    for (const sock of sockets) sock.destroy();
    await small.stop();
  }
});

test('the console shows an event published on the watched channel', async () => {
  const { page } = await openDashboard();
  await watch(page, 'default', 'orders.7');
  await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7',
    laravelPayload('App\\Events\\OrderShipped', { order: 'o-7' }));
  await until(async () => {
    const log = await page.textContent('#console-log');
    return log.includes('orders.7') && log.includes('OrderShipped') && log.includes('o-7');
  }, 'the event in the console');
  // Another channel's publication does not show up.
  await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.8', laravelPayload('Other', { order: 'o-8' }));
  await redisCli(h.redisPort, 'PUBLISH', 'laravel_database_orders.7', laravelPayload('Marker', {}));
  await until(async () => (await page.textContent('#console-log')).includes('Marker'), 'the marker');
  assert.ok(!(await page.textContent('#console-log')).includes('o-8'));
});

test("the console's test event reaches pusher-js and socket.io clients", async () => {
  const pusher = pusherClient(h);
  closers.push(() => pusher.disconnect());
  await connected(pusher);
  const channel = await subscribed(pusher, 'news');
  const viaPusher = inbox();
  channel.bind('dashboard.test', viaPusher.add);

  const sio = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false });
  closers.push(() => sio.close());
  const viaSocketio = inbox();
  sio.on('dashboard.test', (ch, data) => viaSocketio.add({ ch, data }));
  await within(new Promise((r) => sio.on('connect', r)), 'socket.io connect');
  await subscribe(sio, 'news');

  const { page } = await openDashboard();
  await watch(page, 'default', 'news');
  await publishFromConsole(page, '{"headline":"from the console"}');

  const got = await viaPusher.waitFor(() => true, 'the test event on pusher-js');
  assert.deepEqual(got, { headline: 'from the console' });
  const s = await viaSocketio.waitFor(() => true, 'the test event on socket.io');
  assert.deepEqual(s, { ch: 'news', data: { headline: 'from the console' } });
  await page.waitForSelector('text=receiver(s) on this node', { timeout: 10000 });
  await until(async () => (await page.textContent('#console-log')).includes('from the console'),
    'the test event in the console too');
});

test("the console works in another Pusher app's namespace, apart from the default one", async () => {
  const SHOP = { appId: 'shop', key: 'shop-key', secret: 'shop-secret' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-dashboard-'));
  const config = path.join(dir, 'herald.toml');
  fs.writeFileSync(config, ['[[apps]]', `id = "${SHOP.appId}"`, `key = "${SHOP.key}"`, `secret = "${SHOP.secret}"`, ''].join('\n'));
  const two = await startHerald(['--dashboard-token', TOKEN, '--config', config]);
  try {
    const shop = pusherClient(two, { app: SHOP });
    const plain = pusherClient(two);
    closers.push(() => shop.disconnect(), () => plain.disconnect());
    const viaShop = inbox();
    const viaDefault = inbox();
    await connected(shop);
    await connected(plain);
    (await subscribed(shop, 'orders')).bind_global((event, data) => viaShop.add({ event, data }));
    (await subscribed(plain, 'orders')).bind_global((event, data) => viaDefault.add({ event, data }));

    const { page } = await openDashboard(two);
    await until(async () => (await page.$$eval('#apps tbody tr', (trs) => trs.length)) === 2, 'both apps listed');
    await watch(page, 'shop', 'orders');
    await publishFromConsole(page, '{"shop":true}');
    const got = await viaShop.waitFor((e) => e.event === 'dashboard.test', "the shop app's client");
    assert.deepEqual(got.data, { shop: true });
    await until(async () => (await page.textContent('#console-log')).includes('"shop":true'), 'watched in the console');

    // The default namespace's own event is the marker: nothing of the shop's came before it.
    await watch(page, 'default', 'orders');
    await publishFromConsole(page, '{"marker":1}');
    const before = await viaDefault.before((e) => e.event === 'dashboard.test', 'the default app marker');
    assert.deepEqual(before.filter((e) => e.event === 'dashboard.test'), [], 'the shop event stayed in its namespace');
  } finally {
    await two.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('with --cluster the dashboard lists every node, and its test event reaches another node', async () => {
  const redis = await startRedisServer();
  const nodes = [];
  try {
    for (let i = 0; i < 2; i++) nodes.push(await startHerald(['--cluster', redis.url, '--dashboard-token', TOKEN]));
    const [a, b] = nodes;
    const pusher = pusherClient(b);
    closers.push(() => pusher.disconnect());
    await connected(pusher);
    const channel = await subscribed(pusher, 'cluster-news');
    const got = inbox();
    channel.bind('dashboard.test', got.add);

    const { page } = await openDashboard(a);
    await until(async () => {
      const rows = await page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => ({
        me: tr.className === 'me', cells: [...tr.cells].map((td) => td.textContent),
      })));
      return rows.length === 2 && rows.some((r) => r.me && r.cells[2] === '0')
        && rows.some((r) => !r.me && r.cells[2] === '1');
    }, "both nodes listed, the other one with its Pusher connection");

    await watch(page, 'default', 'cluster-news');
    await publishFromConsole(page, '{"across":"nodes"}');
    assert.deepEqual(await got.waitFor(() => true, 'the test event on the other node'), { across: 'nodes' });
  } finally {
    for (const n of nodes) await n.stop();
    await redis.stop();
  }
});
