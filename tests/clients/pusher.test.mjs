// pusher-js 8.6.0 against herald's Pusher edge: connect, public/private/presence
// channels signed by the real `pusher` SDK, presence counting per user, client events,
// signin and #server-to-user, watchlists, cache channels, and a bad signature.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, sleep } from './lib/herald.mjs';
import { APP, sdk, pusherClient, connected, subscribed, next, PusherServer } from './pusher_fixtures.mjs';

let h;
const clients = [];
const client = (opts) => { const c = pusherClient(h, opts); clients.push(c); return connected(c); };

before(async () => { h = await startHerald(); });
after(async () => { for (const c of clients) c.disconnect(); await h.stop(); });

test('connects with a socket id and the activity timeout', async () => {
  const c = await client();
  assert.match(c.connection.socket_id, /^\d+\.\d+$/);
  assert.equal(c.connection.activityTimeout, 120000);
});

test('public channel receives an HTTP API event, data decoded once', async () => {
  const c = await client();
  const ch = await subscribed(c, 'orders.1');
  const got = next(ch, 'OrderShipped');
  await sdk(h).trigger('orders.1', 'OrderShipped', { id: 1, note: 'café "quoted"' });
  assert.deepEqual((await got).data, { id: 1, note: 'café "quoted"' });
});

test('private channel with a real signature', async () => {
  const c = await client();
  const ch = await subscribed(c, 'private-user.1');
  const got = next(ch, 'Secret');
  await sdk(h).trigger('private-user.1', 'Secret', 'plain string');
  assert.equal((await got).data, 'plain string');
});

test('presence: members listed, member_added once per user, member_removed after the last connection', async () => {
  const watcher = await client({ user: { user_id: 'w', user_info: { name: 'Watcher' } } });
  const wch = await subscribed(watcher, 'presence-room.1');
  assert.equal(wch.members.count, 1);
  let added = 0; let removed = 0;
  wch.bind('pusher:member_added', () => { added++; });
  wch.bind('pusher:member_removed', () => { removed++; });

  const ada = { user_id: 42, user_info: { name: 'Ada' } };
  const a1 = await client({ user: ada });
  const firstAdded = next(wch, 'pusher:member_added');
  const a1ch = await subscribed(a1, 'presence-room.1');
  assert.deepEqual((await firstAdded).data, { id: '42', info: { name: 'Ada' } });
  assert.equal(a1ch.members.count, 2);
  assert.deepEqual(a1ch.members.me.info, { name: 'Ada' });
  assert.deepEqual(Object.keys(a1ch.members.members).sort(), ['42', 'w']);

  const a2 = await client({ user: ada });
  const a2ch = await subscribed(a2, 'presence-room.1');
  assert.equal(a2ch.members.count, 2, 'two connections of one user count once');
  await sleep(200);
  assert.equal(added, 1, 'no member_added for the second connection');

  a1.unsubscribe('presence-room.1');
  await sleep(200);
  assert.equal(removed, 0, 'still present through the second connection');
  const gone = next(wch, 'pusher:member_removed');
  a2.disconnect();
  assert.deepEqual((await gone).data, { id: '42', info: { name: 'Ada' } });
  assert.equal(wch.members.count, 1);

  const users = await (await sdk(h).get({ path: '/channels/presence-room.1/users' })).json();
  assert.deepEqual(users, { users: [{ id: 'w' }] });
});

test('client events reach the others, not the sender, with user_id on presence', async () => {
  const a = await client({ user: { user_id: 'a', user_info: {} } });
  const b = await client({ user: { user_id: 'b', user_info: {} } });
  const ach = await subscribed(a, 'presence-chat');
  const bch = await subscribed(b, 'presence-chat');
  let echoed = false;
  ach.bind('client-typing', () => { echoed = true; });
  const got = next(bch, 'client-typing');
  assert.equal(ach.trigger('client-typing', { typing: true }), true);
  const { data, meta } = await got;
  assert.deepEqual(data, { typing: true });
  assert.equal(meta.user_id, 'a');
  const pa = await subscribed(a, 'private-whisper');
  const pb = await subscribed(b, 'private-whisper');
  const got2 = next(pb, 'client-hello');
  pa.trigger('client-hello', { n: 1 });
  const r = await got2;
  assert.deepEqual(r.data, { n: 1 });
  assert.equal(r.meta.user_id, undefined);
  await sleep(200);
  assert.equal(echoed, false, 'the sender does not get its own client event');
});

test('signin and #server-to-user events', async () => {
  const c = await client({ user: { user_id: 'u-9', user_info: {} } });
  c.signin();
  await c.user.signinDonePromise;
  assert.equal(c.user.user_data.id, 'u-9');
  await sleep(200); // the #server-to-user subscription follows the signin
  const got = next(c.user, 'notice');
  await sdk(h).sendToUser('u-9', 'notice', { hello: 'you' });
  assert.deepEqual((await got).data, { hello: 'you' });
});

test('watchlists: online for watched users already there, then online on a first connection and offline after the last', async () => {
  const signedIn = async (id, watchlist) => {
    const c = await client({ user: { user_id: id, user_info: {} }, watchlist });
    c.signin();
    await c.user.signinDonePromise;
    return c;
  };
  const events = [];
  const early = await signedIn('w-c');
  const watcher = pusherClient(h, { user: { user_id: 'w-a', user_info: {} }, watchlist: ['w-b', 'w-c'] });
  clients.push(watcher);
  for (const name of ['online', 'offline']) watcher.user.watchlist.bind(name, (e) => events.push(`${name}:${e.user_ids.join(',')}`));
  await connected(watcher);
  watcher.signin();
  await watcher.user.signinDonePromise;
  const until = async (n) => { for (let i = 0; i < 50 && events.length < n; i += 1) await sleep(50); };
  await until(1);
  assert.deepEqual(events, ['online:w-c']);
  const b1 = await signedIn('w-b');
  await until(2);
  const b2 = await signedIn('w-b'); // a second tab: already online
  await sleep(200);
  assert.deepEqual(events, ['online:w-c', 'online:w-b']);
  b1.disconnect();
  await sleep(200);
  assert.equal(events.length, 2, 'one tab left: still online');
  b2.disconnect();
  early.disconnect();
  await until(4);
  assert.deepEqual(events.slice(2).sort(), ['offline:w-b', 'offline:w-c']);
});

test('cache channels: cache_miss when empty, the last event replayed to a new subscriber', async () => {
  const a = await client();
  const ch = a.subscribe('cache-prices');
  await next(ch, 'pusher:cache_miss');
  await sdk(h).trigger('cache-prices', 'Price', { v: 1 });
  await sdk(h).trigger('cache-prices', 'Price', { v: 2 });
  const b = await client();
  const bch = b.subscribe('cache-prices');
  const replay = await next(bch, 'Price');
  assert.deepEqual(replay.data, { v: 2 });
  const pc = b.subscribe('private-cache-empty');
  await next(pc, 'pusher:cache_miss');
});

test('a bad signature: subscription_error and pusher:error 4009, the connection kept', async () => {
  const forger = new PusherServer({ ...APP, secret: 'wrong-secret', host: '127.0.0.1', port: h.httpPort });
  const c = await client({ signer: forger });
  const errors = [];
  c.connection.bind('error', (e) => errors.push(e));
  const ch = c.subscribe('private-vault');
  const { data } = await next(ch, 'pusher:subscription_error');
  assert.equal(data.type, 'AuthError');
  assert.equal(data.status, 401);
  await sleep(100);
  assert.ok(errors.some((e) => e.type === 'PusherError' && e.data.code === 4009), JSON.stringify(errors));
  assert.equal(ch.subscribed, false);
  assert.equal(c.connection.state, 'connected');
  const pub = await subscribed(c, 'public-after-error');
  assert.equal(pub.subscribed, true);
});
