// Pusher's opt-in subscription count (--app-subscription-count true): pusher-js 8 exposes
// it as `pusher:subscription_count` and `channel.subscriptionCount`. Checked: the frame's
// bytes, counts as connections come and go, none on presence channels, none for an app
// without the option, and the `subscription_count` webhook.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHerald } from './lib/herald.mjs';
import { until, inbox } from './lib/wait.mjs';
import { sdk, pusherClient, connected, subscribed, RawClient } from './pusher_fixtures.mjs';

const PLAIN = { appId: 'plain', key: 'plain-key', secret: 'plain-secret' };

let h, dir, hooks, hookServer;
const clients = [];
const client = (opts) => { const c = pusherClient(h, opts); clients.push(c); return connected(c); };

before(async () => {
  hooks = [];
  hookServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { hooks.push(...JSON.parse(body).events); res.end(); });
  });
  await new Promise((r) => hookServer.listen(0, '127.0.0.1', r));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-count-'));
  const config = path.join(dir, 'herald.toml');
  fs.writeFileSync(config, `[[apps]]\nid = "${PLAIN.appId}"\nkey = "${PLAIN.key}"\nsecret = "${PLAIN.secret}"\n`);
  const webhook = `http://127.0.0.1:${hookServer.address().port}/`;
  h = await startHerald(['--app-subscription-count', 'true', '--app-webhook', webhook, '--config', config]);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await h.stop();
  hookServer.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the first subscriber is told the count at once, in Pusher\'s bytes', async () => {
  const raw = RawClient.connect(h);
  await raw.established();
  raw.send({ event: 'pusher:subscribe', data: { channel: 'bytes.1' } });
  await raw.expect('pusher_internal:subscription_succeeded');
  const m = await raw.expect('pusher_internal:subscription_count');
  delete m.parsed;
  assert.deepEqual(m, {
    event: 'pusher_internal:subscription_count', channel: 'bytes.1',
    data: '{"subscription_count":1}',
  });
  raw.close();
});

test('pusher-js sees the count follow connections joining and leaving, within the interval', async () => {
  const a = await client();
  const chA = await subscribed(a, 'live.1');
  await waitForCount(chA, 1);
  const b = await client();
  const c = await client();
  await subscribed(b, 'live.1');
  await subscribed(c, 'live.1');
  await waitForCount(chA, 3);
  c.unsubscribe('live.1');
  await waitForCount(chA, 2);
  const told = (n) => hooks.some((e) => e.name === 'subscription_count' && e.channel === 'live.1' && e.subscription_count === n);
  await until(() => told(2), `the subscription_count webhook for 2; got ${JSON.stringify(hooks)}`);
  assert.ok(told(1) && told(3), JSON.stringify(hooks));
  // As Pusher orders them: the channel exists before it is counted.
  const mine = hooks.filter((e) => e.channel === 'live.1').map((e) => e.name);
  assert.deepEqual(mine.slice(0, 2), ['channel_occupied', 'subscription_count']);
});

test('presence channels and apps without the option get no count', async () => {
  const p = await client({ user: { user_id: 'ann', user_info: {} } });
  const presence = await subscribed(p, 'presence-lobby');
  const other = await client({ app: PLAIN });
  const plain = await subscribed(other, 'live.2');
  // A channel is told its count at once when it was not told in the last second, as the first
  // test shows: on these channels that would have come before an event triggered now.
  const seen = inbox();
  for (const [name, ch] of [['presence', presence], ['plain', plain]]) {
    ch.bind_global((event) => { if (event !== 'pusher:subscription_succeeded') seen.add([name, event]); });
  }
  const again = await client({ app: PLAIN });
  await subscribed(again, 'live.2');
  await sdk(h).trigger('presence-lobby', 'Marker', {});
  await sdk(h, PLAIN).trigger('live.2', 'Marker', {});
  await seen.count(2);
  assert.deepEqual(seen.items.sort(), [['plain', 'Marker'], ['presence', 'Marker']]);
});

// Resolve once `channel` has been told `n` subscriptions (pusher-js keeps the last count).
function waitForCount(channel, n) {
  return until(() => channel.subscriptionCount === n, `subscriptionCount ${n} (now ${channel.subscriptionCount})`);
}
