// pusher-js 8.6.0 against herald's Pusher edge: connect, public/private/presence
// channels signed by the real `pusher` SDK, presence counting per user, client events,
// signin and #server-to-user, watchlists, cache channels, and a bad signature.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, metric } from './lib/herald.mjs';
import { inbox, until } from './lib/wait.mjs';
import { APP, sdk, pusherClient, connected, subscribed, signedIn, next, PusherServer } from './pusher_fixtures.mjs';

let h;
const clients = [];
const client = (opts) => { const c = pusherClient(h, opts); clients.push(c); return connected(c); };

before(async () => { h = await startHerald(); });
after(async () => { for (const c of clients) c.disconnect(); await h.stop(); });

test('connects with a socket id and the server\'s activity timeout', async () => {
  // pusher-js uses the smaller of its own option and the server's activity_timeout: with the
  // option far above any server value, what it uses is herald's (120 s by default).
  const c = await client({ activityTimeout: 3600 * 1000 });
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
  // The watcher's view, in order, with markers the HTTP API sends on the channel.
  const seen = inbox();
  wch.bind('pusher:member_added', (m) => seen.add(['added', m.id]));
  wch.bind('pusher:member_removed', (m) => seen.add(['removed', m.id]));
  wch.bind('Marker', (d) => seen.add(['marker', d.n]));
  const marker = async (n) => {
    await sdk(h).trigger('presence-room.1', 'Marker', { n });
    return seen.before((e) => e[0] === 'marker' && e[1] === n);
  };

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
  assert.deepEqual(await marker(1), [['added', '42']], 'no member_added for the second connection');

  a1.unsubscribe('presence-room.1');
  // Subscribing again on the same connection: herald has handled the unsubscribe before this.
  await subscribed(a1, 'after-unsubscribe');
  assert.deepEqual((await marker(2)).slice(2), [], 'still present through the second connection');
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
  // Everything a gets on the two channels, client events included.
  const aGot = inbox();
  ach.bind_global((event, data) => { if (!event.startsWith('pusher')) aGot.add([event, data]); });
  const got = next(bch, 'client-typing');
  assert.equal(ach.trigger('client-typing', { typing: true }), true);
  const { data, meta } = await got;
  assert.deepEqual(data, { typing: true });
  assert.equal(meta.user_id, 'a');
  const pa = await subscribed(a, 'private-whisper');
  const pb = await subscribed(b, 'private-whisper');
  pa.bind_global((event, d) => { if (!event.startsWith('pusher')) aGot.add([event, d]); });
  const got2 = next(pb, 'client-hello');
  pa.trigger('client-hello', { n: 1 });
  const r = await got2;
  assert.deepEqual(r.data, { n: 1 });
  assert.equal(r.meta.user_id, undefined);
  // b has both: herald handled both client events; the marker follows them on a's connection.
  await sdk(h).trigger(['presence-chat', 'private-whisper'], 'Marker', {});
  await aGot.count(2);
  assert.deepEqual(aGot.items, [['Marker', {}], ['Marker', {}]], 'the sender does not get its own client events');
});

test('signin and #server-to-user events', async () => {
  const c = await signedIn(await client({ user: { user_id: 'u-9', user_info: {} } }));
  assert.equal(c.user.user_data.id, 'u-9');
  const got = next(c.user, 'notice');
  await sdk(h).sendToUser('u-9', 'notice', { hello: 'you' });
  assert.deepEqual((await got).data, { hello: 'you' });
});

test('watchlists: online for watched users already there, then online on a first connection and offline after the last', async () => {
  const signIn = async (id, watchlist) => signedIn(await client({ user: { user_id: id, user_info: {} }, watchlist }));
  const events = inbox();
  const early = await signIn('w-c');
  const watcher = pusherClient(h, { user: { user_id: 'w-a', user_info: {} }, watchlist: ['w-b', 'w-c'] });
  clients.push(watcher);
  for (const name of ['online', 'offline']) watcher.user.watchlist.bind(name, (e) => events.add(`${name}:${e.user_ids.join(',')}`));
  // Events sent to the watcher itself follow the watchlist events on its connection: markers.
  watcher.user.bind('marker', (d) => events.add(`marker:${d.n}`));
  const marker = async (n) => {
    await sdk(h).sendToUser('w-a', 'marker', { n });
    return events.before((e) => e === `marker:${n}`);
  };
  await connected(watcher);
  await signedIn(watcher);
  assert.deepEqual(await events.count(1), ['online:w-c']);
  const b1 = await signIn('w-b');
  await events.count(2);
  const b2 = await signIn('w-b'); // a second tab: already online
  assert.deepEqual(await marker(1), ['online:w-c', 'online:w-b']);
  // A disconnect has no acknowledgement; herald counts the connection gone after it has
  // signed it out.
  const open = await metric(h, 'herald_ws_connections');
  b1.disconnect();
  await until(async () => await metric(h, 'herald_ws_connections') === open - 1, 'herald to close the first tab');
  assert.deepEqual((await marker(2)).slice(3), [], 'one tab left: still online');
  b2.disconnect();
  early.disconnect();
  await events.count(6);
  assert.deepEqual(events.items.slice(4).sort(), ['offline:w-b', 'offline:w-c']);
  assert.deepEqual((await marker(3)).slice(6), []);
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
  await until(() => errors.some((e) => e.type === 'PusherError' && e.data.code === 4009), `pusher:error 4009; got ${JSON.stringify(errors)}`);
  assert.equal(ch.subscribed, false);
  assert.equal(c.connection.state, 'connected');
  const pub = await subscribed(c, 'public-after-error');
  assert.equal(pub.subscribed, true);
});
