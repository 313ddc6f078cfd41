// Pusher webhooks that anonymous churn cannot flood. An HTTP server plays the Laravel app and
// checks every request with the official `pusher` SDK's webhook():
// - a channel occupied and vacated within the occupancy delay (default 3 s, as Pusher
//   debounces) sends neither event, nor does one vacated and occupied again, while a genuine
//   occupancy after them arrives (the ordered marker);
// - with a tiny queue (--webhook-queue 4) and the app slow to answer, thousands of public
//   subscribe/unsubscribe events are dropped (counted on /metrics, logged) but a presence
//   user's member_removed still arrives.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startHerald } from './lib/herald.mjs';
import { sdk, pusherClient, connected, subscribed, RawClient } from './pusher_fixtures.mjs';

const WAIT = 10000;
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

// The app's webhook endpoint: every request must carry a valid Pusher signature. While
// `hold()` is in force, requests are answered only when `release()` is called.
async function startApp() {
  const events = [];
  const invalid = [];
  let held = null;
  let h;
  const server = http.createServer((req, res) => {
    let rawBody = '';
    req.on('data', (c) => { rawBody += c; });
    req.on('end', async () => {
      const hook = sdk(h).webhook({ headers: req.headers, rawBody });
      if (hook.isValid()) events.push(...hook.getEvents()); else invalid.push(rawBody);
      if (held) await held.promise;
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => { server.closeAllConnections(); server.close(r); }));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    events,
    invalid,
    attach(herald) { h = herald; },
    hold() { let release; held = { promise: new Promise((r) => { release = r; }) }; held.release = release; },
    release() { held.release(); held = null; },
    // The first event matching `pred` (posted, even if its answer is held).
    waitFor(pred, what) {
      return new Promise((resolve, reject) => {
        const t = setInterval(() => {
          const hit = events.find(pred);
          if (hit) { clearInterval(t); clearTimeout(timer); resolve(hit); }
        }, 10);
        const timer = setTimeout(() => {
          clearInterval(t);
          reject(new Error(`no webhook for ${what}; got ${JSON.stringify(events)}`));
        }, WAIT);
      });
    },
  };
}

async function herald(app, args = []) {
  const h = await startHerald(['--app-webhook', app.url, ...args]);
  app.attach(h);
  cleanup.push(() => h.stop());
  return h;
}

const metric = async (h, name) =>
  Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${h.url}/metrics`)).text())[1]);

const on = (channel) => (e) => e.channel === channel;

async function rawClient(h) {
  const c = RawClient.connect(h);
  cleanup.push(() => c.close());
  await c.established();
  return c;
}

async function subscribe(c, channel) {
  c.send({ event: 'pusher:subscribe', data: { channel } });
  await c.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel);
}

const unsubscribe = (c, channel) => c.send({ event: 'pusher:unsubscribe', data: { channel } });

test('occupancy that does not outlast the delay sends nothing; a genuine one does', async () => {
  const app = await startApp();
  const h = await herald(app);
  const c = await rawClient(h);

  // Occupied and vacated at once, then a channel that stays: its occupied is the marker.
  await subscribe(c, 'flap.1');
  unsubscribe(c, 'flap.1');
  await subscribe(c, 'stays.1');
  await app.waitFor(on('stays.1'), 'stays.1 occupied');
  assert.deepEqual(app.events.filter(on('flap.1')), []);

  // Vacated and occupied again at once: neither; then another marker.
  unsubscribe(c, 'stays.1');
  await subscribe(c, 'stays.1');
  await subscribe(c, 'marker.2');
  await app.waitFor(on('marker.2'), 'marker.2 occupied');
  assert.deepEqual(app.events.map((e) => `${e.name} ${e.channel}`), [
    'channel_occupied stays.1',
    'channel_occupied marker.2',
  ]);
  assert.equal(await metric(h, 'herald_webhook_events_coalesced_total'), 4);
  assert.deepEqual(app.invalid, [], 'every request signed as Pusher signs');
});

test('churn with a tiny queue is dropped and counted, member_removed still arrives', async () => {
  const app = await startApp();
  // The subscribe bucket (subscribe_rate.test.mjs) off: the churn must reach the webhook queue.
  const h = await herald(app, ['--webhook-queue', '4', '--webhook-occupancy-delay-ms', '0', '--subscribe-burst', '0']);
  const ada = await connected(pusherClient(h, { user: { user_id: 'ada', user_info: {} } }), WAIT);
  cleanup.push(() => ada.disconnect());

  // The app is slow: the first request (ada arriving) is posted, its answer held.
  app.hold();
  await subscribed(ada, 'presence-office', WAIT);
  await app.waitFor(() => true, 'the first request');

  // A stranger churns through public channels while that request is outstanding.
  const stranger = await rawClient(h);
  const churn = 200;
  for (let i = 0; i < churn; i += 1) {
    await subscribe(stranger, `churn.${i}`);
    unsubscribe(stranger, `churn.${i}`);
  }
  await subscribe(stranger, 'after-churn'); // every unsubscribe before it was handled
  const dropped = await metric(h, 'herald_webhook_events_dropped_total');
  // 2 × 200 churn events plus after-churn's occupied; the queue takes 2 of them (and
  // still has room for ada's member events).
  assert.equal(dropped, 2 * churn + 1 - 2);
  assert.equal(h.logs.filter((l) => l.includes('webhook queue full')).length, 1, 'logged once');

  ada.unsubscribe('presence-office');
  app.release();
  const removed = await app.waitFor((e) => e.name === 'member_removed', 'member_removed');
  assert.deepEqual(removed, { name: 'member_removed', channel: 'presence-office', user_id: 'ada' });
  assert.deepEqual(app.invalid, [], 'every request signed as Pusher signs');
});
