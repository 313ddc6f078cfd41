// Pusher's HTTP API with the official `pusher` SDK (trigger, triggerBatch, get,
// sendToUser is in pusher.test.mjs) and hand-signed requests for every refusal:
// a tampered signature, an old timestamp, a wrong body_md5, bad input, limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHerald } from './lib/herald.mjs';
import { inbox } from './lib/wait.mjs';
import { APP, sdk, pusherClient, connected, subscribed, next } from './pusher_fixtures.mjs';

let h;
const clients = [];
const client = (opts) => { const c = pusherClient(h, opts); clients.push(c); return connected(c); };

before(async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-')), 'apps.toml');
  fs.writeFileSync(file, '[[apps]]\nid = "off"\nkey = "off-key"\nsecret = "off-secret"\nenabled = false\n'
    + '[[apps]]\nid = "second"\nkey = "second-key"\nsecret = "second-secret"\n');
  h = await startHerald(['--config', file]);
});
after(async () => { for (const c of clients) c.disconnect(); await h.stop(); });

// Sign a request exactly as Pusher specifies, with knobs to break one part at a time.
async function signed(method, apiPath, { body, params = {}, app = APP, timestamp, md5, tamper } = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const q = { auth_key: app.key, auth_timestamp: timestamp ?? Math.floor(Date.now() / 1000), auth_version: '1.0', ...params };
  if (text) q.body_md5 = md5 ?? crypto.createHash('md5').update(text).digest('hex');
  const query = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join('&');
  const full = `/apps/${app.appId}${apiPath}`;
  let sig = crypto.createHmac('sha256', app.secret).update(`${method}\n${full}\n${query}`).digest('hex');
  if (tamper) sig = sig.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
  const res = await fetch(`${h.url}${full}?${query}&auth_signature=${sig}`, {
    method, body: text || undefined, headers: text ? { 'content-type': 'application/json' } : {},
  });
  return { status: res.status, text: await res.text() };
}

test('trigger to several channels, leaving out socket_id', async () => {
  const a = await client();
  const b = await client();
  const [a1, b1] = [await subscribed(a, 'news'), await subscribed(b, 'news')];
  const b2 = await subscribed(b, 'sport');
  const aGot = inbox();
  a1.bind_global((event) => { if (!event.startsWith('pusher')) aGot.add(event); });
  const got1 = next(b1, 'Headline');
  const got2 = next(b2, 'Headline');
  const res = await sdk(h).trigger(['news', 'sport'], 'Headline', { t: 'x' }, { socket_id: a.connection.socket_id });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  assert.deepEqual((await got1).data, { t: 'x' });
  assert.deepEqual((await got2).data, { t: 'x' });
  await sdk(h).trigger('news', 'Marker', {});
  assert.deepEqual(await aGot.before((e) => e === 'Marker'), [], 'the excluded socket got nothing');
});

test('trigger with info returns subscription and user counts', async () => {
  const a = await client({ user: { user_id: 'i1', user_info: {} } });
  await subscribed(a, 'presence-info');
  const res = await sdk(h).trigger('presence-info', 'E', {}, { info: 'user_count,subscription_count' });
  assert.deepEqual(await res.json(), { channels: { 'presence-info': { user_count: 1, subscription_count: 1 } } });
});

test('triggerBatch delivers every event', async () => {
  const a = await client();
  const ch = await subscribed(a, 'batch-ch');
  const seen = inbox();
  ch.bind_global((e, d) => { if (!e.startsWith('pusher')) seen.add([e, d]); });
  const res = await sdk(h).triggerBatch([
    { channel: 'batch-ch', name: 'One', data: { n: 1 } },
    { channel: 'batch-ch', name: 'Two', data: 'two' },
  ]);
  assert.equal(res.status, 200);
  await sdk(h).trigger('batch-ch', 'Marker', {});
  assert.deepEqual(await seen.before(([e]) => e === 'Marker'), [['One', { n: 1 }], ['Two', 'two']]);
});

test('get channels, one channel, and presence users', async () => {
  const a = await client({ user: { user_id: 'g1', user_info: {} } });
  const b = await client({ user: { user_id: 'g2', user_info: {} } });
  await subscribed(a, 'presence-lobby');
  await subscribed(b, 'presence-lobby');
  await subscribed(a, 'presence-lobby-2');
  const s = sdk(h);
  const list = await (await s.get({ path: '/channels', params: { filter_by_prefix: 'presence-lobby', info: 'user_count' } })).json();
  assert.deepEqual(list, { channels: { 'presence-lobby': { user_count: 2 }, 'presence-lobby-2': { user_count: 1 } } });
  const one = await (await s.get({ path: '/channels/presence-lobby', params: { info: 'user_count,subscription_count' } })).json();
  assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 2 });
  const empty = await (await s.get({ path: '/channels/nobody-here' })).json();
  assert.deepEqual(empty, { occupied: false });
  const users = await (await s.get({ path: '/channels/presence-lobby/users' })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['g1', 'g2']);
  const all = await (await s.get({ path: '/channels' })).json();
  assert.ok(all.channels['presence-lobby']);
});

test('apps are isolated: an event for one app never reaches another app\'s clients', async () => {
  const SECOND = { appId: 'second', key: 'second-key', secret: 'second-secret' };
  const mine = await client();
  const theirs = await client({ app: SECOND });
  const [m, t] = [await subscribed(mine, 'shared-name'), await subscribed(theirs, 'shared-name')];
  const mineGot = inbox();
  m.bind_global((event) => { if (!event.startsWith('pusher')) mineGot.add(event); });
  const got = next(t, 'OnlySecond');
  await sdk(h, SECOND).trigger('shared-name', 'OnlySecond', { a: 1 });
  assert.deepEqual((await got).data, { a: 1 });
  const wrongApp = await signed('GET', '/channels', { app: { ...SECOND, secret: APP.secret } });
  assert.equal(wrongApp.status, 401, 'one app\'s secret does not sign for another');
  await sdk(h).trigger('shared-name', 'Marker', {});
  assert.deepEqual(await mineGot.before((e) => e === 'Marker'), [], 'nothing from the other app');
});

test('a correctly hand-signed request passes (the refusals below are for their reason alone)', async () => {
  const r = await signed('POST', '/events', { body: { name: 'E', data: '{}', channel: 'c' } });
  assert.equal(r.status, 200, r.text);
  const g = await signed('GET', '/channels', { params: { filter_by_prefix: 'presence-' } });
  assert.equal(g.status, 200, g.text);
});

test('a tampered signature: 401', async () => {
  const r = await signed('POST', '/events', { body: { name: 'E', data: '{}', channel: 'c' }, tamper: true });
  assert.equal(r.status, 401);
  assert.match(r.text, /Invalid signature/);
});

test('an old timestamp: 401', async () => {
  const r = await signed('POST', '/events', { body: { name: 'E', data: '{}', channel: 'c' }, timestamp: Math.floor(Date.now() / 1000) - 601 });
  assert.equal(r.status, 401);
  assert.match(r.text, /Timestamp expired/);
});

test('a wrong body_md5: 401', async () => {
  const r = await signed('POST', '/events', { body: { name: 'E', data: '{}', channel: 'c' }, md5: 'd41d8cd98f00b204e9800998ecf8427e' });
  assert.equal(r.status, 401);
  assert.match(r.text, /body_md5/);
});

test('wrong key, unknown app, disabled app: 401, 404, 403', async () => {
  const r = await signed('GET', '/channels', { app: { ...APP, key: 'other' } });
  assert.equal(r.status, 401);
  const u = await signed('GET', '/channels', { app: { ...APP, appId: 'nope' } });
  assert.equal(u.status, 404);
  const d = await signed('GET', '/channels', { app: { appId: 'off', key: 'off-key', secret: 'off-secret' } });
  assert.equal(d.status, 403);
  assert.match(d.text, /disabled/);
});

test('bad requests: 400 with a message', async () => {
  const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
  const cases = [
    [{ name: 'E', data: '{}', channels: many }, /Too many channels/],
    [{ name: 'E', data: '{}' }, /Missing channel/],
    [{ name: 'E', data: '{}', channel: 'bad name' }, /Invalid channel name/],
    [{ name: '', data: '{}', channel: 'c' }, /Event name/],
    [{ name: 'E', data: '{}', channel: 'c', socket_id: 'abc' }, /Invalid socket_id/],
  ];
  for (const [body, re] of cases) {
    const r = await signed('POST', '/events', { body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.text, re);
  }
  const batch = Array.from({ length: 11 }, () => ({ name: 'E', data: '{}', channel: 'c' }));
  const b = await signed('POST', '/batch_events', { body: { batch } });
  assert.equal(b.status, 400);
  const notJson = await signed('POST', '/events', { body: 'not an object' });
  assert.equal(notJson.status, 400);
  const users = await signed('GET', '/channels/public-room/users');
  assert.equal(users.status, 400);
  const uc = await signed('GET', '/channels', { params: { info: 'user_count' } });
  assert.equal(uc.status, 400);
});

test('data over 10 KB: 413; a body over the read limit: 413', async () => {
  const r = await signed('POST', '/events', { body: { name: 'E', data: 'x'.repeat(10 * 1024 + 1), channel: 'c' } });
  assert.equal(r.status, 413);
  const ok = await signed('POST', '/events', { body: { name: 'E', data: 'x'.repeat(10 * 1024 - 10), channel: 'c' } });
  assert.equal(ok.status, 200);
  const huge = await signed('POST', '/events', { body: { name: 'E', data: 'x'.repeat(200 * 1024), channel: 'c' } });
  assert.equal(huge.status, 413);
});

test('the SDK surfaces a refusal as a RequestError with the status', async () => {
  const wrong = sdk(h, { ...APP, secret: 'nope' });
  await assert.rejects(wrong.trigger('c', 'E', {}), (e) => e.status === 401);
});
