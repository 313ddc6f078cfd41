// Takes docs/dashboard.png: a herald with the dashboard on, under some load, seen in headless
// Chromium (Debian's, through playwright-core from tests/clients/node_modules).
//
//   cargo build --release && node benches/dashboard_screenshot.mjs
//   HERALD_BIN=target/debug/herald SECONDS=30 OUT=/tmp/d.png node benches/dashboard_screenshot.mjs
//
// Load: 10 socket.io clients joining a private channel over and over (the fixture Laravel
// app authorizing them), 40 pusher-js clients (public channels, and a presence channel signed by the `pusher`
// SDK), 30 socket.io clients, and a RESP publisher whose rate swings between about 50 and 400
// publications a second over 8 channels, for SECONDS (default 170) before the picture, with
// the console watching the presence channel (its members listed) and a test event published
// from it.
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'tests/clients/package.json'));
const { chromium } = require('playwright-core');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const { io } = require('socket.io-client');
const { startHerald } = await import(path.join(root, 'tests/clients/lib/herald.mjs'));
const { startAuthApp } = await import(path.join(root, 'tests/clients/fixtures/laravel-auth.mjs'));

const TOKEN = 'screenshot-token-0123456789abcdef';
const SECONDS = Number(process.env.SECONDS || 170);
const OUT = process.env.OUT || path.join(root, 'docs/dashboard.png');
const APP = { appId: 'herald', key: 'herald-key', secret: 'herald-secret' };
const channels = ['orders.1', 'orders.2', 'orders.3', 'stock', 'chat.lobby', 'chat.support', 'prices', 'news'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The fixture Laravel app answers socket.io's private channel auth, 12 ms late.
const auth = await startAuthApp({ delayMs: 12 });
const h = await startHerald(['--dashboard-token', TOKEN, '--auth-endpoint', auth.endpoint]);
const signer = new PusherServer({ ...APP, host: '127.0.0.1', port: h.httpPort });
const clients = [];
for (let i = 0; i < 40; i++) {
  const user = { user_id: String(100 + i), user_info: { name: ['Ada', 'Grace', 'Linus', 'Barbara', 'Ken'][i % 5] + ' ' + i } };
  const p = new Pusher(APP.key, {
    wsHost: '127.0.0.1', wsPort: h.httpPort, forceTLS: false, enabledTransports: ['ws'], cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => cb(null, signer.authorizeChannel(socketId, channelName, user)),
    },
  });
  p.subscribe(channels[i % channels.length]);
  if (i < 6) p.subscribe('presence-team');
  clients.push(() => p.disconnect());
}
for (let i = 0; i < 30; i++) {
  const s = io(h.url, { transports: i % 5 ? ['websocket'] : ['polling'], forceNew: true });
  s.on('connect', () => s.emit('subscribe', { channel: channels[(i * 3) % channels.length] }));
  clients.push(() => s.close());
}

// Ten socket.io clients join and leave a private channel every 1.5 s: eight as its user
// (authorized), two as another (refused by the app, then from the refusal cache).
for (let i = 0; i < 10; i++) {
  const s = io(h.url, { transports: ['websocket'], forceNew: true });
  const headers = { Authorization: `Bearer ${i < 8 ? 1 : 2}` };
  const again = setInterval(() => {
    s.emit('unsubscribe', { channel: 'private-orders.1' });
    s.emit('subscribe', { channel: 'private-orders.1', auth: { headers } });
  }, 1500 + 37 * i);
  clients.push(() => { clearInterval(again); s.close(); });
}

// The publisher: RESP PUBLISH of Laravel envelopes, pipelined every 50 ms.
const resp = net.connect(h.redisPort, '127.0.0.1');
resp.on('data', () => {});
const bulk = (s) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
let tick = 0;
const publisher = setInterval(() => {
  tick++;
  const perSecond = 225 + 175 * Math.sin(tick / 60) * Math.cos(tick / 23);
  const n = Math.max(1, Math.round(perSecond / 20));
  let out = '';
  for (let i = 0; i < n; i++) {
    const all = [...channels, 'presence-team'];
    const ch = all[(tick + i) % all.length];
    const payload = JSON.stringify({ event: 'App\\Events\\Updated', data: { tick, i }, socket: null });
    out += `*3\r\n${bulk('PUBLISH')}${bulk('laravel_database_' + ch)}${bulk(payload)}`;
  }
  resp.write(out);
}, 50);

console.log(`load running for ${SECONDS} s against ${h.url}`);
await sleep(SECONDS * 1000);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 });
await page.goto(`${h.url}/dashboard?token=${TOKEN}`);
await page.waitForSelector('#status.on');
await page.fill('#watch-channel', 'presence-team');
await page.click('#watch-btn');
await page.waitForSelector('#members li');
await page.fill('#pub-data', '{"sku":"A-17","left":3}');
await page.click('#pub-btn');
await page.waitForSelector('text=receiver(s) on this node');
await sleep(2500); // a few live events in the console, and one more tick of the chart
await page.screenshot({ path: OUT, fullPage: true });
console.log(`wrote ${OUT}`);

await browser.close();
clearInterval(publisher);
resp.end();
for (const close of clients) close();
await h.stop();
await auth.close();
process.exit(0);
