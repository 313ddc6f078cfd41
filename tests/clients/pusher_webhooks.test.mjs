// Pusher webhooks from herald, received by an HTTP server playing the Laravel app and
// verified with the official `pusher` SDK's webhook() (X-Pusher-Key, X-Pusher-Signature):
// channel_occupied/vacated, member_added/removed once per user, client_event, cache_miss,
// retry after a failed delivery, and per-URL event_types filters from the TOML file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHerald } from './lib/herald.mjs';
import { privateCa } from './lib/tls.mjs';
import { DEADLINE_MS } from './lib/wait.mjs';
import { APP, sdk, pusherClient, connected, subscribed, signedIn, RawClient } from './pusher_fixtures.mjs';

const SHOP = { appId: 'shop', key: 'shop-key', secret: 'shop-secret' };

// Collects every webhook request it takes (`seen` has every request, taken or not);
// `failNext` makes the next requests answer 500, the first request to `/moved...` gets a
// 302, and requests to `/slow...` are answered after 800 ms.
function startReceiver(tls) {
  const requests = [];
  const seen = [];
  const waiters = [];
  let failNext = 0;
  const handler = (req, res) => {
    let rawBody = '';
    req.on('data', (c) => { rawBody += c; });
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      if (failNext > 0) { failNext -= 1; res.writeHead(500).end(); return; }
      if (req.url.startsWith('/moved') && seen.filter((r) => r === `POST ${req.url}`).length === 1) {
        res.writeHead(302, { location: '/elsewhere' }).end();
        return;
      }
      requests.push({ url: req.url, headers: req.headers, rawBody });
      setTimeout(() => res.writeHead(200).end(), req.url.startsWith('/slow') ? 800 : 0);
      for (const w of [...waiters]) w();
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  const events = (url) => requests.filter((r) => r.url === url)
    .flatMap((r) => JSON.parse(r.rawBody).events);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    server, requests, seen,
    base: tls ? `https://localhost:${server.address().port}` : `http://127.0.0.1:${server.address().port}`,
    failNext: (n) => { failNext = n; },
    events,
    // The request to `url` that carried an event matching `pred`.
    requestWith: (url, pred) => requests.find((r) => r.url === url && JSON.parse(r.rawBody).events.some(pred)),
    // Resolve with the first event at `url` matching `pred`, waiting up to `ms`.
    waitFor(url, pred, ms = DEADLINE_MS) {
      return new Promise((res, rej) => {
        const check = () => {
          const hit = events(url).find(pred);
          if (!hit) return false;
          clearTimeout(t); waiters.splice(waiters.indexOf(check), 1); res(hit); return true;
        };
        const t = setTimeout(() => { waiters.splice(waiters.indexOf(check), 1); rej(new Error(`no webhook matching at ${url}; got ${JSON.stringify(events(url))}`)); }, ms);
        waiters.push(check);
        check();
      });
    },
  })));
}

let h, rx, dir;
const clients = [];
const client = (opts) => { const c = pusherClient(h, opts); clients.push(c); return connected(c); };
const is = (name, channel, extra = {}) => (e) => e.name === name && e.channel === channel
  && Object.entries(extra).every(([k, v]) => e[k] === v);

before(async () => {
  rx = await startReceiver();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-webhooks-'));
  const config = path.join(dir, 'herald.toml');
  fs.writeFileSync(config, [
    '[[apps]]', `id = "${SHOP.appId}"`, `key = "${SHOP.key}"`, `secret = "${SHOP.secret}"`,
    `webhooks = [{ url = "${rx.base}/shop", event_types = ["member_added"] }]`, '',
  ].join('\n'));
  h = await startHerald(['--app-webhook', `${rx.base}/hooks`, '--config', config]);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await h.stop();
  rx.server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every request is signed as Pusher signs: the SDK validates it, and refuses it altered', async () => {
  const c = await client();
  await subscribed(c, 'signed.1');
  await rx.waitFor('/hooks', is('channel_occupied', 'signed.1'));
  // This test's own request, whichever requests earlier tests made.
  const req = rx.requestWith('/hooks', is('channel_occupied', 'signed.1'));
  assert.equal(req.headers['content-type'], 'application/json');
  assert.equal(req.headers['x-pusher-key'], APP.key);
  const hook = sdk(h).webhook({ headers: req.headers, rawBody: req.rawBody });
  assert.equal(hook.isValid(), true);
  assert.ok(Math.abs(hook.getTime().getTime() - Date.now()) < 60000);
  assert.ok(hook.getEvents().length >= 1);
  const altered = sdk(h).webhook({ headers: req.headers, rawBody: req.rawBody.replace('signed.1', 'signed.2') });
  assert.equal(altered.isValid(), false);
});

test('channel_occupied on the first subscriber, channel_vacated after the last', async () => {
  const a = await client();
  const b = await client();
  await subscribed(a, 'orders.9');
  await subscribed(b, 'orders.9');
  await rx.waitFor('/hooks', is('channel_occupied', 'orders.9'));
  a.unsubscribe('orders.9');
  b.unsubscribe('orders.9');
  await rx.waitFor('/hooks', is('channel_vacated', 'orders.9'));
  const mine = rx.events('/hooks').filter((e) => e.channel === 'orders.9').map((e) => e.name);
  assert.deepEqual(mine, ['channel_occupied', 'channel_vacated']);
});

test('presence: member_added once per user, member_removed after their last connection', async () => {
  const tab1 = await client({ user: { user_id: 'ada', user_info: {} } });
  const tab2 = await client({ user: { user_id: 'ada', user_info: {} } });
  const other = await client({ user: { user_id: 42, user_info: {} } });
  for (const c of [tab1, tab2, other]) await subscribed(c, 'presence-room.5');
  await rx.waitFor('/hooks', is('member_added', 'presence-room.5', { user_id: '42' }));
  tab1.unsubscribe('presence-room.5');
  other.unsubscribe('presence-room.5');
  await rx.waitFor('/hooks', is('member_removed', 'presence-room.5', { user_id: '42' }));
  tab2.unsubscribe('presence-room.5');
  await rx.waitFor('/hooks', is('channel_vacated', 'presence-room.5'));
  const mine = rx.events('/hooks').filter((e) => e.channel === 'presence-room.5')
    .map((e) => `${e.name}${e.user_id ? ':' + e.user_id : ''}`);
  assert.deepEqual(mine, [
    'channel_occupied', 'member_added:ada', 'member_added:42',
    'member_removed:42', 'member_removed:ada', 'channel_vacated',
  ]);
});

test('client_event: data as JSON text, the sender socket_id, user_id on presence only', async () => {
  const sender = await client({ user: { user_id: 'kim', user_info: {} } });
  const priv = await subscribed(sender, 'private-chat.3');
  const pres = await subscribed(sender, 'presence-chat.3');
  priv.trigger('client-typing', { typing: true });
  pres.trigger('client-typing', 'plain');
  const p = await rx.waitFor('/hooks', is('client_event', 'private-chat.3'));
  assert.deepEqual(p, {
    name: 'client_event', channel: 'private-chat.3', event: 'client-typing',
    data: '{"typing":true}', socket_id: sender.connection.socket_id,
  });
  const q = await rx.waitFor('/hooks', is('client_event', 'presence-chat.3'));
  assert.equal(q.data, 'plain');
  assert.equal(q.user_id, 'kim');
});

test('cache_miss when a cache channel has nothing to replay', async () => {
  const c = await client();
  await subscribed(c, 'cache-prices');
  await rx.waitFor('/hooks', is('cache_miss', 'cache-prices'));
});

test('no webhooks about Pusher\'s own #server-to-user channels', async () => {
  // signedIn waits until pusher-js has subscribed to #server-to-user-u-5 after the signin.
  const c = await signedIn(await client({ user: { user_id: 'u-5', user_info: {} } }));
  await subscribed(c, 'after-signin');
  // The marker: the occupied webhook of a channel subscribed after the signin.
  await rx.waitFor('/hooks', is('channel_occupied', 'after-signin'));
  assert.equal(rx.events('/hooks').some((e) => e.channel.startsWith('#')), false);
});

test('a failed delivery is retried until the app takes it', async () => {
  rx.failNext(2);
  const raw = RawClient.connect(h);
  await raw.established();
  raw.send({ event: 'pusher:subscribe', data: { channel: 'retry.1' } });
  await raw.expect('pusher_internal:subscription_succeeded');
  // 500, 500, then taken: after the 0.5 s and 1 s back-off waits.
  await rx.waitFor('/hooks', is('channel_occupied', 'retry.1'));
  raw.close();
});

test('a redirect is not a delivery: the POST is retried where it was sent, never followed', async () => {
  const node = await startHerald(['--app-webhook', `${rx.base}/moved`]);
  try {
    const raw = RawClient.connect(node);
    await raw.established();
    raw.send({ event: 'pusher:subscribe', data: { channel: 'moved.1' } });
    await rx.waitFor('/moved', is('channel_occupied', 'moved.1'));
    assert.deepEqual(rx.seen.filter((r) => r.includes('moved') || r.includes('elsewhere')), ['POST /moved', 'POST /moved']);
    raw.close();
  } finally {
    await node.stop();
  }
});

test('an HTTPS webhook URL with a private CA is trusted with --auth-ca-file', async () => {
  const { dir, caFile, tls } = privateCa();
  const secure = await startReceiver(tls);
  const node = await startHerald(['--app-webhook', `${secure.base}/tls`, '--auth-ca-file', caFile]);
  try {
    const raw = RawClient.connect(node);
    await raw.established();
    raw.send({ event: 'pusher:subscribe', data: { channel: 'tls.1' } });
    const e = await secure.waitFor('/tls', is('channel_occupied', 'tls.1'));
    assert.equal(e.channel, 'tls.1');
    raw.close();
  } finally {
    await node.stop();
    secure.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("an app's event_types filter what its URL receives", async () => {
  const opts = { user: { user_id: 'sam', user_info: {} }, app: SHOP };
  const c = await client(opts);
  await subscribed(c, 'presence-shop.1');
  await rx.waitFor('/shop', is('member_added', 'presence-shop.1', { user_id: 'sam' }));
  const req = rx.requestWith('/shop', is('member_added', 'presence-shop.1'));
  assert.equal(req.headers['x-pusher-key'], SHOP.key);
  assert.equal(sdk(h, SHOP).webhook({ headers: req.headers, rawBody: req.rawBody }).isValid(), true);
  // Leaving makes member_removed and channel_vacated, which the shop's URL does not take.
  // Markers: joining another channel on the same connection makes a member_added after them
  // on the shop's URL; a channel of the default app occupied after that, an event after them
  // on the default app's URL.
  c.unsubscribe('presence-shop.1');
  await subscribed(c, 'presence-shop.2');
  await rx.waitFor('/shop', is('member_added', 'presence-shop.2', { user_id: 'sam' }));
  const plain = await client();
  await subscribed(plain, 'after-shop');
  await rx.waitFor('/hooks', is('channel_occupied', 'after-shop'));
  assert.deepEqual([...new Set(rx.events('/shop').map((e) => e.name))], ['member_added']);
  assert.equal(rx.events('/hooks').some((e) => e.channel.startsWith('presence-shop.')), false);
});

test('a shutdown posts the member_removed and channel_vacated that its closed connections made', async () => {
  // The app answers slowly: what the shutdown makes waits behind a request in flight.
  const node = await startHerald(['--app-webhook', `${rx.base}/slow-restart`]);
  const c = pusherClient(node, { user: { user_id: 'eve', user_info: {} } });
  try {
    await connected(c);
    await subscribed(c, 'presence-shift.1');
    await rx.waitFor('/slow-restart', is('member_added', 'presence-shift.1', { user_id: 'eve' }));
    assert.equal(await node.stop(), 0);
    const names = rx.events('/slow-restart').map((e) => `${e.name}${e.user_id ? ':' + e.user_id : ''}`);
    assert.deepEqual(names, ['channel_occupied', 'member_added:eve', 'member_removed:eve', 'channel_vacated']);
  } finally {
    c.disconnect();
    await node.stop();
  }
});
