// Pusher cache channels are bounded as Pusher's are: the last server event is replayed to new
// subscribers for the cache TTL only (Pusher's 30 minutes; `--cache-ttl-seconds` here), and a
// client event is never cached (a subscriber after only client events gets pusher:cache_miss).
// Frames are compared byte for byte, as a bare `ws` client receives them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startHerald, sleep } from './lib/herald.mjs';
import { APP, sdk, pusherClient, connected, subscribed, next } from './pusher_fixtures.mjs';

const TTL_SECONDS = 2;
const WAIT = 10000;

let h;
const open = [];
before(async () => { h = await startHerald(['--cache-ttl-seconds', String(TTL_SECONDS)]); });
after(async () => {
  for (const c of open) (c.disconnect || c.close).call(c);
  await h.stop();
});

// A bare protocol-7 connection keeping every text frame as it arrived.
async function bare() {
  const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/app/${APP.key}?protocol=7&client=js&version=8.4.0`);
  open.push(ws);
  const frames = [];
  const waiters = [];
  ws.on('message', (buf) => {
    frames.push(buf.toString());
    for (const w of [...waiters]) w();
  });
  const frame = (i) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no frame ${i}; got ${JSON.stringify(frames)}`)), WAIT);
    const check = () => {
      if (frames.length <= i) return;
      clearTimeout(t);
      waiters.splice(waiters.indexOf(check), 1);
      resolve(frames[i]);
    };
    waiters.push(check);
    check();
  });
  const established = JSON.parse(JSON.parse(await frame(0)).data);
  return {
    socketId: established.socket_id,
    // Subscribe and return the next two frames: the confirmation and what the cache holds.
    async subscribe(channel, auth) {
      const from = frames.length;
      ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, ...(auth && { auth }) } }));
      return [await frame(from), await frame(from + 1)];
    },
  };
}

const succeeded = (channel) =>
  `{"event":"pusher_internal:subscription_succeeded","channel":"${channel}","data":"{}"}`;
const cacheMiss = (channel) => `{"event":"pusher:cache_miss","channel":"${channel}"}`;

test('the last event is replayed within the TTL, and a cache miss after it', async () => {
  const published = Date.now();
  await sdk(h).trigger('cache-prices', 'Price', { v: 1 });
  const early = await bare();
  assert.deepEqual(await early.subscribe('cache-prices'), [
    succeeded('cache-prices'),
    '{"event":"Price","channel":"cache-prices","data":"{\\"v\\":1}"}',
  ]);
  assert.ok(Date.now() - published < TTL_SECONDS * 1000, 'replayed within the TTL');
  // Time is what is tested here: wait past the TTL.
  await sleep(published + TTL_SECONDS * 1000 + 500 - Date.now());
  const late = await bare();
  assert.deepEqual(await late.subscribe('cache-prices'), [succeeded('cache-prices'), cacheMiss('cache-prices')]);
});

test('client events are not cached: a subscriber after them gets pusher:cache_miss', async () => {
  const channel = 'private-cache-chat';
  const sender = await connected(pusherClient(h), WAIT);
  const listener = await connected(pusherClient(h), WAIT);
  open.push(sender, listener);
  const ch = await subscribed(sender, channel, WAIT);
  const heard = next(await subscribed(listener, channel, WAIT), 'client-typing', WAIT);
  ch.trigger('client-typing', { who: 'ada' });
  assert.deepEqual((await heard).data, { who: 'ada' });

  const signer = sdk(h);
  const after = await bare();
  const { auth } = signer.authorizeChannel(after.socketId, channel);
  assert.deepEqual(await after.subscribe(channel, auth), [succeeded(channel), cacheMiss(channel)]);

  // A server event on the same channel is cached and replayed.
  await signer.trigger(channel, 'Typed', { n: 1 });
  const later = await bare();
  const second = signer.authorizeChannel(later.socketId, channel).auth;
  assert.deepEqual(await later.subscribe(channel, second), [
    succeeded(channel),
    `{"event":"Typed","channel":"${channel}","data":"{\\"n\\":1}"}`,
  ]);
});
