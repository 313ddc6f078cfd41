// laravel-echo 2.5.0 with broadcaster 'reverb' and 'pusher' (pusher-js passed in) against
// herald: listen on public and private channels, presence here/joining/leaving, whispers
// and toOthers (with the socket id handed to the HTTP API, and through Laravel itself: a request
// with X-Socket-ID to tests/php/app.php). Channel auth comes from a fixture playing Laravel's
// /broadcasting/auth.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import EchoModule from 'laravel-echo';
import Pusher from 'pusher-js';
import { startHerald } from './lib/herald.mjs';
import { within, inbox } from './lib/wait.mjs';
import { APP, sdk, startAuthServer } from './pusher_fixtures.mjs';
import { startLaravelApp } from './fixtures/laravel-app.mjs';

const Echo = EchoModule.default || EchoModule;

let h;
let auth;
let laravel;
const echos = [];

before(async () => {
  h = await startHerald();
  laravel = await startLaravelApp(h.redisPort, 'predis');
  auth = await startAuthServer(h);
  auth.users.alice = { user_id: 1, user_info: { id: 1, name: 'Alice' } };
  auth.users.bob = { user_id: 2, user_info: { id: 2, name: 'Bob' } };
});
after(async () => { for (const e of echos) e.disconnect(); await auth.close(); await laravel.close(); await h.stop(); });

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

// Echo's subscribed() only fires on a later success: check the pusher-js channel first.
const subscribed = (channel) => (channel.subscription.subscribed
  ? Promise.resolve()
  : within(new Promise((r) => channel.subscribed(r)), `the subscription to ${channel.name}`));

for (const broadcaster of ['reverb', 'pusher']) {
  describe(`Echo broadcaster '${broadcaster}'`, () => {
    test('channel().listen gets a namespaced event', async () => {
      const e = echoFor(broadcaster, 'alice');
      const name = `orders.${broadcaster}`;
      const got = new Promise((r) => e.channel(name).listen('OrderShipped', r));
      await subscribed(e.channel(name));
      await sdk(h).trigger(name, 'App\\Events\\OrderShipped', { order: { id: 5 } });
      assert.deepEqual(await within(got, 'OrderShipped'), { order: { id: 5 } });
    });

    test('private() is authorized by the endpoint and gets events', async () => {
      const e = echoFor(broadcaster, 'alice');
      const ch = e.private(`user.${broadcaster}`);
      const got = new Promise((r) => ch.listen('.Custom', r));
      await subscribed(ch);
      await sdk(h).trigger(`private-user.${broadcaster}`, 'Custom', { ok: true });
      assert.deepEqual(await within(got, 'Custom'), { ok: true });
    });

    test('join(): here, joining, leaving', async () => {
      const room = `room.${broadcaster}`;
      const a = echoFor(broadcaster, 'alice');
      const here = await within(new Promise((r) => a.join(room).here(r)), 'here');
      assert.deepEqual(here, [{ id: 1, name: 'Alice' }]);
      const joining = new Promise((r) => a.join(room).joining(r));
      const leaving = new Promise((r) => a.join(room).leaving(r));
      const b = echoFor(broadcaster, 'bob');
      const bHere = await within(new Promise((r) => b.join(room).here(r)), 'here');
      assert.deepEqual(bHere.map((u) => u.name).sort(), ['Alice', 'Bob']);
      assert.deepEqual(await within(joining, 'joining'), { id: 2, name: 'Bob' });
      b.leave(room);
      assert.deepEqual(await within(leaving, 'leaving'), { id: 2, name: 'Bob' });
    });

    test('whisper reaches the others, not the whisperer', async () => {
      const a = echoFor(broadcaster, 'alice');
      const b = echoFor(broadcaster, 'bob');
      const name = `chat.${broadcaster}`;
      const ach = a.private(name);
      const bch = b.private(name);
      await subscribed(ach);
      await subscribed(bch);
      const heardA = inbox();
      ach.listenForWhisper('typing', heardA.add);
      const got = new Promise((r) => bch.listenForWhisper('typing', r));
      ach.whisper('typing', { name: 'Alice' });
      assert.deepEqual(await within(got, 'the whisper'), { name: 'Alice' });
      // b answers once it heard a: an echo of a's whisper would have reached a first.
      bch.whisper('typing', { name: 'Bob' });
      assert.deepEqual(await heardA.before((e) => e.name === 'Bob', 'b\'s whisper'), [], 'the whisperer gets nothing back');
    });

    test('toOthers: the socket Laravel names is left out', async () => {
      const a = echoFor(broadcaster, 'alice');
      const b = echoFor(broadcaster, 'bob');
      const name = `feed.${broadcaster}`;
      const aGot = inbox();
      a.channel(name).listen('.Posted', aGot.add);
      const got = new Promise((r) => b.channel(name).listen('.Posted', r));
      await subscribed(a.channel(name));
      await subscribed(b.channel(name));
      assert.match(a.socketId(), /^\d+\.\d+$/);
      // What Laravel's pusher/reverb broadcaster does with X-Socket-ID under toOthers().
      await sdk(h).trigger(name, 'Posted', { by: 'alice' }, { socket_id: a.socketId() });
      assert.deepEqual(await within(got, 'Posted'), { by: 'alice' });
      await sdk(h).trigger(name, 'Posted', { by: 'everyone' });
      assert.deepEqual(await aGot.before((e) => e.by === 'everyone', 'the broadcast to everyone'), []);
    });

    test('toOthers through Laravel (redis driver): the X-Socket-ID of the request leaves its tab out', async () => {
      const id = broadcaster === 'reverb' ? 11 : 12;
      const a = echoFor(broadcaster, 'alice');
      const b = echoFor(broadcaster, 'bob');
      const aGot = inbox(), bGot = inbox();
      a.private(`orders.${id}`).listen('OrderShipped', aGot.add);
      b.private(`orders.${id}`).listen('OrderShipped', bGot.add);
      await subscribed(a.private(`orders.${id}`));
      await subscribed(b.private(`orders.${id}`));
      // As Echo's HTTP interceptors send it: Laravel takes the socket from the header.
      assert.equal(await laravel.ship(id, a.socketId()), a.socketId());
      assert.deepEqual(await bGot.count(1), [{ id, socket: a.socketId() }]);
      assert.equal(await laravel.ship(id), null, 'no header: to everyone (the marker)');
      assert.deepEqual(await aGot.before((e) => e.socket === null, 'the broadcast to everyone'), [],
        'the tab that made the request does not get its own event');
    });
  });
}
