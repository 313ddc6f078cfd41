// laravel-echo 2.5.0 with broadcaster 'reverb' and 'pusher' (pusher-js passed in) against
// herald: listen on public and private channels, presence here/joining/leaving, whispers
// and toOthers. Channel auth comes from a fixture playing Laravel's /broadcasting/auth.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import EchoModule from 'laravel-echo';
import Pusher from 'pusher-js';
import { startHerald, sleep } from './lib/herald.mjs';
import { APP, sdk, startAuthServer } from './pusher_fixtures.mjs';

const Echo = EchoModule.default || EchoModule;

let h;
let auth;
const echos = [];

before(async () => {
  h = await startHerald();
  auth = await startAuthServer(h);
  auth.users.alice = { user_id: 1, user_info: { id: 1, name: 'Alice' } };
  auth.users.bob = { user_id: 2, user_info: { id: 2, name: 'Bob' } };
});
after(async () => { for (const e of echos) e.disconnect(); await auth.close(); await h.stop(); });

function echoFor(broadcaster, user) {
  const e = new Echo({
    broadcaster,
    Pusher,
    key: APP.key,
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: h.httpPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: auth.endpoint,
    auth: { headers: { 'X-User': user } },
  });
  echos.push(e);
  return e;
}

const within = (promise, ms = 5000, what = 'event') => Promise.race([
  promise, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms)),
]);
// Echo's subscribed() only fires on a later success: check the pusher-js channel first.
const subscribed = (channel) => (channel.subscription.subscribed
  ? Promise.resolve()
  : within(new Promise((r) => channel.subscribed(r)), 5000, 'subscription'));

for (const broadcaster of ['reverb', 'pusher']) {
  describe(`Echo broadcaster '${broadcaster}'`, () => {
    test('channel().listen gets a namespaced event', async () => {
      const e = echoFor(broadcaster, 'alice');
      const name = `orders.${broadcaster}`;
      const got = new Promise((r) => e.channel(name).listen('OrderShipped', r));
      await subscribed(e.channel(name));
      await sdk(h).trigger(name, 'App\\Events\\OrderShipped', { order: { id: 5 } });
      assert.deepEqual(await within(got), { order: { id: 5 } });
    });

    test('private() is authorized by the endpoint and gets events', async () => {
      const e = echoFor(broadcaster, 'alice');
      const ch = e.private(`user.${broadcaster}`);
      const got = new Promise((r) => ch.listen('.Custom', r));
      await subscribed(ch);
      await sdk(h).trigger(`private-user.${broadcaster}`, 'Custom', { ok: true });
      assert.deepEqual(await within(got), { ok: true });
    });

    test('join(): here, joining, leaving', async () => {
      const room = `room.${broadcaster}`;
      const a = echoFor(broadcaster, 'alice');
      const here = await within(new Promise((r) => a.join(room).here(r)), 5000, 'here');
      assert.deepEqual(here, [{ id: 1, name: 'Alice' }]);
      const joining = new Promise((r) => a.join(room).joining(r));
      const leaving = new Promise((r) => a.join(room).leaving(r));
      const b = echoFor(broadcaster, 'bob');
      const bHere = await within(new Promise((r) => b.join(room).here(r)), 5000, 'here');
      assert.deepEqual(bHere.map((u) => u.name).sort(), ['Alice', 'Bob']);
      assert.deepEqual(await within(joining, 5000, 'joining'), { id: 2, name: 'Bob' });
      b.leave(room);
      assert.deepEqual(await within(leaving, 5000, 'leaving'), { id: 2, name: 'Bob' });
    });

    test('whisper reaches the others, not the whisperer', async () => {
      const a = echoFor(broadcaster, 'alice');
      const b = echoFor(broadcaster, 'bob');
      const name = `chat.${broadcaster}`;
      const ach = a.private(name);
      const bch = b.private(name);
      await subscribed(ach);
      await subscribed(bch);
      let echoed = false;
      ach.listenForWhisper('typing', () => { echoed = true; });
      const got = new Promise((r) => bch.listenForWhisper('typing', r));
      ach.whisper('typing', { name: 'Alice' });
      assert.deepEqual(await within(got), { name: 'Alice' });
      await sleep(200);
      assert.equal(echoed, false);
    });

    test('toOthers: the socket Laravel names is left out', async () => {
      const a = echoFor(broadcaster, 'alice');
      const b = echoFor(broadcaster, 'bob');
      const name = `feed.${broadcaster}`;
      let aGot = false;
      a.channel(name).listen('.Posted', () => { aGot = true; });
      const got = new Promise((r) => b.channel(name).listen('.Posted', r));
      await subscribed(a.channel(name));
      await subscribed(b.channel(name));
      assert.match(a.socketId(), /^\d+\.\d+$/);
      // What Laravel's pusher/reverb broadcaster does with X-Socket-ID under toOthers().
      await sdk(h).trigger(name, 'Posted', { by: 'alice' }, { socket_id: a.socketId() });
      assert.deepEqual(await within(got), { by: 'alice' });
      await sleep(200);
      assert.equal(aGot, false);
    });
  });
}
